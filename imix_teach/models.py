"""Encoders and heads. Every encoder has ``out_dim``: the size of its feature vector.

- :func:`cifar_resnet`: the paper's image/speech backbone (ResNet-18/50, 3x3 stride-1 stem, no max-pool);
  :func:`imagenet_resnet`: the same with the ImageNet stem.
- :class:`SmallConvNet`: a few-conv encoder that trains in seconds on 2 CPU cores.
- :class:`TabularMLP`: the paper's 5-layer MLP with BN and a maxout (4 pieces) at the end.
- :func:`projection_head` / :func:`prediction_head`: the MLPs put on top of an encoder.
- :func:`build_encoder`: the one builder the CLI, the reproduction and the notebooks use.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from . import _checks


def imagenet_resnet(depth: int = 50) -> nn.Module:
    """torchvision's ResNet-18/50 with its ImageNet stem (7x7 stride-2 conv + max-pool), no classifier.

    (N, 3, 224, 224) -> (N, 512 or 2048); the paper's ImageNet backbone.
    """
    from torchvision.models import resnet18, resnet50  # here: importing torchvision costs every process ~2 s

    builders = {18: resnet18, 50: resnet50}
    if depth not in builders:
        raise ValueError(f"depth must be 18 or 50, got {depth!r}")
    net = builders[depth](weights=None)
    net.out_dim = net.fc.in_features
    net.fc = nn.Identity()
    return net


def cifar_resnet(depth: int = 18, in_channels: int = 3) -> nn.Module:
    """torchvision's ResNet adapted to 32x32 inputs: (N, in_channels, H, W) -> (N, 512 or 2048).

    The ImageNet stem (7x7 stride-2 conv + max-pool) would shrink a 32 px image to 8 px before
    the first block, so CIFAR variants use a 3x3 stride-1 conv and no max-pool.
    ``in_channels=1`` is the speech model on log-mel spectrograms.
    """
    net = imagenet_resnet(depth)
    net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    return net


class SmallConvNet(nn.Sequential):
    """Three conv-BN-ReLU blocks, a 2x2 max-pool after the first two, global average pool: (N, C, H, W) -> (N, 4 * width).

    About 0.1 M parameters at width 32: a CPU-sized stand-in for the ResNet on 8-32 px inputs.
    Stock ``torch.nn`` layers run in order by ``nn.Sequential``'s own forward: widths width,
    2 * width, 4 * width; each pool halves the image (rounding up, so odd sizes such as 15 px keep
    their border), and the average over the last block's positions gives one vector per image.
    """

    def __init__(self, in_channels: int = 3, width: int = 32, blocks: int = 3):
        layers: list[nn.Module] = []
        channels = in_channels
        for b in range(blocks):
            out = width * 2 ** min(b, 2)
            layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            if b < blocks - 1:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            channels = out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        super().__init__(*layers)
        self.out_dim = channels


class Maxout(nn.Module):
    """Maxout over groups of ``pieces`` consecutive features: (N, pieces * D) -> (N, D)."""

    def __init__(self, pieces: int = 4):
        super().__init__()
        self.pieces = pieces

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, F) -> (N, F / pieces): the largest of each group of ``pieces`` consecutive units."""
        return x.view(x.shape[0], -1, self.pieces).amax(dim=2)


class GroupedLinear(nn.Module):
    """One ``nn.Linear(size, out)`` per consecutive column group, outputs concatenated.

    (N, sum(groups)) -> (N, out * len(groups)). The authors' tabular input layer for CoverType,
    groups (10, 4, 40): the numeric columns, the wilderness one-hot and the soil one-hot each get
    their own 64 units (no BN, no activation before the next layer).
    """

    def __init__(self, groups: Sequence[int], out: int):
        super().__init__()
        self.groups = tuple(int(g) for g in groups)
        self.linears = nn.ModuleList(nn.Linear(g, out) for g in self.groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, sum(groups)) -> (N, out * len(groups))."""
        return torch.cat([lin(part) for lin, part in zip(self.linears, x.split(self.groups, dim=1))], dim=1)


class TabularMLP(nn.Sequential):
    """The paper's tabular backbone: Linear-BN-ReLU layers, the last one Linear-(BN)-maxout.

    Default widths (2048, 2048, 4096, 4096, 8192) with 4 maxout pieces give 2048 features;
    ``width`` scales every layer (``width=0.0625`` is a CPU-sized 128-128-256-256-512 -> 128).
    (N, in_features) -> (N, out_dim).

    The authors' ``mlp_5layer`` differs in two ways, both options here: ``stem=64`` puts a 64-wide
    input layer first (Linear-BN-ReLU, or with ``groups`` one plain Linear per column group, see
    :class:`GroupedLinear`), and ``last_bn=False`` drops the BN before the maxout (that Linear
    gets a bias instead). Defaults: this library's first version (no stem, BN before maxout).
    """

    def __init__(
        self,
        in_features: int,
        widths: Sequence[int] = (2048, 2048, 4096, 4096, 8192),
        width: float = 1.0,
        pieces: int = 4,
        stem: int = 0,
        groups: Sequence[int] | None = None,
        last_bn: bool = True,
    ):
        if groups is not None and (not stem or sum(groups) != in_features):
            raise ValueError(f"groups {groups} need stem > 0 and must sum to in_features={in_features}")
        sizes = [max(pieces, int(round(w * width))) // pieces * pieces for w in widths]
        layers: list[nn.Module] = []
        prev = in_features
        if stem and groups is not None:
            layers.append(GroupedLinear(groups, stem))
            prev = stem * len(groups)
        elif stem:
            layers += [nn.Linear(prev, stem, bias=False), nn.BatchNorm1d(stem), nn.ReLU(inplace=True)]
            prev = stem
        for i, size in enumerate(sizes):
            last = i == len(sizes) - 1
            bn = last_bn or not last
            layers.append(nn.Linear(prev, size, bias=not bn))
            layers += [nn.BatchNorm1d(size)] if bn else []
            layers.append(Maxout(pieces) if last else nn.ReLU(inplace=True))
            prev = size
        super().__init__(*layers)
        self.out_dim = sizes[-1] // pieces


class OutputBatchNorm(nn.BatchNorm1d):
    """BN on a head's output (the authors' ``mlpbn`` heads); ``out_features`` as on the Linear it follows."""

    @property
    def out_features(self) -> int:
        """The width of the head's output (what the next head reads)."""
        return self.num_features


