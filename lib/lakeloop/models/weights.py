"""Weights in and out of the registry: state-dict bytes, starting a model from another one's
weights (fine-tuning, transfer learning), and rebuilding a registered model for scoring."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any, Mapping

from lakeloop.errors import ConfigError
from lakeloop.layout import BUILTIN_FACTORIES, factory_reference
from lakeloop.models.spec import ModelSpec, build_model, hooks_of

if TYPE_CHECKING:
    import torch

    from lakeloop.registry import ModelVersion, Registry


def state_dict_bytes(model: "torch.nn.Module") -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
    return buffer.getvalue()


def load_state_dict_bytes(data: bytes) -> dict:
    import torch

    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def fit_state_dict(model: "torch.nn.Module", state: Mapping[str, Any], source: str) -> dict[str, Any]:
    """Start ``model`` from ``state`` wherever they fit; returns what was copied, adapted and left.

    A tensor of the same name and shape is copied. A convolution kernel whose only difference
    is its input channels (RGB weights for a grey model) is averaged over them and repeated.
    Any other mismatch (typically the classifier head, when the outputs differ) keeps the
    fresh initialisation and is listed as ``replaced``.

    Raises
    ------
    ConfigError
        ``state`` shares no tensor with ``model``: the weights are of another architecture.
    """
    import torch

    own = model.state_dict()
    copied, adapted, replaced = [], [], []
    fitted: dict[str, Any] = {}
    for key, target in own.items():
        given = state.get(key)
        if not isinstance(given, torch.Tensor):
            replaced.append(key)
        elif given.shape == target.shape:
            fitted[key] = given
            copied.append(key)
        elif (given.dim() == 4 and target.dim() == 4 and given.shape[0] == target.shape[0]
              and given.shape[2:] == target.shape[2:]):
            fitted[key] = given.mean(dim=1, keepdim=True).repeat(1, target.shape[1], 1, 1)
            adapted.append(key)
        else:
            replaced.append(key)
    if not copied:
        raise ConfigError(
            f"train.init_from {source}: none of its {len(state)} tensors fits the model being trained "
            f"(first names there: {list(state)[:3]}; here: {list(own)[:3]}); give weights of the same architecture"
        )
    model.load_state_dict(fitted, strict=False)
    return {"source": source, "copied": len(copied), "adapted": adapted, "replaced": replaced,
            "unused": sorted(set(state) - set(own))[:50]}


def model_record(reference: str, spec: ModelSpec) -> dict[str, Any]:
    """The registry's ``model`` entry: enough to rebuild the module anywhere the factory imports."""
    return {"factory": factory_reference(reference), "name": reference, "spec": spec.to_dict(),
            "hooks": hooks_of(reference)}


def registered_factory(metadata: Mapping[str, Any]) -> tuple[str, ModelSpec]:
    """(factory reference, spec) of a registered version; versions from before model plug-ins
    name a built-in ``architecture`` instead."""
    if "model" in metadata:
        record = metadata["model"]
        return record["factory"], ModelSpec.from_dict(record["spec"])
    architecture = metadata.get("architecture")
    if architecture not in BUILTIN_FACTORIES:
        raise ConfigError(f"model metadata names neither a factory ('model') nor a built-in architecture "
                          f"(found {architecture!r}); publish the model again with lakeloop's train job")
    classes = tuple(metadata["classes"])
    return BUILTIN_FACTORIES[architecture], ModelSpec(num_outputs=len(classes), input_shape=tuple(
        metadata["input_shape"]), class_names=classes)


def model_label(metadata: Mapping[str, Any]) -> str:
    """How a registered version names its model for people: the ``train.model`` it was trained with
    (a built-in name or a factory reference), or the architecture of a version from before factories."""
    return (metadata.get("model") or {}).get("name") or metadata.get("architecture") or "?"


def load_model(registry: "Registry", version: "ModelVersion") -> tuple["torch.nn.Module", dict]:
    """Rebuild a registered model (its factory and spec from the metadata, weights from the
    registry), in eval mode on the CPU; returns ``(model, metadata)``. Works without Spark.

    Raises
    ------
    ModelNotFound, SourceError
        ``version`` is not committed, or its files are missing or altered.
    ModelFactoryError
        the version's factory cannot be imported in this process (ship its module).
    """
    metadata = registry.read_metadata(version)
    reference, spec = registered_factory(metadata)
    model = build_model(reference, spec)
    model.load_state_dict(load_state_dict_bytes(registry.read_weights(version)))
    model.eval()
    return model, metadata
