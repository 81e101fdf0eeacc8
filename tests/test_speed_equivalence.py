"""The CPU fast paths (imix_teach.accel) compute exactly what the plain model computes: same tensors, bit for bit.

The regime grid (notebooks 07 and 08 rerun its cells) promises that a one-thread rerun on the grid's
machine gives its numbers to the last digit, so a speed-up of its path (NCHW) must not move a single bit.
pretrain's default on a CPU is channels_last: the same sums in another order, checked to float tolerance.
"""
import contextlib
import copy

import pytest
import torch
from torch import nn

from imix_teach import accel
from imix_teach.accel import kernel
from imix_teach.accel.pools import LayoutKeepingAvgPool, NCHWMaxPool
from imix_teach.data.augment import ImageAugment, color_jitter, hue_shift
from imix_teach.methods import build_method
from imix_teach.models import SmallConvNet
from imix_teach.reproduce import regime
from imix_teach.train import StepOptions, pretrain, train_step
from imix_teach.train import Mixing, Optim, Runtime


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal bit for bit: -0.0 differs from 0.0 and a NaN equals the same NaN (torch.equal says otherwise)."""
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.view(torch.int32), b.view(torch.int32))


@pytest.mark.parametrize("shape, kernel, stride, ceil", [
    ((4, 3, 8, 8), 2, None, True), ((3, 5, 7, 9), 2, None, True), ((2, 4, 9, 7), 3, 2, False), ((2, 1, 6, 6), 2, 1, True),
])
def test_maxpool_matches_torch_bit_for_bit_with_ties(shape, kernel, stride, ceil):
    g = torch.Generator().manual_seed(0)
    # Small integers after a ReLU: most windows hold ties (zeros and equal values), where the argmax rule matters.
    x = torch.randint(-2, 3, shape, generator=g).float().relu()
    # and the cases where a max is not a plain comparison: signed zeros, infinities, NaN
    x.view(-1)[:6] = torch.tensor([-0.0, 0.0, float("-inf"), float("nan"), float("inf"), -0.0])
    x.requires_grad_()
    y = x.detach().clone().requires_grad_()
    plain = nn.MaxPool2d(kernel, stride, ceil_mode=ceil)
    fast = NCHWMaxPool.like(plain)
    out_fast, out_plain = fast(x), plain(y)
    assert out_fast.is_contiguous() and same_bits(out_fast, out_plain)
    grad = torch.randn(out_plain.shape, generator=g)
    grad.view(-1)[:2] = -0.0
    out_fast.backward(grad)
    out_plain.backward(grad)
    assert x.grad.is_contiguous() and same_bits(x.grad, y.grad)


def test_maxpool_fast_path_is_the_one_taken_on_cpu():
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    assert type(NCHWMaxPool(2)(x).grad_fn).__name__ == "_ChannelsLastMaxPoolBackward"


def test_the_small_convnet_is_stock_torch_layers_in_the_notebooks_order():
    """Three conv-BN-ReLU blocks, a max-pool after the first two, nn.Sequential's own forward; the
    state_dict names of the committed checkpoints (and the parameters in the order they were drawn)."""
    net = SmallConvNet(3, 8)
    assert type(net).forward is nn.Sequential.forward
    assert all(type(m).__module__.startswith("torch.nn.modules") for m in net)
    assert [type(m).__name__ for m in net] == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"] * 2 + [
        "Conv2d", "BatchNorm2d", "ReLU", "AdaptiveAvgPool2d", "Flatten"]
    bn = ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]
    assert list(net.state_dict()) == ["0.weight", *(f"1.{k}" for k in bn), "4.weight", *(f"5.{k}" for k in bn),
                                      "8.weight", *(f"9.{k}" for k in bn)]
    assert net(torch.randn(2, 3, 15, 15)).shape == (2, 32)  # odd sizes: the pools round up


def test_global_avg_pool_keeps_a_channels_last_gradient_with_the_same_values():
    x = torch.randn(3, 5, 4, 4).contiguous(memory_format=torch.channels_last).requires_grad_()
    grads = {}
    outs = {}
    for name, pool in (("fast", LayoutKeepingAvgPool()), ("plain", nn.AdaptiveAvgPool2d(1))):
        hidden = x * 1.0  # what reaches the pool in a network: an intermediate, whose gradient the engine passes on as is
        hidden.register_hook(lambda g, name=name: grads.__setitem__(name, g))
        outs[name] = pool(hidden)
        outs[name].backward(torch.ones(outs[name].shape))
    assert same_bits(outs["fast"], outs["plain"])
    assert grads["fast"].is_contiguous(memory_format=torch.channels_last)
    assert not grads["plain"].is_contiguous(memory_format=torch.channels_last)  # what the fast path avoids
    assert same_bits(grads["fast"].contiguous(), grads["plain"].contiguous())


@pytest.mark.parametrize("method, alpha, channels_last", [("npair", None, False), ("npair", 1.0, False),
                                                          ("moco", 1.0, False), ("npair", 1.0, True)])
def test_training_steps_are_bit_identical_on_the_speed_path(method, alpha, channels_last, monkeypatch):
    """Three train_steps (augmentation, i-Mix, backward, SGD, EMA) give the same weights inside
    accel.swapped as with the plain model, in NCHW (the fast max-pool) and in channels_last (the
    layout-keeping average pool; the fused blocks with the kernels off run their layers: the kernels
    themselves, to float tolerance, are test_accel.py's)."""
    monkeypatch.setattr(kernel, "_lib", None)
    torch.manual_seed(0)
    extra = dict(queue_size=64) if method == "moco" else {}
    plain = build_method(method, SmallConvNet(3, 8), proj_hidden=32, proj_dim=16, **extra)
    fast = copy.deepcopy(plain)
    if channels_last:
        fast.to(memory_format=torch.channels_last)
        plain.to(memory_format=torch.channels_last)
    aug = ImageAugment((16, 16), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    x = torch.randint(0, 256, (32, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    for model in (fast, plain):
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        gen = torch.Generator().manual_seed(2)
        options = StepOptions(Mixing(alpha=alpha), channels_last=channels_last)
        with accel.swapped(model, channels_last) if model is fast else contextlib.nullcontext():
            assert model is plain or any(type(m).__module__.startswith("imix_teach.accel") for m in model.modules())
            model.losses = [train_step(model, x, aug, opt, gen, options) for _ in range(3)]
    assert same_bits(torch.stack(fast.losses), torch.stack(plain.losses))
    for (name, a), b in zip(fast.state_dict().items(), plain.state_dict().values()):
        assert torch.equal(a, b) and (not a.is_floating_point() or same_bits(a.float(), b.float())), name


def _hue_cases() -> tuple[torch.Tensor, torch.Tensor]:
    """(8, 3, 9, 9) images in [0, 1] with grey, black, white and tied-max pixels; hue shifts of both signs."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(8, 3, 9, 9, generator=g)
    x[0] = x[0, :1]  # grey: every channel equal
    x[1, :, :2], x[1, :, 2:4] = 0.0, 1.0  # black and white rows
    x[2, 1] = x[2, 0]  # r == g everywhere: torchvision takes r as the max
    x[3, 2] = x[3, 1]  # g == b
    return x, torch.tensor([0.0, 0.1, -0.1, 0.5, -0.5, 0.05, 0.25, -0.02])


def test_hue_shift_is_torchvisions_adjust_hue():
    """Every hue sextant, grey/black/white pixels and ties: torchvision's adjust_hue to float rounding."""
    from torchvision.transforms.v2 import functional as TF

    x, shift = _hue_cases()
    ours = hue_shift(x, shift)
    ref = torch.stack([TF.adjust_hue(img, float(s)) for img, s in zip(x, shift)])
    assert (ours - ref).abs().max() < 3e-6
    assert same_bits(ours[0], x[0])  # grey pixels have no hue to shift: unchanged, bit for bit
    assert (hue_shift(x, torch.zeros(8)) - x).abs().max() < 3e-6


def test_color_jitter_is_torchvisions_chain_in_its_fixed_order():
    """brightness -> contrast -> saturation -> hue per sample, as torchvision's functional ops, to 3e-6."""
    from torchvision.transforms.v2 import functional as TF

    x, hue = _hue_cases()
    b, c, s = torch.tensor([0.6, 1.4, 1.0, 0.9, 1.2, 0.7, 1.1, 1.3]), torch.linspace(0.6, 1.4, 8), torch.linspace(1.4, 0.6, 8)
    ours = color_jitter(x, b, c, s, hue)
    ref = torch.stack([TF.adjust_hue(TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(
        img, float(bi)), float(ci)), float(si)), float(hi)) for img, bi, ci, si, hi in zip(x, b, c, s, hue)])
    assert (ours - ref).abs().max() < 3e-6


def _first_conv(method: nn.Module) -> torch.Tensor:
    return next(m.weight for m in method.modules() if isinstance(m, nn.Conv2d))


@pytest.mark.parametrize("channels_last, expect", [("auto", True), (False, False), (True, True)])
def test_pretrain_trains_image_batches_channels_last_on_a_cpu_by_default(channels_last, expect):
    torch.manual_seed(0)
    method = build_method("npair", SmallConvNet(3, width=8), proj_hidden=16, proj_dim=8)
    x = torch.rand(16, 3, 8, 8)
    pretrain(method, x, lambda v, g=None: v, optim=Optim(epochs=1, batch_size=8),
             runtime=Runtime(channels_last=channels_last, progress=False))
    assert _first_conv(method).is_contiguous(memory_format=torch.channels_last) == expect


@pytest.mark.parametrize("fused", [True, False])
def test_channels_last_computes_the_nchw_step_to_float_tolerance(fused, monkeypatch):
    """The default CPU layout changes only the order of sums: three steps agree with NCHW to ~1e-5,
    with the fused batch norm -> ReLU -> max-pool kernels (the speed path) and with PyTorch's layers."""
    if fused and kernel.library() is None:
        pytest.skip("no C compiler here: the fused kernels are off")
    monkeypatch.setattr(kernel, "_lib", kernel.library() if fused else None)
    torch.manual_seed(0)
    nchw = build_method("npair", SmallConvNet(3, width=8), proj_hidden=16, proj_dim=8)
    nhwc = copy.deepcopy(nchw).to(memory_format=torch.channels_last)
    aug = ImageAugment((16, 16), (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    x = torch.randint(0, 256, (32, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    for model, cl in ((nchw, False), (nhwc, True)):
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        gen = torch.Generator().manual_seed(2)
        with accel.swapped(model, cl):
            model.losses = torch.stack([train_step(model, x, aug, opt, gen,
                                                   StepOptions(Mixing(alpha=1.0), channels_last=cl))
                                        for _ in range(3)])
    torch.testing.assert_close(nhwc.losses, nchw.losses, rtol=1e-5, atol=1e-5)
    # three SGD steps (lr 0.1, momentum 0.9) carry the reordered sums on: at 2 threads PyTorch's own layers
    # left one conv weight 2.05e-5 apart on a Zen 4 (oneDNN reduces the weight gradient in another order)
    for (name, a), b in zip(nhwc.state_dict().items(), nchw.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=5e-5, msg=name)


def test_the_regime_grid_keeps_the_layout_it_ran_in(monkeypatch):
    """Its committed numbers were made in NCHW; pretrain's "auto" (channels_last on a CPU) would change them.
    Every run of the grid, and every run of a live cell (captured before it trains), says NCHW."""
    from imix_teach import engine
    from imix_teach.reproduce import runner

    assert all(r.config.runtime.channels_last is False for r in regime.grid().runs)
    seen = []

    def capture(run, *args, **kwargs):
        seen.append(run.config)
        raise KeyboardInterrupt  # stop before any training

    monkeypatch.setattr(engine, "load_data", lambda *args, **kwargs: None)  # no data needed to build the runs
    monkeypatch.setattr(runner, "execute", capture)
    with pytest.raises(KeyboardInterrupt):
        regime.live_cell("none", 8, 1, "npair", variants=("baseline",), seeds=[0], quick=True, say=lambda s: None)
    assert len(seen) == 1 and seen[0].runtime.channels_last is False and seen[0].runtime.threads == 1
