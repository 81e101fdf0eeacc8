"""Issue #21: nothing silently wrong. Every bad argument and bad tensor a careless student or a
script passes gets a TypeError/ValueError naming the argument, the value and what is allowed,
before anything trains; valid input nearby still works, and the training step itself stays free
of value checks (they would sync a GPU every step).
"""
from __future__ import annotations

import gzip
import math
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imix_teach import losses, mixing
from imix_teach.data import load
from imix_teach.data import tabular
from imix_teach.methods import BYOL, MoCo, NPair, SimCLR, SupervisedNPair, build_method
from imix_teach.models import TabularMLP, prediction_head, projection_head
from imix_teach.train import MAX_SEED, StepOptions, pretrain, train_step
from imix_teach.train import Mixing, Optim, Runtime
from helpers import pretrain_flat

FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SMALL = dict(proj_hidden=8, proj_dim=4)
EXTRA = {"npair": {}, "simclr": {}, "moco": dict(queue_size=8), "byol": dict(pred_hidden=8), "supnpair": {}}


def _encoder() -> TabularMLP:
    torch.manual_seed(0)
    return TabularMLP(3, widths=(8, 8, 16))


def _method(name: str = "npair", **kwargs):
    return build_method(name, _encoder(), **{**SMALL, **EXTRA[name], **kwargs})


def _named(errors, *needles, call):
    with pytest.raises(errors) as info:
        call()
    for needle in needles:
        assert needle in str(info.value), f"{needle!r} not in: {info.value}"


# ----------------------------------------------------------------------------- constructors
@pytest.mark.parametrize("cls, kwargs, needles", [
    (NPair, dict(tau=float("inf")), ("tau", "finite number > 0", "inf")),
    (NPair, dict(tau=float("nan")), ("tau", "nan")),
    (NPair, dict(tau=-0.1), ("tau", "-0.1")),
    (NPair, dict(tau="0.2"), ("tau", "must be a number", "'0.2'")),
    (NPair, dict(proj_dim=0), ("proj_dim", "integer >= 1", "0")),
    (NPair, dict(proj_dim=2.5), ("proj_dim", "integer >= 1", "2.5")),
    (NPair, dict(proj_hidden=-1), ("proj_hidden", "integer >= 1", "-1")),
    (NPair, dict(single_pass="no"), ("single_pass", "True or False", "'no'")),
    (SimCLR, dict(proj_bn="yes"), ("proj_bn", "True or False")),
    (BYOL, dict(pred_hidden=0), ("pred_hidden", "integer >= 1", "0")),
    (BYOL, dict(momentum=float("nan")), ("momentum", "[0, 1]", "nan")),
    (BYOL, dict(pred_bn=1), ("pred_bn", "True or False")),
    (MoCo, dict(queue_size=0), ("queue_size", "integer >= 1", "0")),
    (MoCo, dict(queue_size=2.5), ("queue_size", "integer >= 1", "2.5")),
    (MoCo, dict(queue_size=True), ("queue_size", "bool")),
    (MoCo, dict(momentum=1.5), ("momentum", "[0, 1]", "1.5")),
    (MoCo, dict(momentum="0.9"), ("momentum", "must be a number")),
    (MoCo, dict(shuffle_bn="off"), ("shuffle_bn", "True or False")),
    (SupervisedNPair, dict(tau=0), ("tau", "> 0")),
])
def test_method_constructors_name_impossible_settings(cls, kwargs, needles):
    _named((TypeError, ValueError), *needles, call=lambda: cls(_encoder(), **{**SMALL, **kwargs}))


def test_an_encoder_without_a_usable_out_dim_is_named():
    encoder = _encoder()
    encoder.out_dim = 0
    _named(ValueError, "encoder.out_dim", "0", call=lambda: NPair(encoder))


