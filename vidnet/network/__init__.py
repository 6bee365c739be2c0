"""Video network zoo. Importing this package registers every model family."""

# Model families register themselves on import. Keep this list sorted; one line per module.
# (filled by the network zoo issue)
import vidnet.network.c3d  # noqa: F401
import vidnet.network.efficient3d  # noqa: F401
import vidnet.network.hara_resnet  # noqa: F401
from vidnet.network._registry import (
    ModelInfo,
    UnknownModelError,
    create_model,
    list_models,
    model_info,
    register_model,
)

__all__ = ["ModelInfo", "UnknownModelError", "create_model", "list_models", "model_info", "register_model"]
