"""Image datasets: scikit-learn digits (no files needed) and CIFAR-10/100.

Every image loader returns uint8 ``inputs`` (N, C, H, W) plus an :class:`ImageAugment`
(batched SimCLR-style views) and an :class:`ImageTransform` (normalise only).

CIFAR is read from either layout under the data root:

- torchvision's ``cifar-10-batches-py/`` / ``cifar-100-python/`` (pickled arrays; what
  ``download=True`` fetches through torchvision, which checks the archive's MD5);
- an ImageFolder tree ``cifar10-jpg/{train,test}/<class>/*.jpg`` (the offline copy). Only the
  files a ``per_class`` subset picks are decoded.
"""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .augment import ImageAugment, ImageTransform
from .base import DomainData, Source, check_int, per_class_indices, register

CIFAR_STATS = {  # per-channel mean / std of the 50k training images (pixels in [0, 1])
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
_PICKLES = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
                "batches.meta", "label_names", "labels"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", "fine_label_names", "fine_labels"),
}


def resize_uint8(x: Tensor, size: int) -> Tensor:
    """uint8 (N, C, H, W) -> uint8 (N, C, size, size), bilinear with antialiasing."""
    if x.shape[-2:] == (size, size):
        return x
    y = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return y.round_().clamp_(0, 255).to(torch.uint8)


# ----------------------------------------------------------------------------- digits
@register(
    "digits", "image", ("train", "test"),
    {"image_size": 16, "test_size": 500, "seed": 0, "per_class": None},
    "scikit-learn's 1,797 8x8 handwritten digits (bundled, no download), grey uint8 upsampled to 16x16",
)
def load_digits(src: Source, split: str, image_size: int, test_size: int, seed: int,
                per_class: int | None) -> DomainData:
    """sklearn ``load_digits``: 1,797 grey 8x8 digits, 10 classes; no files needed.

    Pixels 0..16 are scaled to 0..255 (uint8) and, by default, upsampled to 16x16 (bilinear)
    so crops and small conv nets have room. Split: stratified ``train_test_split`` with
    ``test_size`` (500) and ``seed`` -> 1,297 train / 500 test. Normalisation: mean/std of the
    training pixels. Augmentation: crop of 60-100% area (aspect 0.8-1.25), rotation +-10
    degrees, Gaussian pixel noise 0.05; no flips (digits are not mirror-symmetric).
    """
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    check_int("image_size", image_size, 4)
    check_int("per_class", per_class, 1, allow_none=True)
    check_int("test_size", test_size, 10)
    bunch = sk_digits()
    images = torch.from_numpy(np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)).unsqueeze(1)
    images = resize_uint8(images, image_size)
    labels = torch.from_numpy(bunch.target).long()
    idx_train, idx_test = train_test_split(np.arange(len(labels)), test_size=test_size,
                                           stratify=bunch.target, random_state=seed)
    train_pixels = images[torch.from_numpy(np.sort(idx_train))].float() / 255.0
    mean, std = (float(train_pixels.mean()),), (float(train_pixels.std()),)
    idx = torch.from_numpy(np.sort(idx_train if split == "train" else idx_test))
    if per_class is not None:
        idx = idx[per_class_indices(labels[idx], 10, per_class, seed, "digits: ")]
    augment = ImageAugment((image_size, image_size), mean, std, scale=(0.6, 1.0), ratio=(0.8, 1.25),
                           flip=0.0, jitter_p=0.0, gray_p=0.0, rotate=10.0, noise=0.05)
    return DomainData(
        "digits", "image", split, images[idx].contiguous(), labels[idx], [str(i) for i in range(10)],
        (1, image_size, image_size), augment, ImageTransform(mean, std),
        {"source": "sklearn.datasets.load_digits", "mean": mean, "std": std, "indices": idx,
         "split_rule": f"stratified train_test_split(test_size={test_size}, random_state={seed})"},
    )


# ----------------------------------------------------------------------------- CIFAR
def _read_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    except Exception as err:
        raise RuntimeError(f"could not read CIFAR batch file {path}: {type(err).__name__}: {err} "
                           f"(delete it and load with download=True)") from err


def _cifar_pickles(folder: Path, name: str, split: str) -> tuple[Tensor, Tensor, list[str]]:
    _, train_files, test_files, meta_file, names_key, labels_key = _PICKLES[name]
    for fname in [meta_file] + (train_files if split == "train" else test_files):
        if not (folder / fname).is_file():
            raise FileNotFoundError(f"{name}: {folder / fname} is missing from the torchvision layout in "
                                    f"{folder}; delete the folder and load with download=True")
    classes = list(_read_pickle(folder / meta_file)[names_key])
    xs, ys = [], []
    for fname in train_files if split == "train" else test_files:
        batch = _read_pickle(folder / fname)
        xs.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(batch[labels_key], dtype=np.int64))
    return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys)), classes


