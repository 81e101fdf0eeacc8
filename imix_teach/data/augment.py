"""Batched, per-sample augmentations for images and tables (plain torch, any device).

Image views follow SimCLR (Chen et al., 2020a), which i-Mix uses for CIFAR: random resized
crop, horizontal flip (p=0.5), colour jitter 0.4/0.4/0.4/0.1 applied with p=0.8, grayscale
(p=0.2), then normalisation. Each sample draws its own parameters, but the work is done for
the whole batch at once:

- crop + flip (+ optional rotation) is one affine matrix per sample: ``F.affine_grid`` turns the
  (N, 2, 3) matrices into sampling grids and ``F.grid_sample`` resamples all images in one call;
- jitter factors are (N, 1, 1, 1) tensors, so brightness/contrast/saturation are broadcasts and hue
  is a vectorised shift of each pixel's hue between its max and min channel (:func:`hue_shift`);
- float arithmetic throughout: on a CPU, boolean masks and ``torch.where`` cost several float ops each.

Differences from torchvision, on purpose: jitter runs in a fixed order (brightness, contrast,
saturation, hue) instead of a random order per call; crop boxes that do not fit are clamped
instead of re-drawn up to 10 times; crops are resampled bilinearly without antialiasing.

:meth:`ImageAugment.torchvision_v2` returns the equivalent per-sample ``torchvision.transforms.v2``
pipeline (for DataLoader workers); ``benchmarks/augment_throughput.py`` compares the two.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from .base import rand, randn, uniform

if TYPE_CHECKING:
    from torchvision.transforms import v2

_GRAY = (0.2989, 0.587, 0.114)  # ITU-R 601-2 luma, as torchvision


def to_unit_float(x: Tensor) -> Tensor:
    """uint8 in [0, 255] -> float32 in [0, 1]; floating input is taken as already in [0, 1]."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def grayscale(x: Tensor) -> Tensor:
    """(N, 3, H, W) in [0, 1] -> luma (N, 1, H, W)."""
    r, g, b = x.unbind(1)
    return (r * _GRAY[0]).add_(g * _GRAY[1]).add_(b * _GRAY[2]).unsqueeze(1)


def _is_zero(x: Tensor) -> Tensor:
    """1.0 where x == 0, 0.0 where x > 0 (x >= 0): a float mask (boolean ops are ~10x slower on CPU)."""
    return 1.0 - torch.sign(x)


def hue_shift(x: Tensor, shift: Tensor) -> Tensor:
    """(N, 3, H, W) in [0, 1], per-sample hue shift (N,) in turns -> (N, 3, H, W): torchvision's adjust_hue.

    The HSV round trip without building S and V: a hue shift keeps each pixel's max and min, so
    with c = max - min, the hue in sextants h6 (which channel is the max, as torchvision picks it)
    and k = (n + h6 + 6 shift) mod 6, each channel is max - c * clamp(min(k, 4 - k), 0, 1), with
    n = 5, 3, 1 for r, g, b. Same values as torchvision to float rounding (~1e-6), in float
    arithmetic only.
    """
    r, g, b = x.unbind(1)
    maxc = torch.maximum(torch.maximum(r, g), b)
    c = maxc - torch.minimum(torch.minimum(r, g), b)
    safe = c.clamp_min(torch.finfo(x.dtype).tiny)  # grey pixels (c = 0): any hue, 0 / tiny = 0
    on_r = _is_zero(maxc - r)
    on_g = _is_zero(maxc - g) * (1.0 - on_r)
    on_b = (1.0 - on_r) * (1.0 - on_g)
    h6 = on_r * ((g - b) / safe) + on_g * ((b - r) / safe + 2.0) + on_b * ((r - g) / safe + 4.0)
    h6 = h6 + 6.0 * shift.view(-1, 1, 1)
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = h6 + n
        k = k - 6.0 * torch.floor(k / 6.0)
        channels.append(maxc - c * torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0))
    return torch.stack(channels, 1)


def color_jitter(x: Tensor, b: Tensor, c: Tensor, s: Tensor, h: Tensor) -> Tensor:
    """Per-sample jitter of (N, 3, H, W) in [0, 1]; b, c, s factors and h shift are (N,) tensors."""
    view = (-1, 1, 1, 1)
    x = (x * b.view(view)).clamp_(0.0, 1.0)
    mean = grayscale(x).mean((-3, -2, -1), keepdim=True)
    x = (c.view(view) * x + (1.0 - c.view(view)) * mean).clamp_(0.0, 1.0)
    x = (s.view(view) * x + (1.0 - s.view(view)) * grayscale(x)).clamp_(0.0, 1.0)
    return hue_shift(x, h)