def projection_head(in_dim: int, hidden_dim: int = 2048, out_dim: int = 128, out_bn: bool = False) -> nn.Sequential:
    """in_dim -> hidden (BN, ReLU) -> out_dim: SimCLR/MoCo v2's head (paper: 2048-2048-128).

    ``out_bn``: a BN on the output too, the authors' choice for N-pair on CIFAR and for every
    speech and tabular run (their ``--proj mlpbn``; ``mlpbn1`` = without).
    """
    for name, size in (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("out_dim", out_dim)):
        _checks.integer(name, size)
    _checks.flag("out_bn", out_bn)
    layers: list[nn.Module] = [
        nn.Linear(in_dim, hidden_dim, bias=False),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, out_dim),
    ]
    return nn.Sequential(*layers, *([OutputBatchNorm(out_dim)] if out_bn else []))


def prediction_head(dim: int = 128, hidden_dim: int = 512, out_bn: bool = False) -> nn.Sequential:
    """BYOL's predictor g: dim -> hidden (BN, ReLU) -> dim (``out_bn``: the authors' tabular ``--pred mlpbn``)."""
    _checks.integer("dim", dim)
    return projection_head(dim, hidden_dim, dim, out_bn)


def parameter_dtype(module: nn.Module) -> torch.dtype | None:
    """The dtype of ``module``'s first floating-point parameter (what its inputs must have), None if it has none."""
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), None)


ENCODER_KINDS = ("small", "resnet", "resnet-imagenet", "mlp", "mlp-authors")


def build_encoder(
    input_shape: Sequence[int],
    kind: str = "small",
    size: float | None = None,
    *,
    input_dtype: torch.dtype = torch.float32,
    groups: Sequence[int] | None = None,
) -> nn.Module:
    """The one encoder builder: a model-ready sample shape (C, H, W) or (F,) -> an encoder with ``out_dim``.

    kind: "small" (CPU-sized: SmallConvNet of width ``size`` (32) for (C, H, W), TabularMLP scaled
    by ``size / 512`` (1/16) for (F,)); "resnet" (CIFAR-stem ResNet of depth ``size`` (18));
    "resnet-imagenet" (torchvision ResNet, depth ``size`` (50)); "mlp" (the paper's 5-layer MLP,
    widths times ``size`` (1.0)); "mlp-authors" (the same with the authors' 64-wide input layer, one
    per column group, and no BN before the maxout).

    i-Mix mixes the encoder's *inputs*, so they must be continuous: integer inputs (token ids of a
    text domain) are refused rather than fed to an MLP as numbers. A text domain embeds first
    (an ``nn.Embedding`` whose output is the mixed input) and then encodes.
    """
    shape = tuple(int(s) for s in input_shape)
    if input_dtype is not None and not input_dtype.is_floating_point:
        raise ValueError(f"input_dtype {input_dtype} is not continuous: i-Mix mixes inputs, so token ids must go "
                         "through an embedding first (embed, then mix, then encode)")
    if kind not in ENCODER_KINDS:
        raise ValueError(f"kind must be one of {ENCODER_KINDS}, got {kind!r}")
    images = len(shape) == 3
    if kind in ("resnet", "resnet-imagenet") and not images:
        raise ValueError(f"kind={kind!r} needs (C, H, W) inputs, got shape {shape}; use 'small' or 'mlp' for tables")
    if kind in ("mlp", "mlp-authors") and len(shape) != 1:
        raise ValueError(f"kind={kind!r} needs (F,) table rows, got shape {shape}; use 'small' or 'resnet' for images")
    if not images and len(shape) != 1:
        raise ValueError(f"input_shape must be (C, H, W) or (F,), got {shape}")
    if kind == "small":
        return SmallConvNet(shape[0], int(size or 32)) if images else TabularMLP(shape[0], width=(size or 32) / 512)
    if kind == "resnet":
        return cifar_resnet(int(size or 18), in_channels=shape[0])
    if kind == "resnet-imagenet":
        return imagenet_resnet(int(size or 50))
    if kind == "mlp":
        return TabularMLP(shape[0], width=float(size or 1.0))
    return TabularMLP(shape[0], width=float(size or 1.0), stem=64, groups=groups, last_bn=False)
