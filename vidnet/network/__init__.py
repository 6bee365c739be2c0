"""Video network zoo. Importing this package registers every model family."""

from vidnet.network._registry import (
    ModelInfo,
    UnknownModelError,
    create_model,
    list_models,
    model_info,
    register_model,
)

# isort: split
# Model families register themselves on import. Keep this list sorted; one line per module.
# (filled by the network zoo issue)
from vidnet.network import resnet3d  # noqa: F401

__all__ = ["ModelInfo", "UnknownModelError", "create_model", "list_models", "model_info", "register_model"]
