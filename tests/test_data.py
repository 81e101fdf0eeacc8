"""Data layer: every dataset and split through the public ``load``, on the offline copy.

The offline copy lives at ``<repo>/../shared/data`` (see its README); tests that need it skip
cleanly when it is absent. Loads are cached per module so the file stays fast (< 60 s on 2 cores).
"""
from __future__ import annotations

import gzip
import pickle
import re
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
import torch

from imix_teach.data import DATASETS, DomainData, ImageAugment, SpeechAugment, ViewsDataset, load
from imix_teach.data.speech import fft_resample
from imix_teach.data.tabular import higgs_rows

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="module")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"offline data not found at {SHARED}")
    return SHARED


@lru_cache(maxsize=None)
def _cached(name: str, split: str, opts: tuple) -> DomainData:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # small offline classes warn under per_class
        return load(name, split, root=SHARED, download=False, **dict(opts))


def get(name: str, split: str = "train", **opts) -> DomainData:
    return _cached(name, split, tuple(sorted(opts.items())))


# (name, split, options, number of classes, expected rows or None)
CASES = [
    ("digits", "train", {}, 10, 1297),
    ("digits", "test", {}, 10, 500),
    ("cifar10", "train", {"per_class": 3}, 10, 30),
    ("cifar10", "test", {"per_class": 3}, 10, 30),
    ("speechcommands", "train", {}, 12, 205 + 20),
    ("speechcommands", "val", {}, 12, 44),
    ("speechcommands", "test", {}, 12, 51),
    ("fsdd", "train", {"per_class": 3}, 10, 30),
    ("fsdd", "test", {}, 10, 300),
    ("covtype", "train", {}, 7, 11_340),
    ("covtype", "val", {}, 7, 3_780),
    ("covtype", "test", {}, 7, 92_962 - 15_120),
    ("higgs", "train", {}, 2, 8_787),
    ("higgs", "test", {}, 2, 2_197),
]
INPUT_DTYPE = {"image": torch.uint8, "speech": torch.float32, "tabular": torch.float32}
IDS = [f"{c[0]}-{c[1]}" for c in CASES]


def test_registry_lists_every_dataset():
    assert set(DATASETS) == {"digits", "cifar10", "cifar100", "imagenet", "imagenet100", "speechcommands", "fsdd",
                             "covtype", "higgs"}
    for info in DATASETS.values():
        assert info.domain in {"image", "speech", "tabular"} and "train" in info.splits


@pytest.mark.parametrize("name,split,opts,n_classes,n_rows", CASES, ids=IDS)
def test_split_shapes_dtypes_labels(shared_data, name, split, opts, n_classes, n_rows):
    d = get(name, split, **opts)
    assert (d.name, d.split, len(d), len(d.classes)) == (name, split, n_rows, n_classes)
    assert d.inputs.dtype == INPUT_DTYPE[d.domain] and d.labels.dtype == torch.int64
    assert d.inputs.shape[0] == n_rows and 0 <= int(d.labels.min()) and int(d.labels.max()) < n_classes
    if d.domain == "speech":
        assert d.inputs.shape[1:] == (16000,)
    x = d.inputs[:6]
    ev, view = d.transform(x), d.augment(x, torch.Generator().manual_seed(0))
    for out in (ev, view):
        assert out.shape == (6, *d.input_shape) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert not torch.equal(view, ev), "augment must change the data"


@pytest.mark.parametrize("name,split,opts", [(c[0], c[1], c[2]) for c in CASES if c[1] != "test"],
                         ids=[i for i, c in zip(IDS, CASES) if c[1] != "test"])