def _decode_one(p: Path) -> np.ndarray:
    from PIL import Image

    try:
        with open(p, "rb") as fh, Image.open(io.BytesIO(fh.read())) as im:
            return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))
    except Exception as err:
        raise RuntimeError(f"could not decode image file {p}: {type(err).__name__}: {err}") from err


def _decode_jpegs(paths: list[Path]) -> Tensor:
    """Decode JPEG files with Pillow into one uint8 (N, 3, H, W) tensor; a bad file raises naming it.

    Pillow, not ``torchvision.io`` (its decoders are deprecated since torchvision 0.29); about
    0.1 ms per 32x32 image (threads did not help on 2 cores).
    """
    if not paths:
        return torch.empty(0, 3, 32, 32, dtype=torch.uint8)
    arrays = [_decode_one(p) for p in paths]
    for p, a in zip(paths, arrays):
        if a.shape != arrays[0].shape:  # one size per folder (CIFAR: 32x32)
            raise ValueError(f"image file {p} has shape {a.shape}, expected {arrays[0].shape}")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _cifar(src: Source, split: str, per_class: int | None, seed: int, image_size: int,
           crop_scale: tuple[float, float]) -> DomainData:
    name = src.name
    check_int("per_class", per_class, 1, allow_none=True)
    check_int("image_size", image_size, 4)
    if len(crop_scale) != 2 or not 0 < crop_scale[0] <= crop_scale[1] <= 1:
        raise ValueError(f"crop_scale must be (low, high) with 0 < low <= high <= 1, got {crop_scale!r}")
    pickle_dir = src.root / _PICKLES[name][0]
    jpg_dir = src.root / f"{name}-jpg" / split
    files: list[str] | None = None
    if not pickle_dir.is_dir() and not jpg_dir.is_dir():
        if not src.download:
            raise src.missing(f"{name} ({_PICKLES[name][0]}/ or {name}-jpg/{split}/)", pickle_dir,
                              extra=f"Also looked for the JPEG layout at {jpg_dir.absolute()}.")
        import torchvision.datasets as tvd

        cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
        try:  # torchvision verifies the archive's published MD5
            cls(str(src.root), train=True, download=True)
        except Exception as err:
            raise src.download_failed(name, pickle_dir, err) from err
    if pickle_dir.is_dir():
        images, labels, classes = _cifar_pickles(pickle_dir, name, split)
        if per_class is not None:
            idx = per_class_indices(labels, len(classes), per_class, seed, f"{name}: ")
            images, labels = images[idx], labels[idx]
        source = str(pickle_dir)
    else:
        classes = sorted(e.name for e in os.scandir(jpg_dir) if e.is_dir())
        if not classes:
            raise src.missing(f"{name} class folders", jpg_dir)
        files, labs = [], []
        for c, cname in enumerate(classes):
            found = sorted(f for f in os.listdir(jpg_dir / cname) if f.lower().endswith((".jpg", ".jpeg")))
            files += [f"{cname}/{f}" for f in found]
            labs += [c] * len(found)
        labels = torch.tensor(labs, dtype=torch.long)
        if per_class is not None:
            idx = per_class_indices(labels, len(classes), per_class, seed, f"{name}: ")
            files, labels = [files[i] for i in idx.tolist()], labels[idx]
        images = _decode_jpegs([jpg_dir / f for f in files])
        source = str(jpg_dir)
    images = resize_uint8(images, image_size)
    mean, std = CIFAR_STATS[name]
    info = {"source": source, "mean": mean, "std": std, "per_class": per_class, "seed": seed}
    if files is not None:
        info["files"] = files
    return DomainData(name, "image", split, images.contiguous(), labels, classes, (3, image_size, image_size),
                      ImageAugment((image_size, image_size), mean, std, scale=tuple(crop_scale)),
                      ImageTransform(mean, std), info)


_CIFAR_OPTIONS = {"per_class": None, "seed": 0, "image_size": 32, "crop_scale": (0.08, 1.0)}


@register("cifar10", "image", ("train", "test"), _CIFAR_OPTIONS,
          "CIFAR-10: 50,000/10,000 32x32 RGB images, 10 classes (torchvision layout or cifar10-jpg/)")
def load_cifar10(src: Source, split: str, **options) -> DomainData:
    """CIFAR-10. Options: ``per_class`` (seeded subset of each class), ``seed``, ``image_size``
    (resized at load time, antialiased; e.g. 16 for CPU runs), ``crop_scale`` (RandomResizedCrop area)."""
    return _cifar(src, split, **options)


@register("cifar100", "image", ("train", "test"), _CIFAR_OPTIONS,
          "CIFAR-100: 50,000/10,000 32x32 RGB images, 100 fine classes (torchvision layout or cifar100-jpg/)")
def load_cifar100(src: Source, split: str, **options) -> DomainData:
    """CIFAR-100 (fine labels); same options as CIFAR-10."""
    return _cifar(src, split, **options)


__all__ = ["CIFAR_STATS", "load_digits", "load_cifar10", "load_cifar100", "resize_uint8"]
