"""ImageNet (ILSVRC-2012) and the authors' ImageNet-100, from torchvision's ImageFolder layout.

    <root>/imagenet/train/<wnid>/*.JPEG     (1,000 class folders, 1.28M images)
    <root>/imagenet/val/<wnid>/*.JPEG       (the 50,000 validation images sorted into class folders)

``val`` is the labelled evaluation set, so it is this loader's ``test`` split (as in the paper).
ImageNet cannot be downloaded automatically (its licence needs a login): place the folders there.

ImageNet-100 is the authors' subset (their ``folder.py``, ``--class-ratio 0.1``): the sorted class
folders, then ``random.seed(-1); random.sample(classes, round(0.1 * len(classes)))``, sorted again.
Python's ``random`` is stable across versions, so with the 1,000 ILSVRC folders this is the same
100 classes (it is not CMC's better-known ImageNet-100 list).

Like every loader here, images are held in memory as uint8: each is resized (bilinear, shorter
side to ``load_size``) and centre-cropped to a ``load_size`` square once, when loading. Views are
random resized crops of that square, so the borders beyond it are never seen; the evaluation view
is the centre ``image_size`` crop (torchvision's Resize(256) + CenterCrop(224) at the defaults).
Memory: about 196 kB per image at 256 px: 25 GB for ImageNet-100's 126,689 training images; use
``per_class`` or a smaller ``load_size`` for less. Augmentation: the authors' MoCo v2 recipe, crop
area (0.2, 1), colour jitter 0.4/0.4/0.4/0.1 (p 0.8), grayscale (p 0.2), Gaussian blur
sigma U(0.1, 2) (p 0.5), flip.
"""
from __future__ import annotations

import os
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .augment import ImageAugment, ImageTransform
from .base import DomainData, Source, check_int, per_class_indices, register

IMAGENET_STATS = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
SUBSET_RATIO = {"imagenet": 1.0, "imagenet100": 0.1}


def authors_class_subset(classes: list[str], ratio: float) -> list[str]:
    """The authors' class subset: ``random.seed(-1)``, ``random.sample`` of the sorted names, sorted."""
    classes = sorted(classes)
    if ratio >= 1:
        return classes
    return sorted(random.Random(-1).sample(classes, round(len(classes) * ratio)))


def load_square(path: str, size: int) -> np.ndarray:
    """Decode an image file to RGB uint8 (size, size, 3): shorter side resized to ``size``, centre crop."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            scale = size / min(im.size)
            im = im.resize((max(size, round(im.width * scale)), max(size, round(im.height * scale))),
                           Image.BILINEAR)
            left, top = (im.width - size) // 2, (im.height - size) // 2
            return np.asarray(im.crop((left, top, left + size, top + size)))
    except OSError as err:
        raise RuntimeError(f"could not decode image file {path}: {type(err).__name__}: {err}") from err


class CenterCrop(ImageTransform):
    """Evaluation view: uint8 (N, C, L, L) -> float32 (N, C, size, size), centre crop then normalise."""

    def __init__(self, size: int, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__(mean, std)
        self.size = size

    def __call__(self, x: Tensor) -> Tensor:
        top, left = (x.shape[-2] - self.size) // 2, (x.shape[-1] - self.size) // 2
        return super().__call__(x[..., top:top + self.size, left:left + self.size])


def _imagenet(src: Source, split: str, image_size: int, load_size: int, per_class: int | None,
              seed: int) -> DomainData:
    from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

    check_int("image_size", image_size, 8)
    check_int("load_size", load_size, image_size)
    check_int("per_class", per_class, 1, allow_none=True)
    folder = src.root / "imagenet" / ("train" if split == "train" else "val")
    if not folder.is_dir():
        raise src.missing("ImageNet in ImageFolder layout (imagenet/train/<wnid>/, imagenet/val/<wnid>/; "
                          "no automatic download: the licence needs a login)", folder)
    found = [e.name for e in os.scandir(folder) if e.is_dir()]
    classes = authors_class_subset(found, SUBSET_RATIO[src.name])
    if not classes:
        raise src.missing("ImageNet class folders", folder)
    samples = make_dataset(str(folder), {c: i for i, c in enumerate(classes)}, extensions=IMG_EXTENSIONS)
    labels = torch.tensor([label for _, label in samples], dtype=torch.long)
    if per_class is not None:
        idx = per_class_indices(labels, len(classes), per_class, seed, f"{src.name}: ")
        samples, labels = [samples[i] for i in idx.tolist()], labels[idx]
    with ThreadPoolExecutor(max_workers=min(16, os.cpu_count() or 1)) as pool:  # PIL decodes without the GIL
        arrays = list(pool.map(lambda s: load_square(s[0], load_size), samples))
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    mean, std = IMAGENET_STATS
    augment = ImageAugment((image_size, image_size), mean, std, scale=(0.2, 1.0), blur_p=0.5)
    info = {"source": str(folder), "files": [str(Path(p).relative_to(folder)) for p, _ in samples],
            "classes_found": len(found), "load_size": load_size, "mean": mean, "std": std}
    return DomainData(src.name, "image", split, images, labels, classes, (3, image_size, image_size), augment,
                      CenterCrop(image_size, mean, std), info)


_OPTIONS = {"image_size": 224, "load_size": 256, "per_class": None, "seed": 0}


@register("imagenet", "image", ("train", "test"), _OPTIONS,
          "ImageNet ILSVRC-2012 from ImageFolder folders (train/, val/ = test); 1,000 classes; no download")
def load_imagenet(src: Source, split: str, **options) -> DomainData:
    """ImageNet; options ``image_size`` (224), ``load_size`` (256: the square kept in memory),
    ``per_class``, ``seed``."""
    return _imagenet(src, split, **options)


@register("imagenet100", "image", ("train", "test"), _OPTIONS,
          "the authors' ImageNet-100: 10% of ImageNet's classes drawn with random.seed(-1) (their folder.py)")
def load_imagenet100(src: Source, split: str, **options) -> DomainData:
    """ImageNet-100 as the authors' ``--class-ratio 0.1``, read from the same ``imagenet/`` folders."""
    return _imagenet(src, split, **options)
