"""Models: the registry, the CIFAR KD zoo, torchvision/timm adapters, feature access, checkpoints.

``create_model(name, num_classes, checkpoint=...)`` builds any of them; every
returned model satisfies :class:`FeatureModel` (``forward_all`` gives logits,
embedding and per-stage feature maps from one forward pass).
"""

# the zoo files register their models on import
from kdlab.models import (  # noqa: F401
    mobilenetv1,
    mobilenetv2,
    resnet_cifar,
    resnet_imagenet_style,
    shufflenetv1,
    shufflenetv2,
    vgg,
    wrn,
)
from kdlab.models.adapter_base import LibraryFeatureModel
from kdlab.models.checkpoint import (
    CheckpointLoadResult,
    CheckpointMismatchError,
    UnsafeCheckpointError,
    load_checkpoint,
)
from kdlab.models.features import FeatureModel, Features, KDModel
from kdlab.models.registry import create_model, list_models, register_model
from kdlab.models.timm_adapter import TimmFeatureModel
from kdlab.models.tv_adapter import TorchvisionFeatureModel

#: imported for their registrations (named here so that linters see them used)
ZOO_MODULES = (mobilenetv1, mobilenetv2, resnet_cifar, resnet_imagenet_style, shufflenetv1, shufflenetv2, vgg, wrn)

__all__ = [
    "CheckpointLoadResult",
    "CheckpointMismatchError",
    "FeatureModel",
    "Features",
    "KDModel",
    "LibraryFeatureModel",
    "TimmFeatureModel",
    "TorchvisionFeatureModel",
    "UnsafeCheckpointError",
    "create_model",
    "list_models",
    "load_checkpoint",
    "register_model",
]