def _choose(apply: Tensor, new: Tensor, old: Tensor) -> Tensor:
    """Per sample, new where apply (N,) is True, else old: exactly one or the other (lerp by 0.0 or 1.0).

    torch.where with a boolean mask takes ~3x longer on CPU.
    """
    return torch.lerp(old, new, apply.to(old.dtype).view(-1, *[1] * (old.dim() - 1)))


def gaussian_blur(x: Tensor, sigma: Tensor) -> Tensor:
    """Per-sample Gaussian blur of (N, C, H, W), std ``sigma`` (N,) in pixels: separable, reflect padding.

    The kernel reaches 3 sigma of the largest sigma in the batch (PIL's ``GaussianBlur(radius=sigma)``
    that the authors use blurs with the same standard deviation).
    """
    n, c, h, w = x.shape
    radius = max(1, min(int(math.ceil(3 * float(sigma.max()))), h - 1, w - 1))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t[None] / sigma.to(x.dtype)[:, None]) ** 2)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (N*C, 2r+1)
    y = F.pad(x.reshape(1, n * c, h, w), (radius, radius, 0, 0), mode="reflect")
    y = F.conv2d(y, k.view(n * c, 1, 1, -1), groups=n * c)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode="reflect"), k.view(n * c, 1, -1, 1), groups=n * c)
    return y.view(n, c, h, w)


class ImageTransform:
    """Evaluation transform: uint8 (N, C, H, W) -> float32 (N, C, H, W), ``(x/255 - mean) / std``."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        self.mean, self.std = tuple(mean), tuple(std)

    def normalize(self, x: Tensor) -> Tensor:
        """(N, C, H, W) float in [0, 1] -> standardised with the dataset's per-channel mean and std."""
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, -1, 1, 1)
        return (x - mean) / std

    def __call__(self, x: Tensor) -> Tensor:
        return self.normalize(to_unit_float(x))


class ImageAugment(ImageTransform):
    """Random view of a uint8 image batch: (N, C, H, W) -> float32 (N, C, *size), normalised.

    Args:
        size: output (H, W).
        mean, std: per-channel normalisation (same as the eval transform).
        scale, ratio: crop area fraction and aspect-ratio ranges (torchvision's RandomResizedCrop).
        flip: horizontal-flip probability (0 for digits: they are not mirror-symmetric).
        jitter_p, jitter: probability and strengths (brightness, contrast, saturation, hue); RGB only.
        gray_p: grayscale probability; RGB only.
        rotate: max rotation in degrees (uniform +-rotate), 0 = none.
        noise: std of Gaussian noise added in [0, 1] pixel units before normalisation, 0 = none.
        blur_p, blur_sigma: probability and std range (pixels) of a Gaussian blur (ImageNet: 0.5, (0.1, 2)).
    """

    def __init__(
        self,
        size: tuple[int, int],
        mean: tuple[float, ...],
        std: tuple[float, ...],
        scale: tuple[float, float] = (0.08, 1.0),
        ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip: float = 0.5,
        jitter_p: float = 0.8,
        jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1),
        gray_p: float = 0.2,
        rotate: float = 0.0,
        noise: float = 0.0,
        blur_p: float = 0.0,
        blur_sigma: tuple[float, float] = (0.1, 2.0),
    ):
        super().__init__(mean, std)
        self.size, self.scale, self.ratio = tuple(size), tuple(scale), tuple(ratio)
        self.flip, self.jitter_p, self.jitter, self.gray_p = flip, jitter_p, tuple(jitter), gray_p
        self.rotate, self.noise, self.blur_p, self.blur_sigma = rotate, noise, blur_p, tuple(blur_sigma)

    def crop_matrices(self, x: Tensor, generator: Optional[torch.Generator]) -> Tensor:
        """(N, 2, 3) affine matrices mapping output coords in [-1, 1] to a random box of the input.

        Box: area fraction a ~ U(scale), aspect r = exp(U(log ratio)); width w = sqrt(a r),
        height h = sqrt(a / r) (as fractions of the side, clamped to 1); centre uniform where the
        box fits. A flip negates the x column; a rotation turns the box about its centre.
        """
        n = x.shape[0]
        area = uniform(n, *self.scale, x, generator)
        log_r = uniform(n, math.log(self.ratio[0]), math.log(self.ratio[1]), x, generator)
        w = (area * log_r.exp()).sqrt().clamp(max=1.0)
        h = (area / log_r.exp()).sqrt().clamp(max=1.0)
        cx = (1.0 - w) * uniform(n, -1.0, 1.0, x, generator)
        cy = (1.0 - h) * uniform(n, -1.0, 1.0, x, generator)
        sign = torch.where(rand((n,), x, generator) < self.flip, -1.0, 1.0)
        angle = math.radians(self.rotate) * uniform(n, -1.0, 1.0, x, generator)
        cos, sin = angle.cos(), angle.sin()
        row_x = torch.stack([cos * w * sign, -sin * h, cx], 1)
        row_y = torch.stack([sin * w * sign, cos * h, cy], 1)
        return torch.stack([row_x, row_y], 1)

    def __call__(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        x = to_unit_float(x)
        n, c = x.shape[:2]
        theta = self.crop_matrices(x, generator)
        grid = F.affine_grid(theta, [n, c, *self.size], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        if c == 3 and self.jitter_p > 0:
            bs, cs, ss, hs = self.jitter
            factors = [uniform(n, max(0.0, 1 - k), 1 + k, x, generator) for k in (bs, cs, ss)]
            hue = uniform(n, -hs, hs, x, generator)
            x = _choose(rand((n,), x, generator) < self.jitter_p, color_jitter(x, *factors, hue), x)
        if c == 3 and self.gray_p > 0:
            x = _choose(rand((n,), x, generator) < self.gray_p, grayscale(x).expand(-1, 3, -1, -1), x)
        if self.blur_p > 0:
            sigma = uniform(n, *self.blur_sigma, x, generator)
            x = _choose(rand((n,), x, generator) < self.blur_p, gaussian_blur(x, sigma), x)
        if self.noise > 0:
            x = x + self.noise * randn(tuple(x.shape), x, generator)
        return self.normalize(x)

    def torchvision_v2(self) -> v2.Compose:
        """The same recipe as a per-sample ``torchvision.transforms.v2.Compose`` (uint8 CHW -> float).

        Rotation and noise (digits only) are not included; everything else matches the arguments.
        """
        from torchvision.transforms import v2  # here: importing torchvision costs every process ~2 s

        steps = [v2.RandomResizedCrop(self.size, scale=self.scale, ratio=self.ratio, antialias=True)]
        if self.flip > 0:
            steps.append(v2.RandomHorizontalFlip(self.flip))
        if len(self.mean) == 3 and self.jitter_p > 0:
            steps.append(v2.RandomApply([v2.ColorJitter(*self.jitter)], p=self.jitter_p))
        if len(self.mean) == 3 and self.gray_p > 0:
            steps.append(v2.RandomGrayscale(self.gray_p))
        if self.blur_p > 0:
            kernel = 2 * math.ceil(3 * self.blur_sigma[1]) + 1
            steps.append(v2.RandomApply([v2.GaussianBlur(kernel, self.blur_sigma)], p=self.blur_p))
        steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(self.mean), list(self.std))]
        return v2.Compose(steps)