@pytest.mark.parametrize("call, needles", [
    (lambda: projection_head(0, 4, 4), ("in_dim", "integer >= 1", "0")),
    (lambda: projection_head(4, -1, 4), ("hidden_dim", "-1")),
    (lambda: projection_head(4, 4, 2.5), ("out_dim", "2.5")),
    (lambda: projection_head(4, 4, 4, out_bn="no"), ("out_bn", "True or False")),
    (lambda: prediction_head(0), ("dim", "0")),
    (lambda: prediction_head(8, hidden_dim=0), ("hidden_dim", "0")),
])
def test_heads_name_bad_sizes(call, needles):
    _named((TypeError, ValueError), *needles, call=call)


_sizes = st.one_of(st.integers(-3, 6), st.floats(-2, 6), st.sampled_from(["8", None, True, False, [8]]))


@FUZZ
@given(argument=st.sampled_from(["proj_hidden", "proj_dim", "pred_hidden", "queue_size"]), value=_sizes)
def test_property_size_arguments_build_iff_they_are_positive_ints(argument, value):
    name = {"pred_hidden": "byol", "queue_size": "moco"}.get(argument, "npair")
    valid = isinstance(value, int) and not isinstance(value, bool) and value >= 1
    if valid:
        method = _method(name, **{argument: value})
        loss = method(torch.randn(8, 3), torch.randn(8, 3), 1.0)
        assert math.isfinite(loss.item())
    else:
        _named((TypeError, ValueError), argument, call=lambda: _method(name, **{argument: value}))


@FUZZ
@given(tau=st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(["0.2", None, True])))
def test_property_tau_builds_iff_it_is_a_finite_positive_number(tau):
    valid = isinstance(tau, float) and 0 < tau < math.inf
    if valid:
        assert NPair(_encoder(), tau=tau, **SMALL).tau == tau
    else:
        _named((TypeError, ValueError), "tau", call=lambda: NPair(_encoder(), tau=tau, **SMALL))