def test_augment_deterministic_under_seed(shared_data, name, split, opts):
    d = get(name, split, **opts)
    x = d.inputs[:8]
    a = d.augment(x, torch.Generator().manual_seed(7))
    b = d.augment(x, torch.Generator().manual_seed(7))
    c = d.augment(x, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    g = torch.Generator().manual_seed(7)
    v1, v2 = d.augment(x, g), d.augment(x, g)  # the training loop's two views
    assert not torch.equal(v1, v2)


def test_per_class_subsets_balanced_and_seeded(shared_data):
    for name, k in [("cifar10", 4), ("fsdd", 3), ("digits", 5)]:
        d = get(name, "train", per_class=k)
        assert d.class_counts().tolist() == [k] * 10
    a, b = get("cifar10", "train", per_class=4), get("cifar10", "train", per_class=4, seed=1)
    again = load("cifar10", "train", root=shared_data, download=False, per_class=4)
    assert a.info["files"] == again.info["files"] and torch.equal(a.inputs, again.inputs)
    assert a.info["files"] != b.info["files"]


def test_subset_len_and_repr(shared_data):
    d = get("fsdd", "test")
    s = d.subset([0, 5, 7])
    assert len(s) == 3 and s.info["files"] == [d.info["files"][i] for i in (0, 5, 7)]
    assert torch.equal(s.inputs, d.inputs[[0, 5, 7]]) and "fsdd" in repr(s)


def test_fsdd_split_rule(shared_data):
    index = re.compile(r"^\d_[A-Za-z]+_(\d+)\.wav$")
    test = get("fsdd", "test")
    assert all(int(index.match(f).group(1)) <= 4 for f in test.info["files"])
    assert test.class_counts().tolist() == [30] * 10  # 6 speakers x 5 indices per digit
    train = get("fsdd", "train", per_class=3)
    assert all(int(index.match(f).group(1)) >= 5 for f in train.info["files"])


def test_speechcommands_classes_and_silence(shared_data):
    train = get("speechcommands", "train")
    assert train.classes[-2:] == ["unknown", "silence"] and train.classes[:3] == ["yes", "no", "up"]
    sil = train.labels == 11
    assert int(sil.sum()) == train.info["silence_clips"] == 20  # 10% of 205 clips
    assert train.inputs[sil].abs().max() == 0 and train.inputs[~sil].abs().amax(1).min() > 0
    assert int((get("speechcommands", "test").labels == 11).sum()) == 0
    words = get("speechcommands", "val", classes="all")
    assert len(words.classes) == 30 and "silence" not in words.classes
    files = set(get("speechcommands", "train").info["files"]) & set(get("speechcommands", "test").info["files"])
    assert files <= {"<silence>"}


def test_standardisation_uses_train_statistics_only(shared_data):
    for name in ("covtype", "higgs"):
        train, test = get(name, "train"), get(name, "test")
        varying = train.inputs.std(0) > 0
        assert train.inputs.mean(0).abs().max() < 1e-3
        assert torch.allclose(train.inputs[:, varying].std(0), torch.ones(int(varying.sum())), atol=1e-3)
        assert test.inputs.mean(0).abs().max() > 1e-3  # test rows are not re-standardised
        assert np.array_equal(train.info["mean"], test.info["mean"])


def test_masking_noise_columns(shared_data):
    numeric, every = get("covtype", "train"), get("covtype", "train", mask_columns="all")
    x = numeric.inputs[:256]
    v = numeric.augment(x, torch.Generator().manual_seed(0))
    assert torch.equal(v[:, 10:], x[:, 10:]) and not torch.equal(v[:, :10], x[:, :10])
    frac = (v[:, :10] != x[:, :10]).float().mean()
    assert 0.1 < frac < 0.3  # p = 0.2
    w = every.augment(x, torch.Generator().manual_seed(0))
    assert not torch.equal(w[:, 10:], x[:, 10:])


def _tensor_img(d: DomainData, aug: ImageAugment, x: torch.Tensor) -> torch.Tensor:
    return aug(x, torch.Generator().manual_seed(3))


def test_each_image_augmentation(shared_data):
    d = get("cifar10", "test", per_class=3)
    x, base = d.inputs[:8], d.transform(d.inputs[:8])
    kw = dict(size=(32, 32), mean=d.augmenter.mean, std=d.augmenter.std)
    still = dict(scale=(1.0, 1.0), ratio=(1.0, 1.0), flip=0.0, jitter_p=0.0, gray_p=0.0)
    assert torch.allclose(_tensor_img(d, ImageAugment(**kw, **still), x), base, atol=1e-4)  # identity box
    flipped = _tensor_img(d, ImageAugment(**kw, **{**still, "flip": 1.0}), x)
    assert torch.allclose(flipped, base.flip(-1), atol=1e-4)
    for change in ({"scale": (0.2, 0.5), "ratio": (3 / 4, 4 / 3)}, {"jitter_p": 1.0}, {"gray_p": 1.0}):
        out = _tensor_img(d, ImageAugment(**kw, **{**still, **change}), x)
        assert out.shape == base.shape and not torch.allclose(out, base, atol=1e-3), change
    grey = _tensor_img(d, ImageAugment(**kw, **{**still, "gray_p": 1.0}), x)
    raw = grey * torch.tensor(kw["std"]).view(1, 3, 1, 1) + torch.tensor(kw["mean"]).view(1, 3, 1, 1)
    assert torch.allclose(raw[:, 0], raw[:, 1], atol=1e-5) and torch.allclose(raw[:, 1], raw[:, 2], atol=1e-5)


def test_each_speech_augmentation(shared_data):
    d = get("speechcommands", "test")
    x = d.inputs[:6]
    base = d.transform(x)
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    for op in SpeechAugment.OPS:
        aug = SpeechAugment(d.transformer.db_mean, d.transformer.db_std, p=1.0, ops=(op,))
        out = aug(x, g())
        assert out.shape == base.shape and torch.isfinite(out).all()
        assert not torch.allclose(out, base, atol=1e-3), op
    gain = SpeechAugment(p=1.0, ops=("gain",)).waveform_view(x, g())
    ratio = gain.abs().amax(1) / x.abs().amax(1)
    assert ((ratio >= 0.7 - 1e-5) & (ratio <= 1.1 + 1e-5)).all()


def test_views_dataset_with_torchvision_v2(shared_data):
    d = get("cifar10", "test", per_class=3)
    ds = ViewsDataset(d.inputs, d.labels, d.augmenter.torchvision_v2())
    (v1, v2), y = ds[0]
    assert v1.shape == v2.shape == (3, 32, 32) and v1.dtype == torch.float32 and not torch.equal(v1, v2)


def test_cifar_image_size_option(shared_data):
    d = get("cifar10", "test", per_class=2, image_size=16)
    assert d.inputs.shape[1:] == (3, 16, 16) and d.input_shape == (3, 16, 16)
    assert d.augment(d.inputs, torch.Generator().manual_seed(0)).shape == (20, 3, 16, 16)


def _fake_cifar(root: Path, name: str) -> None:
    """A tiny torchvision-layout CIFAR (pickles) in ``root``."""
    rng = np.random.default_rng(0)
    if name == "cifar10":
        folder, train, test = root / "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"]
        meta, names_key, key, n_cls = "batches.meta", "label_names", "labels", 10
    else:
        folder, train, test = root / "cifar-100-python", ["train"], ["test"]
        meta, names_key, key, n_cls = "meta", "fine_label_names", "fine_labels", 100
    folder.mkdir(parents=True)
    for fname in train + test:
        batch = {"data": rng.integers(0, 256, (2 * n_cls, 3072), dtype=np.uint8), key: list(range(n_cls)) * 2}
        (folder / fname).write_bytes(pickle.dumps(batch))
    (folder / meta).write_bytes(pickle.dumps({names_key: [f"c{i}" for i in range(n_cls)]}))


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_torchvision_layout(tmp_path, name):
    _fake_cifar(tmp_path, name)
    d = load(name, "train", root=tmp_path, download=False, per_class=1)
    n_cls = 10 if name == "cifar10" else 100
    assert d.inputs.shape == (n_cls, 3, 32, 32) and d.class_counts().tolist() == [1] * n_cls
    assert len(load(name, "test", root=tmp_path, download=False)) == 2 * n_cls


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "speechcommands", "fsdd", "covtype", "higgs"])
def test_missing_data_error_names_the_ways_out(tmp_path, name):
    with pytest.raises(FileNotFoundError) as err:
        load(name, root=tmp_path, download=False)
    msg = str(err.value)
    assert "IMIX_DATA" in msg and "download=True" in msg and str(tmp_path) in msg