class ViewsDataset(Dataset):
    """Per-sample path: item i -> (tuple of ``n_views`` transformed views of inputs[i], label).

    Use with a ``DataLoader`` and a ``torchvision.transforms.v2`` pipeline, e.g.
    ``ViewsDataset(d.inputs, d.labels, d.augmenter.torchvision_v2())``.
    """

    def __init__(self, inputs: Tensor, labels: Tensor, transform, n_views: int = 2):
        self.inputs, self.labels, self.transform, self.n_views = inputs, labels, transform, n_views

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        x = self.inputs[i]
        return tuple(self.transform(x) for _ in range(self.n_views)), self.labels[i]


# ----------------------------------------------------------------------------- tabular
class TabularTransform:
    """Tables are standardised at load time: evaluation only casts to float32, (N, F) -> (N, F)."""

    def __call__(self, x: Tensor) -> Tensor:
        return x.float()


class MaskingNoise(TabularTransform):
    """Masking noise: each entry of the allowed columns becomes 0 (= the train mean) with prob. p.

    (N, F) -> (N, F); every call draws its own (N, F) mask, so two calls give two views.
    ``columns`` is a bool mask (F,) of the maskable columns, None = all.
    """

    def __init__(self, p: float = 0.2, columns: Optional[Tensor] = None):
        self.p, self.columns = p, columns

    def __call__(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        x = x.float()
        mask = rand(tuple(x.shape), x, generator) < self.p
        if self.columns is not None:
            mask &= self.columns.to(x.device)
        return x.masked_fill(mask, 0.0)


# ----------------------------------------------------------------------------- the views of a run
# "weak": crop + flip, no colour (the regime grid's second augmentation; RandomResizedCrop's aspect range).
WEAK = dict(scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3), flip=0.5)


class NoAugment:
    """Both views are the evaluation transform: ``augment(x, generator) == transform(x)`` (Table 3's setting)."""

    def __init__(self, transform: Callable[[Tensor], Tensor]):
        self.transform = transform

    def __call__(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        return self.transform(x)


def weak_augment(input_shape: tuple[int, ...], transformer: ImageTransform) -> ImageAugment:
    """Random resized crop (20-100 % of the area) + flip, no colour, normalised as ``transformer``."""
    return ImageAugment(tuple(input_shape[1:]), transformer.mean, transformer.std, scale=WEAK["scale"],
                        ratio=WEAK["ratio"], flip=WEAK["flip"], jitter_p=0.0, gray_p=0.0)
