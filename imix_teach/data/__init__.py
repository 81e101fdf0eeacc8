"""Data for three domains behind one call: ``load(name, split, root=None, download=None, **options)``.

>>> from imix_teach.data import load, DATASETS
>>> d = load("digits")                       # needs no files
>>> x = d.inputs[:8]                         # raw rows, uint8 (8, 1, 16, 16)
>>> v1, v2 = d.augment(x), d.augment(x)      # two random views, float32 (8, 1, 16, 16)
>>> d.transform(x).shape                     # deterministic evaluation view
torch.Size([8, 1, 16, 16])

Names (``DATASETS[name]`` lists splits, options and defaults):

======================  =======  ==================  =====================================================
name                    domain   splits              options (default)
======================  =======  ==================  =====================================================
``digits``              image    train, test         image_size (16), test_size (500), seed, per_class
``cifar10``/``cifar100``  image  train, test         per_class (None), seed (0), image_size (32), crop_scale
``imagenet``/``imagenet100`` image train, test       image_size (224), load_size (256), per_class, seed
``speechcommands``      speech   train, val, test    version (1), classes ("paper12"), silence, per_class, seed, recipe
``fsdd``                speech   train, test         per_class, seed, recipe ("ours" / "authors")
``covtype``             tabular  train, val, test    mask_columns ("numeric"), mask_p (0.2), per_class, seed,
                                                     standardise ("all"), split_rule ("uci")
``higgs``               tabular  train, test         train_size (100000), test_fraction (0.2), mask_p, per_class, seed,
                                                     train_rows ("first")
======================  =======  ==================  =====================================================

Root: ``root`` argument, else ``$IMIX_DATA``, else ``~/.cache/imix_teach``. ``download=None``
downloads missing data unless ``$IMIX_OFFLINE`` is set. See ``data/README.md`` for sources.
"""
from __future__ import annotations

from . import image, imagenet, speech, tabular  # noqa: F401  (registers the loaders)
from .augment import WEAK, ImageAugment, ImageTransform, MaskingNoise, NoAugment, TabularTransform, ViewsDataset, weak_augment
from .base import DATASETS, DatasetInfo, DomainData, load
from .speech import LogMel, SpeechAugment

__all__ = [
    "DATASETS", "DatasetInfo", "DomainData", "load",
    "WEAK", "ImageAugment", "ImageTransform", "MaskingNoise", "NoAugment", "TabularTransform", "ViewsDataset", "weak_augment",
    "LogMel", "SpeechAugment",
]
