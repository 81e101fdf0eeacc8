"""Tabular datasets: UCI CoverType and HIGGS, read from the UCI gzip CSV files.

Both return float32 ``inputs`` (N, F) standardised with the mean/std of the *training* rows
only (a feature whose train std is 0 keeps std 1), a :class:`MaskingNoise` augmentation
(p = 0.2, the paper's only tabular augmentation; a masked entry becomes 0 = the train mean)
and a cast-only evaluation transform.

Parsing: ``numpy.loadtxt`` (C-implemented since NumPy 1.23) on 64 MB blocks of the
decompressed text: about 0.15 s for the 92,962-row CoverType part, ~1 s for the full file.
The 2.6 GB HIGGS file is streamed (only the rows a split needs are kept) and the kept rows are
cached as ``<root>/.cache/higgs-*.npz`` when the root is writable.
"""
from __future__ import annotations

import contextlib

import gzip
import io
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .augment import MaskingNoise, TabularTransform
from .base import DomainData, Source, check_choice, check_int, fetch, per_class_indices, register, verify_file
from .digests import remember

COVTYPE_URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/covtype/covtype.data.gz"
HIGGS_URL = "https://archive.ics.uci.edu/ml/machine-learning-databases/00280/HIGGS.csv.gz"
# UCI gives no checksums; these are the sha256 of UCI's files as scikit-learn and TFDS publish them.
COVTYPE_SHA256 = "614360d0257557dd1792834a85a1cdebfadc3c4f30b011d56afee7ffb5b15771"
HIGGS_SHA256, HIGGS_BYTES = "ea302c18164d4e3d916a1e2e83a9a8d07069fa6ebc7771e4c0540d54e593b698", 2_816_407_858
# Every copy a load accepts without a record of its own (see data.digests): UCI's and the course's offline parts.
COVTYPE_COPIES = {
    COVTYPE_SHA256: "UCI's file (581,012 rows)",
    "9ddb2f606fb48bead967dcb3aa6b596ac4f2868690ae5d4b5120f86d275554f4":
        "the course's offline part (92,962 rows, numeric columns min-max scaled)",
}
HIGGS_COPIES = {
    HIGGS_SHA256: "UCI's file (11,000,000 rows)",
    "a2e084a8fb983463abbdd1ba35279792a2cf1f471f1dea0f95a9f0fd04a9e71d": "the course's offline part (10,984 rows)",
}
COVTYPE_CLASSES = ["spruce/fir", "lodgepole pine", "ponderosa pine", "cottonwood/willow", "aspen",
                   "douglas-fir", "krummholz"]
COVTYPE_GROUPS = (10, 4, 40)  # column groups: numeric, wilderness-area one-hot, soil-type one-hot
COVTYPE_SPLIT = (11_340, 3_780)  # UCI's documented split: first 11,340 train, next 3,780 val, rest test
HIGGS_FULL_ROWS, HIGGS_TEST_ROWS = 11_000_000, 500_000
_KEEP_ALL_ROWS = 2_000_000  # files up to this size are held whole (a part of HIGGS); larger ones streamed
_BLOCK_BYTES = 1 << 26  # decompressed text parsed per numpy.loadtxt call


def _parse_block(block: bytes, n_cols: int, path: Path) -> np.ndarray:
    try:
        arr = np.loadtxt(io.BytesIO(block), delimiter=",", dtype=np.float32, ndmin=2)
    except ValueError as err:
        raise ValueError(f"malformed CSV in {path}: {err}") from err
    if arr.shape[1] != n_cols:
        raise ValueError(f"{path}: expected {n_cols} comma-separated columns per row, found {arr.shape[1]}")
    return arr


