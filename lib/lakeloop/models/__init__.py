"""Models: the factory contract (:class:`ModelSpec`, ``train.model`` references), the built-in
architectures, and moving weights in and out of the registry. Training and scoring both
build their modules here; importing it costs no torch.
"""

from lakeloop.layout import BUILTIN_FACTORIES, factory_reference
from lakeloop.models.spec import HOOKS, ModelSpec, build_model, find_hook, resolve_factory
from lakeloop.models.weights import (fit_state_dict, load_model, load_state_dict_bytes, model_label, model_record,
                                     registered_factory, state_dict_bytes)

__all__ = ["BUILTIN_FACTORIES", "HOOKS", "ModelSpec", "build_model", "factory_reference", "find_hook",
           "fit_state_dict", "load_model", "load_state_dict_bytes", "model_label", "model_record", "registered_factory",
           "resolve_factory", "state_dict_bytes"]