# ----------------------------------------------------------------------------- inputs
@pytest.mark.parametrize("name", ["npair", "simclr", "moco", "byol"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_views_of_another_float_dtype_are_cast_to_the_model_dtype(name, dtype):
    method = _method(name).eval()  # eval: MoCo does not enqueue, so both calls see the same queue
    x, y = torch.randn(8, 3).to(dtype), torch.randn(8, 3).to(dtype)
    for alpha in (None, 1.0):
        cast = method(x.float(), y.float(), alpha, generator=torch.Generator().manual_seed(1))
        given_dtype = method(x, y, alpha, generator=torch.Generator().manual_seed(1))
        assert given_dtype.dtype == torch.float32 and given_dtype.item() == cast.item()


def test_pretrain_trains_on_a_float64_batch():
    history = pretrain(_method(), torch.randn(16, 3, dtype=torch.float64), lambda x, g: x,
                       optim=Optim(epochs=1, batch_size=8), runtime=Runtime(progress=False))
    assert all(math.isfinite(v) for v in history.loss)


@pytest.mark.parametrize("name", ["npair", "simclr", "moco", "byol"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_method_forward_names_the_view_with_nan_or_inf(name, bad):
    method = _method(name)
    x = torch.randn(8, 3)
    poisoned = x.clone()
    poisoned[3, 1] = bad
    for alpha in (None, 1.0):
        _named(ValueError, "view1", "NaN or inf", "(3, 1)", call=lambda: method(poisoned, x, alpha))
        _named(ValueError, "view2", call=lambda: method(x, poisoned, alpha))


def test_integer_views_are_refused_with_the_dtype():
    _named(TypeError, "view1", "floating-point", "int64", call=lambda: _method()(torch.ones(8, 3, dtype=torch.long),
                                                                              torch.ones(8, 3, dtype=torch.long)))


@FUZZ
@given(n=st.integers(2, 8), d=st.integers(1, 5), where=st.integers(0, 10_000),
       bad=st.sampled_from([float("nan"), float("inf"), -float("inf")]))
def test_property_mixing_entry_points_name_any_nonfinite_entry(n, d, where, bad):
    x = torch.randn(n, d)
    poisoned = x.clone().view(-1)
    poisoned[where % poisoned.numel()] = bad
    poisoned = poisoned.view(n, d)
    _named(ValueError, "x", "NaN or inf", call=lambda: mixing.inputmix(poisoned))
    _named(ValueError, "x", "NaN or inf", call=lambda: mixing.imix(poisoned, 1.0))
    _named(ValueError, "view1", call=lambda: mixing.inputmix_pair(poisoned, x))
    _named(ValueError, "view2", call=lambda: mixing.inputmix_pair(x, poisoned))
    image = poisoned.view(n, 1, 1, d)
    _named(ValueError, "x", call=lambda: mixing.cutmix(image, 0.5, torch.randperm(n)))
    assert mixing.inputmix(x).shape == (n, d) and mixing.imix(x, 1.0).inputs.shape == (n, d)


def test_inputmix_refuses_integer_batches():
    _named(TypeError, "x", "floating-point", call=lambda: mixing.inputmix(torch.arange(4)))


def test_the_training_step_asks_for_no_value_checks():
    """train_step must not sync the device per step: the method and InputMix are called with check=False."""
    seen = {}

    class Spy(torch.nn.Module):
        views = 2

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, v1, v2, alpha, **kwargs):
            seen.update(kwargs)
            return self.w * 0

        def after_step(self):
            pass

    spy = Spy()
    train_step(spy, torch.randn(4, 2), lambda x, g: x, torch.optim.SGD(spy.parameters(), lr=0.1),
               torch.Generator().manual_seed(0), StepOptions(Mixing(inputmix=True)))
    assert seen["check"] is False
    method = _method()  # and a real method trains through it with checks off
    loss = train_step(method, torch.randn(8, 3), lambda x, g: x, torch.optim.SGD(method.parameters(), lr=0.1),
                      torch.Generator().manual_seed(0), StepOptions(Mixing(alpha=1.0, inputmix="both_views")))
    assert math.isfinite(loss.item())


@pytest.mark.parametrize("name", ["npair", "simclr", "moco", "byol", "supnpair"])
def test_the_training_step_reads_no_tensor_value_on_the_host(name, monkeypatch):
    """On a GPU each host read (bool(t), t.item(), float(t)) is a sync: a step with i-Mix and InputMix makes none.

    lam is drawn outside the step's checks (torch's Beta sampler validates its own parameters on the host),
    so it is fixed here; everything else runs as in training.
    """
    method, x, labels = _method(name), torch.randn(8, 3), torch.randint(0, 3, (8,))
    opt = torch.optim.SGD(method.parameters(), lr=0.1, momentum=0.9)
    monkeypatch.setattr(mixing, "sample_lambda", lambda alpha, n=None, **kw: torch.full(() if n is None else (n,), 0.3))

    def host_read(*args, **kwargs):
        raise AssertionError("the training step read a tensor value on the host")

    for attr in ("__bool__", "item", "tolist", "__float__", "__int__"):
        monkeypatch.setattr(torch.Tensor, attr, host_read)
    for options in (StepOptions(), StepOptions(Mixing(alpha=1.0, inputmix=True)),
                    StepOptions(Mixing(alpha=1.0, inputmix="both_views", per_sample=True, max_lam=True))):
        train_step(method, x, lambda v, g: v, opt, torch.Generator().manual_seed(0), options, labels=labels)
    monkeypatch.undo()
    assert all(bool(torch.isfinite(p).all()) for p in method.parameters())


# ----------------------------------------------------------------------------- tau
def _orthogonal_pair(n: int, dtype: torch.dtype):
    """Anchors e_i; the positive of anchor i is orthogonal to it, while another candidate equals it."""
    anchors = torch.eye(n, dtype=dtype)
    return anchors, anchors.roll(1, dims=0)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_a_tiny_tau_gives_the_closed_form_loss_in_every_dtype(dtype):
    # anchor i: logit 1/tau at one wrong candidate, 0 at its positive and the rest:
    # loss = log(exp(1/tau) + n - 1) = 1/tau (to float32 precision for tau = 1e-8).
    n, tau = 4, 1e-8
    a, p = _orthogonal_pair(n, dtype)
    assert losses.npair_loss(a, p, tau=tau).item() == pytest.approx(1 / tau, rel=1e-6)
    simclr = losses.simclr_loss(torch.cat([a, p]), torch.cat([a, p]), tau=tau).item()
    assert math.isfinite(simclr) and simclr == pytest.approx(1 / tau, rel=1e-6)


def test_tau_at_the_float32_limit_is_finite_and_below_it_is_named():
    n = 4
    a, p = _orthogonal_pair(n, torch.float32)
    limit = 4 * n / torch.finfo(torch.float32).max
    assert losses.npair_loss(a, p, tau=2 * limit).item() == pytest.approx(1 / (2 * limit), rel=1e-5)
    for tau in (limit / 2, 1e-40, 1e-45):
        _named(ValueError, "tau must be >=", "float32", repr(tau), call=lambda: losses.npair_loss(a, p, tau=tau))
        _named(ValueError, "tau", call=lambda: losses.moco_loss(a, p, torch.randn(3, n), tau=tau))
        _named(ValueError, "tau", call=lambda: losses.simclr_loss(torch.cat([a, p]), torch.cat([a, p]), tau=tau))
    assert math.isfinite(losses.npair_loss(a.double(), p.double(), tau=1e-45).item())  # float64 holds it


def test_a_method_with_a_tau_too_small_for_its_logits_stops_at_its_first_step():
    method = NPair(_encoder(), tau=1e-45, **SMALL)  # a finite tau > 0: fine until it meets float32 logits
    before = [p.clone() for p in method.parameters()]
    with pytest.raises(ValueError, match="tau"):
        train_step(method, torch.randn(8, 3), lambda x, g: x, torch.optim.SGD(method.parameters(), lr=0.1),
                   torch.Generator().manual_seed(0))
    assert all(torch.equal(b, p) for b, p in zip(before, method.parameters()))  # nothing trained, nothing lost


@FUZZ
@given(log_tau=st.floats(-330, 1), dtype=st.sampled_from([torch.float16, torch.bfloat16, torch.float32, torch.float64]),
       seed=st.integers(0, 2**16))
def test_property_any_positive_tau_gives_a_finite_loss_or_names_tau(log_tau, dtype, seed):
    tau = 10.0 ** log_tau
    if tau == 0.0:
        return
    g = torch.Generator().manual_seed(seed)
    a, p = torch.randn(6, 4, generator=g).to(dtype), torch.randn(6, 4, generator=g).to(dtype)
    try:
        value = losses.npair_loss(a, p, tau=tau).item()
    except ValueError as err:
        assert "tau" in str(err)
        return
    assert math.isfinite(value) and value >= 0


# ----------------------------------------------------------------------------- labels
@pytest.mark.parametrize("labels, error, needles", [
    (torch.tensor([0.0, 1.0, float("nan"), 1.0]), TypeError, ("labels", "(N,)", "integer", "float32")),
    (torch.tensor([0.0, 1.0, 0.0, 1.0]), TypeError, ("labels", "integer", ".long()")),
    (torch.zeros(4, 2, dtype=torch.long), ValueError, ("labels", "(N,)", "(4, 2)")),
    (torch.tensor([True, False]), TypeError, ("labels", "torch.bool")),
    ([0, 1, 0, 1], TypeError, ("labels", "list", "torch.as_tensor")),
])
def test_supervised_targets_say_what_shape_and_dtype_labels_need(labels, error, needles):
    _named(error, *needles, call=lambda: losses.supervised_targets(labels))


def test_supervised_targets_name_bad_candidate_labels_and_still_work():
    labels = torch.tensor([0, 1, 0, 2])
    _named(ValueError, "candidate_labels", call=lambda: losses.supervised_targets(labels, torch.zeros(2, 2).long()))
    _named(TypeError, "candidate_labels", call=lambda: losses.supervised_targets(labels, labels.float()))
    t = losses.supervised_targets(labels, torch.cat([labels, labels]))
    assert t.shape == (4, 8) and torch.allclose(t.sum(1), torch.ones(4))


@pytest.mark.parametrize("labels, error, needles", [
    (torch.tensor([0, 1, 0]), ValueError, ("labels", "(8,)", "(3,)")),
    (torch.zeros(8), TypeError, ("labels", "(8,)", "float32")),
    (torch.zeros(8, 1, dtype=torch.long), ValueError, ("labels", "(8,)", "(8, 1)")),
    (None, ValueError, ("labels", "(8,)", "integer class ids")),
])
def test_supervised_npair_says_what_labels_it_needs(labels, error, needles):
    method = _method("supnpair")
    x = torch.randn(8, 3)
    _named(error, *needles, call=lambda: method(x, x, labels=labels))


# ----------------------------------------------------------------------------- pretrain
def _pretrain(**overrides):
    args = dict(method=_method(), inputs=torch.randn(16, 3), augment=lambda x, g: x, epochs=1, batch_size=8,
                progress=False) | overrides
    return pretrain_flat(args.pop("method"), args.pop("inputs"), args.pop("augment"), **args)


@pytest.mark.parametrize("bad, error, needles", [
    (dict(seed=2**70), ValueError, ("seed", f"[0, {MAX_SEED}]", str(2**70))),
    (dict(seed=-1), ValueError, ("seed", "-1")),
    (dict(seed=1.5), TypeError, ("seed", "1.5")),
    (dict(inputs=torch.tensor(1.0)), ValueError, ("inputs", "(N, ...)", "shape ()")),
    (dict(inputs=torch.zeros(0, 3)), ValueError, ("inputs", "(0, 3)")),
    (dict(inputs=torch.full((16, 3), float("nan"))), ValueError, ("inputs", "NaN or inf", "before pretraining")),
    (dict(momentum=float("nan")), ValueError, ("momentum", "[0, 1)", "nan")),
    (dict(momentum=1.0), ValueError, ("momentum", "[0, 1)")),
    (dict(weight_decay=-1e-4), ValueError, ("weight_decay", "[0, inf)")),
    (dict(weight_decay=float("inf")), ValueError, ("weight_decay", "inf")),
    (dict(epochs=1.5), TypeError, ("epochs", "integer >= 1", "1.5")),
    (dict(labels=torch.zeros(16)), TypeError, ("labels", "(16,)", "float32")),
    (dict(labels=torch.zeros(15, dtype=torch.long)), ValueError, ("labels", "(16,)", "(15,)")),
])
def test_pretrain_names_bad_arguments_before_anything_trains(bad, error, needles, tmp_path):
    method = _method()
    before = {k: v.clone() for k, v in method.state_dict().items()}
    ckpt = tmp_path / "run.pt"
    ckpt.write_bytes(b"a checkpoint from an earlier run")
    _named(error, *needles, call=lambda: _pretrain(method=method, checkpoint=ckpt, **bad))
    assert all(torch.equal(before[k], v) for k, v in method.state_dict().items())
    assert ckpt.read_bytes() == b"a checkpoint from an earlier run"  # nothing a user trained is lost


def test_pretrain_of_a_supervised_method_without_labels_is_named():
    _named(ValueError, "labels must be given", "supnpair", call=lambda: _pretrain(method=_method("supnpair")))


@FUZZ
@given(seed=st.one_of(st.integers(-2**70, 2**70), st.floats(-10, 10), st.sampled_from(["0", None, True])))
def test_property_pretrain_takes_any_seed_in_range_and_names_the_rest(seed):
    valid = isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed <= MAX_SEED
    if valid:
        assert len(_pretrain(seed=seed).loss) == 1
    else:
        _named((TypeError, ValueError), "seed", call=lambda: _pretrain(seed=seed))


def test_the_largest_seed_still_trains_with_many_epochs():
    assert len(_pretrain(seed=MAX_SEED, epochs=3).epoch_loss) == 3


# ----------------------------------------------------------------------------- data
def _covtype_file(root: Path) -> Path:
    path = root / "covtype" / "covtype.data.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress(b"".join(
        b",".join([b"1"] * 54 + [str(i % 7 + 1).encode()]) + b"\n" for i in range(16_000)), mtime=0))
    return path