def iter_csv_gz(path: Path, n_cols: int, block_bytes: int | None = None) -> Iterator[np.ndarray]:
    """Yield float32 (rows, n_cols) arrays from a gzip CSV without header, block by block.

    A truncated or non-gzip file raises ``RuntimeError`` naming it.
    """
    block_bytes = block_bytes or _BLOCK_BYTES
    f = gzip.open(path, "rb")
    try:
        rest = b""
        while True:
            try:
                block = f.read(block_bytes)
            except (OSError, EOFError, zlib.error) as err:
                raise RuntimeError(f"could not decompress {path} (truncated or not gzip?): "
                                   f"{type(err).__name__}: {err}; delete it and download again") from err
            if not block:
                break
            block = rest + block
            cut = block.rfind(b"\n") + 1
            rest, block = block[cut:], block[:cut]
            if block.strip():
                yield _parse_block(block, n_cols, path)
        if rest.strip():
            yield _parse_block(rest, n_cols, path)
    finally:
        f.close()


def standardise_columns(x: np.ndarray, train_rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x - mean) / std with mean, std (F,) of ``x[train_rows]`` only; zero std -> 1."""
    train = x[train_rows].astype(np.float64)
    mean, std = train.mean(0), train.std(0)
    std[std == 0] = 1.0
    return ((x - mean) / std).astype(np.float32), mean, std


def _as_domain_data(src: Source, split: str, x: np.ndarray, y: np.ndarray, classes: list[str], mask: MaskingNoise,
                    per_class: int | None, seed: int, info: dict) -> DomainData:
    inputs, labels = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64))
    if per_class is not None:
        idx = per_class_indices(labels, len(classes), per_class, seed, f"{src.name}: ")
        inputs, labels = inputs[idx], labels[idx]
    return DomainData(src.name, "tabular", split, inputs, labels, classes, (x.shape[1],), mask,
                      TabularTransform(), info)


def _ensure(src: Source, path: Path, url: str, copies: dict[str, str], **published: Any) -> Path:
    """``path``, checked against the known ``copies`` or its own record; else downloaded and checked (``published``)."""
    if path.is_file():
        return verify_file(path, copies, full_read=False)  # a 0-byte file names itself instead of parsing as no rows
    if not src.download:
        raise src.missing(path.name, path)
    return fetch(src, url, path, path.name, **published)


@register(
    "covtype", "tabular", ("train", "val", "test"),
    {"mask_columns": "numeric", "mask_p": 0.2, "per_class": None, "seed": 0, "standardise": "all",
     "split_rule": "uci"},
    "UCI CoverType: 54 features (10 numeric + 44 one-hot), 7 forest cover classes",
)
def load_covtype(src: Source, split: str, mask_columns: str, mask_p: float, per_class: int | None,
                 seed: int, standardise: str, split_rule: str) -> DomainData:
    """CoverType from ``<root>/covtype/covtype.data.gz`` (54 features, class 1..7 -> label 0..6).

    Split by row ranges, UCI's documented rule: rows [0, 11340) train, [11340, 15120) val, the
    rest test. On the full 581,012-row file the first two ranges are class-balanced; the offline
    part (92,962 random rows, numeric columns already min-max scaled by its publisher) uses the
    same ranges, so its splits follow the natural class imbalance.
    ``mask_columns``: "numeric" (default, the first 10 columns) or "all".
    ``standardise``: "all" 54 columns (default) or only the 10 "numeric" ones (the authors' code;
    the one-hot columns stay 0/1). ``split_rule``: "uci" (above) or "authors": train = the first
    15,120 rows (UCI's train + val, as the authors' code pretrains and probes on), no val split.
    Statistics always come from the train rows (the authors' code uses the whole file's).
    """
    check_choice("mask_columns", mask_columns, ("numeric", "all"))
    check_choice("standardise", standardise, ("all", "numeric"))
    check_choice("split_rule", split_rule, ("uci", "authors"))
    if split == "val" and split_rule == "authors":
        raise ValueError("covtype has no val split with split_rule='authors' (its train split holds UCI's val rows)")
    check_int("per_class", per_class, 1, allow_none=True)
    if not 0 <= mask_p <= 1:
        raise ValueError(f"mask_p must be in [0, 1], got {mask_p!r}")
    path = _ensure(src, src.root / "covtype" / "covtype.data.gz", COVTYPE_URL, COVTYPE_COPIES, sha256=COVTYPE_SHA256)
    data = np.concatenate(list(iter_csv_gz(path, 55)))
    n_train, n_val = COVTYPE_SPLIT
    if len(data) <= n_train + n_val:
        raise ValueError(f"{path} has {len(data)} rows; the standard split needs more than {n_train + n_val}")
    y = data[:, 54].astype(np.int64) - 1
    if y.min() < 0 or y.max() > 6:
        raise ValueError(f"{path}: class column must hold 1..7, found {y.min() + 1}..{y.max() + 1}")
    remember(path, COVTYPE_COPIES, src.name)  # read in full without error: a new file's digest is kept from now on
    if split_rule == "authors":
        n_train, n_val = n_train + n_val, 0
    n_cols = 10 if standardise == "numeric" else 54
    x = data[:, :54].copy()
    x[:, :n_cols], mean, std = standardise_columns(data[:, :n_cols], np.arange(n_train))
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val), "test": (n_train + n_val, None)}
    rows = slice(*bounds[split])
    cols = torch.zeros(54, dtype=torch.bool)
    cols[: 10 if mask_columns == "numeric" else 54] = True
    info = {"source": str(path), "rows_in_file": len(data), "mean": mean, "std": std,
            "standardised_columns": n_cols,
            "split_rule": "rows [0,11340) train, [11340,15120) val, rest test (UCI)" if split_rule == "uci"
            else "rows [0,15120) train, rest test (the authors' code)"}
    return _as_domain_data(src, split, x[rows], y[rows], COVTYPE_CLASSES, MaskingNoise(mask_p, cols), per_class, seed, info)


def higgs_rows(total: int, train_size: int | None, test_fraction: float) -> tuple[slice, slice]:
    """Row ranges (train, test) of a HIGGS file with ``total`` rows.

    Full file: test = last 500,000 rows (UCI's rule), train = the first ``train_size`` rows.
    A part: test = the last ``round(test_fraction * total)`` rows, train = the first
    ``train_size`` of the others. ``train_size`` None or too large = all remaining rows.
    """
    n_test = HIGGS_TEST_ROWS if total == HIGGS_FULL_ROWS else int(round(test_fraction * total))
    n_train = total - n_test if train_size is None else min(train_size, total - n_test)
    return slice(0, n_train), slice(total - n_test, total)


def higgs_train_index(pool: int, train_size: int | None, train_rows: str) -> np.ndarray:
    """Sorted indices of the training rows among the first ``pool`` (non-test) rows.

    "first": rows 0 .. train_size - 1. "random": the authors' Higgs100k rows,
    ``np.random.seed(1); np.random.choice(pool, train_size, replace=False)`` (legacy NumPy
    generator, stable across versions). None or train_size >= pool: every row.
    """
    if train_size is None or train_size >= pool:
        return np.arange(pool)
    if train_rows == "first":
        return np.arange(train_size)
    return np.sort(np.random.RandomState(1).choice(pool, train_size, replace=False))


def _read_higgs(src: Source, path: Path, train_size: int | None, train_rows: str) -> tuple[np.ndarray, int, bool]:
    """All rows of a part (<= 2M rows), or for the full file its training rows (see
    :func:`higgs_train_index`) plus the last 500k rows stacked (with the true total).
    Returns (rows, total, streamed)."""
    stat = path.stat()
    tag = f"train{train_size}" + ("-random" if train_rows == "random" else "")
    cache = src.root / ".cache" / f"higgs-{stat.st_size}-{int(stat.st_mtime)}-{tag}.npz"
    if cache.is_file():
        with np.load(cache) as z:
            return z["rows"], int(z["total"]), True
    parts: list[np.ndarray] | None = []  # every block, while the file is small enough to hold whole
    head: list[np.ndarray] = []
    tail: list[np.ndarray] = []
    tail_n = total = seen = 0
    keep = higgs_train_index(HIGGS_FULL_ROWS - HIGGS_TEST_ROWS, train_size, train_rows)
    for arr in iter_csv_gz(path, 29):
        total += len(arr)
        if parts is not None:
            parts.append(arr)
            if total <= _KEEP_ALL_ROWS:
                continue
            blocks, parts = parts, None  # too big to be a part: keep only train rows and tail from now on
        else:
            blocks = [arr]
        for b in blocks:
            lo, hi = np.searchsorted(keep, [seen, seen + len(b)])
            head.append(b[keep[lo:hi] - seen])
            seen += len(b)
            tail.append(b)
            tail_n += len(b)
            while tail_n - len(tail[0]) >= HIGGS_TEST_ROWS:
                tail_n -= len(tail.pop(0))
    if parts is not None:
        return (np.concatenate(parts) if parts else np.empty((0, 29), np.float32)), total, False
    if total != HIGGS_FULL_ROWS:
        raise ValueError(f"{path} has {total:,} rows: expected the full {HIGGS_FULL_ROWS:,}-row file "
                         f"or a part of at most {_KEEP_ALL_ROWS:,} rows")
    head, tail = np.concatenate(head), np.concatenate(tail)[-HIGGS_TEST_ROWS:]
    rows = np.concatenate([head, tail])
    with contextlib.suppress(OSError):  # a read-only root just gets no cache
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, rows=rows, total=total)
    return rows, total, True


@register(
    "higgs", "tabular", ("train", "test"),
    {"train_size": 100_000, "test_fraction": 0.2, "mask_p": 0.2, "per_class": None, "seed": 0, "train_rows": "first"},
    "UCI HIGGS: 28 kinematic features, signal vs background",
)
def load_higgs(src: Source, split: str, train_size: int | None, test_fraction: float, mask_p: float,
               per_class: int | None, seed: int, train_rows: str) -> DomainData:
    """HIGGS from ``<root>/higgs/HIGGS.csv.gz`` (label first: 1 signal, 0 background; 28 features).

    Full 11M-row file: test = last 500,000 rows; train = first ``train_size`` rows (100,000 =
    the paper's Higgs100k, 1,000,000 = Higgs1M). A part of the file (e.g. the 10,984-row offline
    copy): test = last ``test_fraction`` (20%) of rows, train = the first ``train_size`` of the
    rest (offline: all 8,787). Standardised with the chosen train rows; masking noise on all columns.
    ``train_rows``: "first" (above) or "random": the authors' seeded random ``train_size`` rows of
    the non-test part (:func:`higgs_train_index`). The authors standardise with the whole file's statistics.
    """
    check_choice("train_rows", train_rows, ("first", "random"))
    check_int("train_size", train_size, 1, allow_none=True)
    check_int("per_class", per_class, 1, allow_none=True)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    if not 0 <= mask_p <= 1:
        raise ValueError(f"mask_p must be in [0, 1], got {mask_p!r}")
    path = _ensure(src, src.root / "higgs" / "HIGGS.csv.gz", HIGGS_URL, HIGGS_COPIES, sha256=HIGGS_SHA256,
                   size=HIGGS_BYTES)
    rows, total, streamed = _read_higgs(src, path, train_size, train_rows)
    _, test = higgs_rows(total, train_size, test_fraction)
    if streamed:  # rows = the train rows, then the last 500k
        train_idx = np.arange(len(rows) - HIGGS_TEST_ROWS)
        test = slice(len(rows) - HIGGS_TEST_ROWS, len(rows))
    else:
        train_idx = higgs_train_index(test.start, train_size, train_rows)
    if len(train_idx) < 1 or test.stop - test.start < 1:
        raise ValueError(f"{path} has {total} rows: too few for a train/test split")
    y = rows[:, 0].astype(np.int64)
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"{path}: first column must be the 0/1 label")
    remember(path, HIGGS_COPIES, src.name)
    x, mean, std = standardise_columns(rows[:, 1:], train_idx)
    sel = train_idx if split == "train" else test
    info = {"source": str(path), "rows_in_file": total, "mean": mean, "std": std,
            "split_rule": ("last 500,000 rows test (UCI)" if total == HIGGS_FULL_ROWS
                           else f"part of the file: last {test_fraction:.0%} rows test")
            + f"; train = {len(train_idx):,} {'seeded random' if train_rows == 'random' else 'first'} rows"}
    return _as_domain_data(src, split, x[sel], y[sel], ["background", "signal"], MaskingNoise(mask_p), per_class, seed, info)
