"""Model zoo: Linen classifiers and U-Net, a registry, and `summary`.

    >>> import cnnjax.models as models
    >>> model = models.create("resnet18", num_classes=10, stem="cifar")
    >>> print(models.summary(model, (1, 32, 32, 3)))

Every model: `model.apply(variables, x, train=False, return_features=False)` on channels-last
float inputs returns logits, or `(logits, features)` with `return_features=True`
(features: an OrderedDict name -> feature map, from input to output). Dropout draws from
the "dropout" rng stream; batch statistics live in "batch_stats" (apply with
`mutable=["batch_stats"]` when `train=True`). `from_torchvision` / `to_torchvision` move
torchvision and timm weights in and out of ResNet, VGG, AlexNet and `unet_resnet*`. Fields
`dtype` (computation), `param_dtype` (parameters, float32) and `axis_name` (device axis of
synchronised batch norm) are common to all models.
"""

from cnnjax.models.pretrained import from_torchvision, read_state_dict, to_torchvision
from cnnjax.models.registry import create, get_factory, list_models, model_options, register
from cnnjax.models.resnet import ResNet
from cnnjax.models.simple import ConvNet, LeNet5, SimpleCNN
from cnnjax.models.summary import ModelSummary, SummaryRow, summary
from cnnjax.models.unet import UNet, unet_output_size
from cnnjax.models.unet_resnet import UNetResNet
from cnnjax.models.vgg import VGG, VGG_CONFIGS, AlexNet

__all__ = [
    "VGG",
    "VGG_CONFIGS",
    "AlexNet",
    "ConvNet",
    "LeNet5",
    "ModelSummary",
    "ResNet",
    "SimpleCNN",
    "SummaryRow",
    "UNet",
    "UNetResNet",
    "create",
    "from_torchvision",
    "get_factory",
    "list_models",
    "model_options",
    "read_state_dict",
    "register",
    "summary",
    "to_torchvision",
    "unet_output_size",
]