def test_a_hand_placed_file_is_recorded_at_first_load_and_a_later_change_refused(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    path = _covtype_file(tmp_path / "data")
    good = path.read_bytes()
    with pytest.warns(UserWarning, match="not a copy this library knows.*recorded in"):
        first = load("covtype", root=tmp_path / "data", download=False, per_class=5)
    assert sorted(p.name for p in path.parent.iterdir()) == ["covtype.data.gz"]  # nothing written beside the data
    records = list((cache / "imix_teach" / "checksums").iterdir())
    assert len(records) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second load knows it: no warning
        assert len(load("covtype", root=tmp_path / "data", download=False, per_class=5)) == len(first)
    path.write_bytes(gzip.compress(gzip.decompress(good).replace(b"1,1,", b"9,9,", 1), mtime=0))
    with pytest.raises(ValueError) as err:
        load("covtype", root=tmp_path / "data", download=False, per_class=5)
    for needle in (str(path), "sha256 is not the expected", str(records[0]), "delete", "download=True"):
        assert needle in str(err.value)
    path.write_bytes(good)  # the recorded file again: loads
    assert len(load("covtype", root=tmp_path / "data", download=False, per_class=5)) == len(first)


def test_a_file_that_is_a_known_copy_needs_no_record(tmp_path, monkeypatch):
    from imix_teach.data.digests import digest

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = _covtype_file(tmp_path / "data")
    monkeypatch.setitem(tabular.COVTYPE_COPIES, digest(path), "a copy this test publishes")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load("covtype", root=tmp_path / "data", download=False, per_class=5)
    assert not (tmp_path / "cache").exists()


def test_an_unrecordable_first_load_still_loads_and_says_a_change_will_go_unnoticed(tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    _covtype_file(tmp_path / "data")
    with pytest.warns(UserWarning, match="could not be recorded"):
        assert len(load("covtype", root=tmp_path / "data", download=False, per_class=5)) > 0


def test_a_download_that_is_not_the_published_file_is_refused(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv

    def download(url, root, filename, md5=None):
        Path(root, filename).write_bytes(gzip.compress(b"1," * 54 + b"1\n" * 20_000))

    monkeypatch.setattr(tv, "download_url", download)
    _named(FileNotFoundError, "downloading it failed", "sha256 is not the expected", tabular.COVTYPE_SHA256,
           call=lambda: load("covtype", root=tmp_path, download=True))
    assert list((tmp_path / "covtype").iterdir()) == []  # no partial or unverified file left behind


@pytest.mark.skipif(not SHARED.is_dir(), reason="offline data not found")
def test_the_offline_parts_are_known_copies_and_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    before = {p: p.stat().st_mtime_ns for p in (SHARED / "covtype").iterdir()} | {
        p: p.stat().st_mtime_ns for p in (SHARED / "higgs").iterdir()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load("covtype", "val", root=SHARED, download=False)) == 3_780
        assert len(load("higgs", "test", root=SHARED, download=False)) == 2_197
    after = {p: p.stat().st_mtime_ns for p in (SHARED / "covtype").iterdir()} | {
        p: p.stat().st_mtime_ns for p in (SHARED / "higgs").iterdir()}
    assert before == after and not (tmp_path / "cache").exists()
