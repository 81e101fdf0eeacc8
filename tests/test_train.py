"""The pretraining loop: resume equals uninterrupted, non-finite loss stops safely, schedule shape."""
import math

import pytest
import torch

from imix_teach.methods import build_method
from imix_teach.models import TabularMLP
from imix_teach.train import NonFiniteLossError, lr_lambda, pretrain
from imix_teach.train import Mixing, Optim, Runtime
from helpers import pretrain_flat


def _noise(x, g):
    return x + 0.1 * torch.randn(x.shape, generator=g, device=x.device)


def _method(name="moco"):
    torch.manual_seed(0)
    kwargs = dict(queue_size=32, momentum=0.9) if name == "moco" else {}
    return build_method(name, TabularMLP(5, widths=(16, 16, 32)), proj_hidden=16, proj_dim=8, **kwargs)


DATA = torch.randn(64, 5, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", ["moco", "byol"])
def test_resume_ends_with_the_same_weights_as_an_uninterrupted_run(tmp_path, name):
    settings = dict(epochs=3, batch_size=16, alpha=1.0, progress=False, seed=3)
    straight = _method(name)
    h_straight = pretrain_flat(straight, DATA, _noise, checkpoint=tmp_path / "a.pt", **settings)

    def interrupt(epoch, history):
        if epoch == 0:
            raise KeyboardInterrupt

    interrupted = _method(name)
    with pytest.raises(KeyboardInterrupt):
        pretrain_flat(interrupted, DATA, _noise, checkpoint=tmp_path / "b.pt", callback=interrupt, **settings)
    resumed = _method(name)  # a fresh process would rebuild the model from scratch
    h_resumed = pretrain_flat(resumed, DATA, _noise, checkpoint=tmp_path / "b.pt", **settings)
    for (k, v1), v2 in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(v1, v2), k  # weights, EMA twin, queue and its pointer
    assert h_resumed.epoch_loss == h_straight.epoch_loss


def test_a_conv_net_on_the_default_cpu_path_resumes_bitwise(tmp_path):
    """SmallConvNet at 16 px trains channels_last inside the speed path (fused BN-ReLU-pool kernels where a C
    compiler is found); a run stopped after its first epoch and resumed ends bit for bit where one that ran
    straight through ends, BN running statistics and the MoCo queue included."""
    from imix_teach.accel import choose, fused, kernel
    from imix_teach.models import SmallConvNet

    images = torch.rand(48, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    settings = dict(epochs=3, batch_size=16, alpha=1.0, progress=False, seed=3)

    def conv_moco():
        torch.manual_seed(0)
        return build_method("moco", SmallConvNet(3, 8), proj_hidden=16, proj_dim=8, queue_size=32, momentum=0.9)

    layers = set()

    def look(epoch, history, model):
        layers.update(type(m) for m in model.modules())
        if epoch == 0 and model is interrupted:
            raise KeyboardInterrupt

    straight, interrupted, resumed = conv_moco(), conv_moco(), conv_moco()
    h_straight = pretrain_flat(straight, images, _noise, checkpoint=tmp_path / "a.pt",
                               callback=lambda e, h: look(e, h, straight), **settings)
    with pytest.raises(KeyboardInterrupt):
        pretrain_flat(interrupted, images, _noise, checkpoint=tmp_path / "b.pt",
                      callback=lambda e, h: look(e, h, interrupted), **settings)
    h_resumed = pretrain_flat(resumed, images, _noise, checkpoint=tmp_path / "b.pt", **settings)
    if choose(True, 16, torch.get_num_threads()) and kernel.library() is not None:
        assert fused.FusedBNReLUPool in layers, "the default CPU path did not train with the fused kernels"
    for (k, v1), v2 in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(v1, v2), k
    assert h_resumed.epoch_loss == h_straight.epoch_loss


def test_nonfinite_loss_stops_with_clear_error_and_keeps_last_good_checkpoint(tmp_path):
    calls = {"n": 0}

    def poisoned(x, g):
        calls["n"] += 1
        out = _noise(x, g)
        # Epoch 0 has 4 steps (8 augment calls); from epoch 1 on the inputs turn to NaN.
        return out * float("nan") if calls["n"] > 8 else out

    ckpt = tmp_path / "run.pt"
    with pytest.raises(NonFiniteLossError, match="last good checkpoint"):
        pretrain(_method("npair"), DATA, poisoned, optim=Optim(epochs=3, batch_size=16),
                 runtime=Runtime(progress=False, log_every=1), checkpoint=ckpt)
    state = torch.load(ckpt, weights_only=False)
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["method"].values() if v.is_floating_point())


def test_resume_with_different_settings_is_refused(tmp_path):
    ckpt = tmp_path / "run.pt"
    pretrain(_method("npair"), DATA, _noise, optim=Optim(epochs=1, batch_size=16), runtime=Runtime(progress=False),
             checkpoint=ckpt)
    with pytest.raises(ValueError, match="resume=False"):
        pretrain(_method("npair"), DATA, _noise, optim=Optim(epochs=1, batch_size=32),
                 runtime=Runtime(progress=False), checkpoint=ckpt)


def test_lr_schedule_warms_up_linearly_then_cosine_to_zero():
    f = lr_lambda(warmup_steps=4, total_steps=14)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(9) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert f(14) == pytest.approx(0.0)


def test_history_and_default_lr_follow_the_paper_scaling():
    h = pretrain(_method("npair"), DATA, _noise, optim=Optim(epochs=2, batch_size=32, warmup_epochs=0),
                 runtime=Runtime(progress=False, log_every=1))
    assert h.step == [1, 2, 3, 4] and len(h.epoch_loss) == 2
    assert h.lr[0] == pytest.approx(0.125 * 32 / 256 * lr_lambda(0, 4)(1))


def test_bad_training_arguments_are_named():
    with pytest.raises(ValueError, match="batch_size"):
        pretrain(_method("npair"), DATA, _noise, optim=Optim(epochs=1, batch_size=1000),
                 runtime=Runtime(progress=False))
    with pytest.raises(ValueError, match="alpha"):
        pretrain(_method("npair"), DATA, _noise, optim=Optim(epochs=1, batch_size=16), mixing=Mixing(alpha=0.0),
                 runtime=Runtime(progress=False))
    with pytest.raises(ValueError, match="amp"):
        pretrain(_method("npair"), DATA, _noise, optim=Optim(epochs=1, batch_size=16),
                 runtime=Runtime(amp="fp8", progress=False))


def test_gpu_paths_run_on_cpu_too():
    """bf16 autocast and channels_last are CUDA defaults; forcing them on CPU must still train."""
    # 3 channels: with one channel the NCHW and channels_last layouts are the same strides, indistinguishable
    images = torch.rand(32, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    from imix_teach.models import SmallConvNet

    for options in (dict(amp="bf16"), dict(channels_last=True), dict(amp=None, channels_last=False)):
        torch.manual_seed(0)
        method = build_method("byol", SmallConvNet(3, 8), proj_hidden=16, proj_dim=8)
        conv = next(m for m in method.encoder.modules() if isinstance(m, torch.nn.Conv2d))
        used = []  # what the first convolution was given and computed in: the option, if it took effect
        conv.register_forward_hook(lambda _, args, out: used.append(
            (args[0].is_contiguous(memory_format=torch.channels_last), out.dtype)))
        h = pretrain_flat(method, images, _noise, epochs=1, batch_size=16, alpha=1.0, progress=False, **options)
        assert all(math.isfinite(v) for v in h.loss)
        layouts, dtypes = {u[0] for u in used}, {u[1] for u in used}
        assert dtypes == {torch.bfloat16 if options.get("amp") == "bf16" else torch.float32}, (options, dtypes)
        if "channels_last" in options:
            assert layouts == {options["channels_last"]}, (options, layouts)


@pytest.mark.parametrize("bad, match", [
    (dict(inputs=DATA.tolist()), "inputs must be a torch.Tensor"),
    (dict(log_every=0), "log_every must be an integer >= 1"),
    (dict(warmup_epochs=-1), "warmup_epochs must be an integer >= 0"),
    (dict(epochs=0), "epochs must be an integer >= 1"),
    (dict(lr=float("nan")), "lr must be a finite number > 0"),
    (dict(labels=[0] * 64), "labels must be a tensor of shape"),
])
def test_wrong_types_and_values_name_the_argument(bad, match):
    kwargs = dict(inputs=DATA, epochs=1, batch_size=16, progress=False)
    kwargs.update(bad)
    with pytest.raises((TypeError, ValueError), match=match):
        pretrain_flat(_method("npair"), kwargs.pop("inputs"), _noise, **kwargs)


def test_train_step_is_one_sgd_step_with_the_schedule_and_ema():
    from imix_teach.train import StepOptions, train_step

    method = _method("moco")
    opt = torch.optim.SGD([p for p in method.parameters() if p.requires_grad], lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 ** s)
    before = [p.detach().clone() for p in method.key_encoder.parameters()]
    loss = train_step(method, DATA[:16], _noise, opt, torch.Generator().manual_seed(0), StepOptions(Mixing(alpha=1.0)),
                      scheduler=sched)
    assert loss.dim() == 0 and not loss.requires_grad
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)  # the scheduler stepped once
    assert int(method.queue_ptr) == 16  # the step's keys were enqueued
    assert any(not torch.equal(b, p) for b, p in zip(before, method.key_encoder.parameters()))  # EMA moved


def test_inputmix_from_both_views_draws_partners_across_the_two_views():
    from imix_teach.train import StepOptions, train_step

    seen = []

    class Spy(torch.nn.Module):
        views, name = 2, "spy"

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, v1, v2, alpha, **kwargs):
            seen.append((v1, v2))
            return self.w * 0

        def after_step(self):
            pass

    x = torch.arange(8.0).view(4, 2)
    first, second = (lambda v, g: v), (lambda v, g: v + 100)
    views = iter([first, second] * 2)
    spy = Spy()
    opt = torch.optim.SGD(spy.parameters(), lr=0.1)
    for mode in ("per_view", "both_views"):
        train_step(spy, x, lambda v, g: next(views)(v, g), opt, torch.Generator().manual_seed(0),
                   StepOptions(Mixing(inputmix=mode)))
    per_view, both = seen
    assert per_view[0].max() <= 7  # view 1 (values 0..7) only mixed with view-1 rows
    assert both[0].max() > 8  # some view-1 rows now hold weight from view 2 (values 100..107)
    with pytest.raises(ValueError, match="inputmix"):
        pretrain(_method("npair"), DATA, _noise, optim=Optim(epochs=1, batch_size=16), mixing=Mixing(inputmix="all"),
                 runtime=Runtime(progress=False))
