"""The model-factory contract: what lakeloop tells a factory (:class:`ModelSpec`), how a
reference such as ``"my_models.vision:build"`` becomes that callable, and the optional hooks
a factory may carry.

A factory is any importable callable ``factory(spec: ModelSpec) -> torch.nn.Module``. The
built-in architectures are factories too, reached by short aliases (``lenet5``). The
registry stores the full reference and the spec, so scoring rebuilds the same module.
"""

from __future__ import annotations

import importlib
import os
import socket
import sys
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping

from lakeloop.errors import ModelFactoryError
from lakeloop.layout import factory_reference

if TYPE_CHECKING:
    import torch

# The optional hooks, looked up on the factory object first, then in its module.
HOOKS = ("make_loss", "make_optimizer", "batch_metrics")
TASKS = ("classification", "multilabel", "regression")
INPUT_KINDS = ("image", "table", "image_table")
SHIP_HINT = ("ship it with ./spark-submit.sh --py-files path/to/module.py (or a .zip of the package) JOB ..., "
             "or install its wheel on every node (a Databricks cluster library); for a run outside spark-submit, "
             "put its folder on PYTHONPATH")


@dataclass(frozen=True)
class ModelSpec:
    """What a model factory is told about the model to build; stored with every registered version.

    Attributes
    ----------
    num_outputs : outputs of the last layer: one logit per class (classification), per label
        (multilabel), or 1 (regression).
    input_kind : ``"image"``: the model is called as ``model(images)``, a float tensor ``(batch,
        channels, height, width)`` normalised as ``features.preprocess`` says; ``"table"``:
        ``model(rows)``, a float tensor ``(batch, width)``, the encoded table columns
        (:mod:`lakeloop.tabular`); ``"image_table"``: ``model(images, table)``, both of those
        (``features.table_inputs``: columns joined to each image), ``table`` ``(batch, table_width)``.
    input_shape : ``(channels, height, width)`` of an image, ``(width,)`` of a table row.
    task : ``"classification"`` (one label, softmax over the outputs), ``"multilabel"`` (a
        sigmoid per output; trained with binary cross-entropy) or ``"regression"`` (one value,
        trained with squared error on the standardised target).
    class_names : the class (or label) of each output index, in order; empty for regression.
    table_features : the blocks of a table input, in order, as ``{"name", "kind", "width"}``
        entries (``kind``: numeric, missing_indicator or categorical); empty for images alone.
    options : ``train.model_options`` from the profile, passed through untouched (layer
        widths, dropout, ...): the factory's own settings.
    """

    num_outputs: int
    input_shape: tuple[int, ...]
    input_kind: str = "image"
    task: str = "classification"
    class_names: tuple[str, ...] = ()
    table_features: tuple[Mapping[str, Any], ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def input_width(self) -> int:
        """The number of values in one input (``width`` of a table row, C x H x W of an image)."""
        width = 1
        for size in self.input_shape:
            width *= int(size)
        return width

    @property
    def table_width(self) -> int:
        """The number of encoded table values per row (``image_table`` and ``table`` inputs)."""
        return sum(int(block["width"]) for block in self.table_features)

    @property
    def channels(self) -> int:
        return int(self.input_shape[0])

    @property
    def height(self) -> int:
        return int(self.input_shape[1])

    @property
    def width(self) -> int:
        return int(self.input_shape[2])

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_shape"], data["class_names"] = list(self.input_shape), list(self.class_names)
        data["table_features"], data["options"] = [dict(t) for t in self.table_features], dict(self.options)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelSpec":
        return cls(num_outputs=int(data["num_outputs"]), input_shape=tuple(data["input_shape"]),
                   input_kind=data.get("input_kind", "image"), task=data.get("task", "classification"),
                   class_names=tuple(data.get("class_names", ())),
                   table_features=tuple(data.get("table_features", ())), options=dict(data.get("options", {})))

    def describe(self) -> str:
        shape = "x".join(map(str, self.input_shape))
        return f"{self.task} of {self.input_kind} {shape} into {self.num_outputs} outputs"


def resolve_factory(reference: str) -> Callable[..., Any]:
    """The callable a ``train.model`` value names, imported in this process.

    Raises
    ------
    ModelFactoryError
        the module cannot be imported here (the message names the host and how to ship it),
        has no such attribute, or the attribute is not callable.
    """
    full = factory_reference(reference)
    module_name, _, attribute = full.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:  # an ImportError, or whatever the user's module raised while importing
        searched = ", ".join(sys.path[:8]) + (", ..." if len(sys.path) > 8 else "")
        raise ModelFactoryError(
            f"model factory {full!r}: module {module_name!r} cannot be imported by the Python on "
            f"{socket.gethostname()} ({type(exc).__name__}: {exc}; working folder {os.getcwd()}, searched "
            f"{searched}); {SHIP_HINT}"
        ) from exc
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ModelFactoryError(
                f"model factory {full!r}: {getattr(target, '__name__', module_name)!r} has no attribute {part!r}; "
                f"check the name after ':' in train.model"
            )
        target = getattr(target, part)
    if not callable(target):
        raise ModelFactoryError(f"model factory {full!r} is a {type(target).__name__}, not a callable "
                                f"factory(spec) -> torch.nn.Module")
    return target


def build_model(reference: str, spec: ModelSpec) -> "torch.nn.Module":
    """A freshly initialised module from the factory ``reference`` for ``spec``.

    Raises
    ------
    ModelFactoryError
        the factory cannot be resolved, raises, or returns something other than an ``nn.Module``.
    ConfigError
        the spec cannot be trained (fewer than two classes) or a built-in refuses it.
    """
    from torch import nn

    from lakeloop.errors import ConfigError

    if spec.task not in TASKS or spec.input_kind not in INPUT_KINDS:
        raise ModelFactoryError(f"model spec {spec.describe()}: task must be one of {TASKS} and input kind one of "
                                f"{INPUT_KINDS}")
    if spec.task == "classification" and spec.num_outputs < 2:
        raise ConfigError(f"training needs at least 2 classes, found {spec.num_outputs}; check the labels in "
                          f"bronze.images (or features.table.target)")
    if spec.task == "multilabel" and spec.num_outputs < 1:
        raise ConfigError("multilabel training found no label names in features.table.target; check the column "
                          "and features.table.label_delimiter")
    factory = resolve_factory(reference)
    try:
        model = factory(spec)
    except ConfigError:
        raise
    except Exception as exc:
        raise ModelFactoryError(f"model factory {factory_reference(reference)!r} failed for a {spec.describe()}: "
                                f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(model, nn.Module):
        raise ModelFactoryError(f"model factory {factory_reference(reference)!r} returned a "
                                f"{type(model).__name__}, not a torch.nn.Module")
    return model


def find_hook(reference: str, name: str) -> Callable[..., Any] | None:
    """Hook ``name`` (one of :data:`HOOKS`) of the factory: its attribute, else a function of its module."""
    if name not in HOOKS:
        raise ValueError(f"unknown hook {name!r}; hooks are {HOOKS}")
    factory = resolve_factory(reference)
    hook = getattr(factory, name, None)
    if hook is None:
        module = importlib.import_module(factory_reference(reference).partition(":")[0])
        hook = getattr(module, name, None)
    return hook if callable(hook) else None


def hooks_of(reference: str) -> list[str]:
    """The names of the hooks the factory provides (recorded in the registry)."""
    return [name for name in HOOKS if find_hook(reference, name) is not None]
