"""imix_teach.course (setup banners, data with a fallback, the shared protocol), the playground and the
widgets' static pictures: everything a notebook relies on to run with no data and no internet."""
import pytest
import torch

from imix_teach import course
from imix_teach.course import cifar_protocol, digits_table, load_or_fallback, setup


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    """An empty data root and no downloads: what a student without files or internet has."""
    monkeypatch.setenv("IMIX_DATA", str(tmp_path))
    monkeypatch.setenv("IMIX_OFFLINE", "1")
    return tmp_path


def test_fallback_prints_banner_and_the_loaders_reason(no_data, capsys):
    train, test = load_or_fallback("cifar10", ("train", "test"), per_class=5, image_size=16)
    out = capsys.readouterr().out
    assert (train.name, train.split, test.split) == ("digits", "train", "test")
    assert "FALLBACK DATA: cifar10" in out and "IMIX_OFFLINE is set" in out
    assert "not found at" in out and "download=True" in out  # the loader's own reason and fix, not swallowed


def test_fallback_none_skips_and_tables_get_a_table(no_data, capsys):
    assert load_or_fallback("fsdd", ("train", "test"), fallback=None) is None
    assert "skip it" in capsys.readouterr().out
    val = load_or_fallback("covtype", "val", fallback="digits-table")
    assert (val.name, val.domain, val.split, val.input_shape) == ("digits-table", "tabular", "test", (64,))


def test_present_data_loads_silently(capsys):
    data = load_or_fallback("digits", "test")
    assert data.name == "digits" and capsys.readouterr().out == ""


def test_big_downloads_are_refused_with_the_size(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IMIX_DATA", str(tmp_path))
    monkeypatch.delenv("IMIX_OFFLINE", raising=False)
    data = load_or_fallback("higgs", "train", fallback="digits-table")  # 2.6 GB: never fetched for a CPU run
    out = capsys.readouterr().out
    assert data.name == "digits-table" and "2600 MB" in out and "Downloading" not in out


def test_digits_table_is_standardised_and_augmented():
    train = digits_table("train")
    assert train.inputs.shape == (1297, 64) and abs(float(train.inputs.mean())) < 1e-4
    view = train.augment(train.inputs[:50], torch.Generator().manual_seed(0))
    assert view.shape == (50, 64) and 0 < float((view == 0).float().mean()) < 0.6  # masking noise


def test_setup_banners(monkeypatch, capsys):
    monkeypatch.setenv("IMIX_QUICK", "1")
    monkeypatch.delenv("IMIX_DATA", raising=False)
    monkeypatch.setenv("IMIX_OFFLINE", "1")
    setup()
    out = capsys.readouterr().out
    assert "QUICK MODE" in out and "downloads off (IMIX_OFFLINE)" in out and "downloads on first use" not in out
    monkeypatch.setenv("IMIX_QUICK", "0")
    setup()
    assert "QUICK MODE" not in capsys.readouterr().out


def test_cifar_protocol(monkeypatch):
    monkeypatch.setenv("IMIX_QUICK", "0")
    cpu = cifar_protocol("moco")
    data = cpu.config.data
    assert (data.train_options["per_class"], data.test_options["per_class"], data.train_options["image_size"]) == (
        100, 200, 16)
    assert (cpu.epochs, cpu.seeds, cpu.alpha, cpu.tau, cpu.batch_size) == (100, [0, 1, 2], 1.0, 0.2, 128)
    assert cpu.config.encoder.kind == "small" and cpu.config.method.scale == "cpu" and not cpu.config.method.options
    assert cifar_protocol("moco", epochs=30).epochs == 30 and cifar_protocol("moco", seeds=[4]).seeds == [4]
    paper = cifar_protocol("moco", paper_scale=True, epochs=30)  # cpu changes never touch the paper's setting
    assert (paper.epochs, paper.batch_size, paper.config.data.train_options["image_size"]) == (1000, 256, 32)
    assert (paper.config.encoder.kind, paper.config.encoder.size, paper.config.method.scale) == ("resnet", 18, "paper")
    assert paper.config.method.options == dict(queue_size=4096, momentum=0.999)
    assert cifar_protocol("byol", paper_scale=True).config.method.options["momentum"] == 0.999
    assert "queue_size" not in cifar_protocol("npair", paper_scale=True).config.method.options


def test_download_sizes_cover_every_dataset_with_files():
    from imix_teach.data import DATASETS

    assert set(course.DOWNLOAD_MB) == set(DATASETS) - {"digits"}


# ----------------------------------------------------------------------------- playground and widgets
def test_playground_trains_in_seconds_and_scores():
    from imix_teach.course.playground import toy_data, train_toy

    x, y = toy_data(per_class=4, classes=5)
    assert x.shape == (20, 2) and torch.bincount(y).tolist() == [4] * 5
    run = train_toy(alpha=1.0, per_class=4, steps=20)
    assert 0.0 <= run.knn <= 1.0 and run.train_angle.shape == (20,) and len(run.history.loss) > 0
    with pytest.raises(ValueError, match="per_class"):
        toy_data(per_class=0)


def test_widgets_carry_a_picture_of_their_default_state():
    pytest.importorskip("ipywidgets")
    from imix_teach.course.widgets import byol_widget, queue_widget

    for widget in (queue_widget(), byol_widget()):
        bundle = widget._repr_mimebundle_()
        assert "application/vnd.jupyter.widget-view+json" in bundle and len(bundle["image/png"]) > 1000


def test_imix_plot_readout_matches_the_library():
    import matplotlib

    matplotlib.use("Agg")
    from imix_teach.losses import npair_loss
    from imix_teach.mixing import mix_targets, mixup
    from imix_teach.course.widgets import _readout, imix_plot, queue_plot

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    perm = torch.tensor([1, 0, 3, 2, 5, 4])
    sims, loss = _readout(lambda z: z, (a, b), 0.3, perm, 0.5)
    expected = npair_loss(mixup(a, 0.3, perm), b, mix_targets(torch.eye(6), 0.3, perm), tau=0.5)
    assert loss == pytest.approx(float(expected), abs=1e-6) and sims.shape == (6, 6)
    fig = imix_plot(torch.rand(6, 1, 4, 4), 0.3, perm=perm, embed=lambda z: z.flatten(1), views=(a[:, :, None, None], b[:, :, None, None]))
    assert "loss" in fig.axes[-2].get_title()
    with pytest.raises(ValueError, match="momentum"):
        queue_plot(momentum=1.0)