def test_imix_offline_blocks_download(tmp_path, monkeypatch):
    monkeypatch.setenv("IMIX_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="IMIX_OFFLINE"):
        load("covtype", root=tmp_path)


def test_env_var_root(shared_data, monkeypatch):
    monkeypatch.setenv("IMIX_DATA", str(shared_data))
    assert len(load("higgs", "test", download=False)) == 2_197


def test_digits_need_no_files(tmp_path):
    d = load("digits", "test", root=tmp_path, download=False, image_size=8)
    assert d.inputs.shape == (500, 1, 8, 8) and int(d.inputs.max()) == 255


def test_corrupt_files_are_named(tmp_path):
    good = gzip.compress(b"".join(b"1," + b",".join([b"0.5"] * 53) + b",2\n" for _ in range(2000)))
    path = tmp_path / "covtype" / "covtype.data.gz"
    path.parent.mkdir()
    path.write_bytes(good[: len(good) // 2])  # truncated gzip
    with pytest.raises(RuntimeError, match=re.escape(str(path))):
        load("covtype", root=tmp_path, download=False)
    path.write_bytes(gzip.compress(b"1,2,3\n"))  # wrong column count
    with pytest.raises(ValueError, match=re.escape(str(path))):
        load("covtype", root=tmp_path, download=False)

    jpg = tmp_path / "cifar10-jpg" / "train" / "cat" / "0000.jpg"
    jpg.parent.mkdir(parents=True)
    jpg.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(RuntimeError, match="0000.jpg"):
        load("cifar10", root=tmp_path, download=False)

    wav = tmp_path / "fsdd" / "recordings" / "3_nobody_7.wav"
    wav.parent.mkdir(parents=True)
    wav.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(RuntimeError, match="3_nobody_7.wav"):
        load("fsdd", root=tmp_path, download=False)


@pytest.mark.parametrize("call,needle", [
    (lambda: load("mnist"), "name="),
    (lambda: load("digits", "val"), "split="),
    (lambda: load("digits", colour=True), "colour"),
    (lambda: load("digits", per_class=0), "per_class"),
    (lambda: load("covtype", mask_columns="some"), "mask_columns"),
    (lambda: load("speechcommands", version=3), "version"),
    (lambda: load("cifar10", image_size=0), "image_size"),
])
def test_bad_arguments_raise_value_error(tmp_path, call, needle):
    with pytest.raises(ValueError, match=needle):
        call()


def test_higgs_split_rule():
    train, test = higgs_rows(11_000_000, 100_000, 0.2)
    assert (train.start, train.stop, test.start, test.stop) == (0, 100_000, 10_500_000, 11_000_000)
    train, test = higgs_rows(10_984, 100_000, 0.2)
    assert (train.stop, test.start, test.stop) == (8_787, 8_787, 10_984)


def test_fft_resample_keeps_frequency():
    t = torch.arange(8000) / 8000
    y = fft_resample(torch.sin(2 * torch.pi * 440 * t)[None], 8000, 16000)
    assert y.shape == (1, 16000)
    assert int(torch.fft.rfft(y[0]).abs().argmax()) == 440
    assert torch.allclose(y[0, ::2], torch.sin(2 * torch.pi * 440 * t), atol=1e-3)


def _fake_full_higgs(tmp_path: Path, monkeypatch) -> None:
    """A 1,000-row "full" HIGGS file (test = last 100 rows), feature 0 = the row number."""
    import imix_teach.data.tabular as tab

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the first-load digest record goes here
    monkeypatch.setattr(tab, "HIGGS_FULL_ROWS", 1000)
    monkeypatch.setattr(tab, "HIGGS_TEST_ROWS", 100)
    monkeypatch.setattr(tab, "_KEEP_ALL_ROWS", 300)
    monkeypatch.setattr(tab, "_BLOCK_BYTES", 4096)
    rows = [f"{i % 2}," + ",".join([str(i)] + ["0.5"] * 27) for i in range(1000)]
    path = tmp_path / "higgs" / "HIGGS.csv.gz"
    path.parent.mkdir()
    path.write_bytes(gzip.compress(("\n".join(rows) + "\n").encode()))


def test_higgs_full_file_streaming_and_cache(tmp_path, monkeypatch):
    """The full-file path (head + last-500k streaming, .npz cache), scaled down 11,000x."""
    _fake_full_higgs(tmp_path, monkeypatch)
    for attempt in range(2):  # the second load reads the cache
        train = load("higgs", "train", root=tmp_path, download=False, train_size=50)
        test = load("higgs", "test", root=tmp_path, download=False, train_size=50)
        row_id = lambda d: (d.inputs[:, 0].double() * d.info["std"][0] + d.info["mean"][0]).round().long()  # noqa: E731
        assert row_id(train).tolist() == list(range(50)) and row_id(test).tolist() == list(range(900, 1000))
        assert train.labels.tolist() == [i % 2 for i in range(50)]
    assert list((tmp_path / ".cache").glob("higgs-*.npz"))


def test_higgs_authors_random_rows_streamed(tmp_path, monkeypatch):
    """train_rows="random": the authors' np.random.seed(1) choice of rows, on the streamed full-file path."""
    _fake_full_higgs(tmp_path, monkeypatch)
    np.random.seed(1)  # the authors' tabular.higgs(mode="100k"), scaled down
    expected = sorted(np.random.choice(1000 - 100, 50, replace=False).tolist())
    train = load("higgs", "train", root=tmp_path, download=False, train_size=50, train_rows="random")
    row_id = (train.inputs[:, 0].double() * train.info["std"][0] + train.info["mean"][0]).round().long()
    assert row_id.tolist() == expected and train.labels.tolist() == [i % 2 for i in expected]
    first = load("higgs", "train", root=tmp_path, download=False, train_size=50)
    assert first.info["std"][0] != train.info["std"][0]  # different rows, different statistics


def test_covtype_authors_columns_and_rows(shared_data):
    ours, authors = get("covtype", "train"), get("covtype", "train", standardise="numeric", split_rule="authors")
    assert len(ours) == 11_340 and len(authors) == 15_120 == 11_340 + 3_780
    assert len(get("covtype", "test", split_rule="authors")) == len(get("covtype", "test"))
    assert set(authors.inputs[:, 10:].unique().tolist()) == {0.0, 1.0}  # one-hot columns left as 0/1
    assert torch.allclose(authors.inputs[:, :10].mean(0), torch.zeros(10), atol=1e-4)
    assert not set(ours.inputs[:, 10:].unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(ValueError, match="val split"):
        load("covtype", "val", root=shared_data, download=False, split_rule="authors")


def _tiny_imagenet(root: Path, n_classes: int = 20, per_class: int = 3) -> list[str]:
    """A generated ImageFolder tree ``root/imagenet/{train,val}/<wnid>/*.JPEG`` of odd-sized images."""
    from PIL import Image

    wnids = [f"n{1000 + 37 * i:08d}" for i in range(n_classes)]
    for split in ("train", "val"):
        for wnid in wnids:
            (root / "imagenet" / split / wnid).mkdir(parents=True)
            for k in range(per_class):
                w, h = 40 + 8 * k, 30  # landscape: the centre square keeps the white middle
                img = np.zeros((h, w, 3), np.uint8)
                img[:, (w - h) // 2:(w + h) // 2] = 255
                Image.fromarray(img).save(root / "imagenet" / split / wnid / f"{wnid}_{k}.png")
    return wnids


def test_imagenet_loaders_on_a_generated_folder(tmp_path):
    import random

    wnids = _tiny_imagenet(tmp_path)
    full = load("imagenet", "train", root=tmp_path, download=False, image_size=16, load_size=20)
    assert full.classes == wnids and full.inputs.shape == (60, 3, 20, 20) and full.inputs.dtype == torch.uint8
    assert (full.inputs[:, 1, :, 2:-2] == 255).all()  # shorter side to 20 px, then the centre square
    assert full.transform(full.inputs).shape == (60, 3, 16, 16)
    assert full.augment(full.inputs[:8], torch.Generator().manual_seed(0)).shape == (8, 3, 16, 16)
    random.seed(-1)  # the authors' folder.py with --class-ratio 0.1
    expected = sorted(random.sample(sorted(wnids), round(len(wnids) * 0.1)))
    sub = load("imagenet100", "test", root=tmp_path, download=False, image_size=16, load_size=20, per_class=2)
    assert sub.classes == expected and len(sub) == 4 and sub.info["source"].endswith("val")
    assert sub.labels.tolist() == [0, 0, 1, 1]
    with pytest.raises(FileNotFoundError):
        load("imagenet", "train", root=tmp_path / "nowhere", download=False)


def test_gaussian_blur_matches_torchvision():
    from torchvision.transforms.v2 import functional as TF

    from imix_teach.data.augment import gaussian_blur

    x = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    ours = gaussian_blur(x, torch.tensor([1.0, 1.0]))
    ref = TF.gaussian_blur(x, kernel_size=[7, 7], sigma=[1.0, 1.0])  # 3 sigma each side, reflect padding
    assert torch.allclose(ours, ref, atol=1e-5)
    assert torch.allclose(gaussian_blur(x, torch.tensor([0.1, 2.0]))[0], x[0], atol=1e-3)  # sigma 0.1: ~identity
