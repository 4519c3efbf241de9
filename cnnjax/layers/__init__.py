"""Flax Linen layers over `cnnjax.ops`, normalization by name, and blocks.

Layers: `Conv`, `ConvTranspose`, `MaxPool`, `AvgPool`, `LpPool`, `AdaptiveAvgPool`,
`AdaptiveMaxPool`, `GlobalAvgPool`, `GlobalMaxPool`, `Flatten`, `Dropout`.
Normalization: `make_norm(name, train=...)` with name in `NORMS`.
Blocks: `ConvNormAct`, `ResidualBlock` (presets `BasicBlock`, `Bottleneck`,
`PreActBasicBlock`, `PreActBottleneck`), `DoubleConv`, `UNetDown`, `UNetUp`.
"""

from cnnjax.layers.blocks import (
    BasicBlock,
    Bottleneck,
    ConvNormAct,
    PreActBasicBlock,
    PreActBottleneck,
    ResidualBlock,
    symmetric_padding,
)
from cnnjax.layers.conv import Conv, ConvTranspose
from cnnjax.layers.norm import (
    NORM_REGISTRY,
    NORMS,
    NormOptions,
    check_norm_name,
    make_norm,
    register_norm,
)
from cnnjax.layers.pooling import (
    AdaptiveAvgPool,
    AdaptiveMaxPool,
    AvgPool,
    Dropout,
    Flatten,
    GlobalAvgPool,
    GlobalMaxPool,
    LpPool,
    MaxPool,
)
from cnnjax.layers.unet import (
    UNET_PADDINGS,
    UPSAMPLE_MODES,
    DoubleConv,
    UNetDown,
    UNetUp,
    center_crop,
    pad_to,
)

__all__ = [
    "NORMS",
    "NORM_REGISTRY",
    "UNET_PADDINGS",
    "UPSAMPLE_MODES",
    "AdaptiveAvgPool",
    "AdaptiveMaxPool",
    "AvgPool",
    "BasicBlock",
    "Bottleneck",
    "Conv",
    "ConvNormAct",
    "ConvTranspose",
    "DoubleConv",
    "Dropout",
    "Flatten",
    "GlobalAvgPool",
    "GlobalMaxPool",
    "LpPool",
    "MaxPool",
    "NormOptions",
    "PreActBasicBlock",
    "PreActBottleneck",
    "ResidualBlock",
    "UNetDown",
    "UNetUp",
    "center_crop",
    "check_norm_name",
    "make_norm",
    "pad_to",
    "register_norm",
    "symmetric_padding",
]
