"""Video network zoo. Importing this package registers every model family."""

from vidnet.network._registry import (
    ModelInfo,
    UnknownModelError,
    create_model,
    list_models,
    model_info,
    register_model,
    resolve_names,
)

# isort: split
# Model families register themselves on import. Keep this list sorted; one line per module.
import vidnet.network.c3d  # noqa: F401
import vidnet.network.crnn  # noqa: F401
import vidnet.network.efficient3d  # noqa: F401
import vidnet.network.hara_resnet  # noqa: F401
import vidnet.network.inflate  # noqa: F401
import vidnet.network.mict  # noqa: F401
import vidnet.network.mtnet  # noqa: F401
import vidnet.network.mvit  # noqa: F401
import vidnet.network.resnet2d  # noqa: F401
import vidnet.network.resnet3d  # noqa: F401
import vidnet.network.slowfast  # noqa: F401
import vidnet.network.tiny  # noqa: F401
import vidnet.network.x3d  # noqa: F401

__all__ = ["ModelInfo", "UnknownModelError", "create_model", "list_models", "model_info", "register_model",
           "resolve_names"]
