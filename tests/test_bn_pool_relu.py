"""The fused CPU batch norm -> max-pool -> ReLU (imix_teach._bn_pool_relu) computes PyTorch's layers.

Same values and gradients to float rounding (its statistics are summed in double: closer to a float64
reference than PyTorch's own float32 layers), the same window maximum on ties, the same running
statistics; and it steps aside wherever it does not apply, so the model still trains without a compiler.
"""
import copy
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from imix_teach import _bn_pool_relu
from imix_teach.models import MaxPool2d, SmallConvNet

needs_kernels = pytest.mark.skipif(_bn_pool_relu.library() is None, reason="no C compiler here: the fused path is off")


def _bn(channels: int, seed: int = 0) -> nn.BatchNorm2d:
    """A batch norm with weights of both signs (a negative one turns the window's max into its min)."""
    g = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(channels)
    bn.weight.data = torch.linspace(-1.5, 2.0, channels)[torch.randperm(channels, generator=g)]
    bn.bias.data = torch.randn(channels, generator=g)
    return bn


def _run(x: torch.Tensor, bn: nn.Module, fused: bool, grad: torch.Tensor | None = None):
    """(output, dx, dweight, dbias) of relu(maxpool(bn(x))), fused or PyTorch's layers, on a copy of x."""
    x = x.detach().clone().requires_grad_()
    if fused:
        assert _bn_pool_relu.usable([bn, MaxPool2d(2, ceil_mode=True), nn.ReLU()], x)
        out = _bn_pool_relu.BNPoolReLU.apply(x, bn.weight, bn.bias, bn)
    else:
        out = torch.relu(nn.functional.max_pool2d(bn(x), 2))
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(9)) if grad is None else grad
    out.backward(grad.to(out.dtype))
    return out.detach(), x.grad, bn.weight.grad, bn.bias.grad


@needs_kernels
@pytest.mark.parametrize("shape", [(16, 8, 8, 8), (5, 3, 6, 10), (2, 17, 2, 4)])
def test_values_and_gradients_are_pytorchs_closer_to_float64(shape):
    x = (torch.randn(shape, generator=torch.Generator().manual_seed(1)) * 3 + 1).contiguous(
        memory_format=torch.channels_last)
    bn = _bn(shape[1])
    fused = _run(x, copy.deepcopy(bn), True)
    plain = _run(x, copy.deepcopy(bn), False)
    exact = _run(x.double(), copy.deepcopy(bn).double(), False)
    assert fused[0].is_contiguous(memory_format=torch.channels_last)
    assert fused[1].is_contiguous(memory_format=torch.channels_last)
    for name, f, p, e in zip(("out", "dx", "dweight", "dbias"), fused, plain, exact):
        err_fused, err_plain = (f.double() - e).abs().max().item(), (p.double() - e).abs().max().item()
        assert err_fused <= 1e-5 * (1 + e.abs().max().item()), name
        assert err_fused <= max(2 * err_plain, 1e-6), name  # at least as close to float64 as PyTorch's float32


@needs_kernels
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_ties_send_the_gradient_to_the_first_maximum_as_pytorch_does(sign):
    """Small integers: most windows hold equal values (all four in flat regions), where the argmax rule matters."""
    g = torch.Generator().manual_seed(3)
    x = torch.randint(0, 3, (8, 4, 6, 6), generator=g).float().contiguous(memory_format=torch.channels_last)
    x[0] = 1.0  # one image flat everywhere: every window a four-way tie
    bn = _bn(4)
    bn.weight.data = sign * bn.weight.data.abs()
    fused, plain = _run(x, copy.deepcopy(bn), True), _run(x, copy.deepcopy(bn), False)
    for name, f, p in zip(("out", "dx", "dweight", "dbias"), fused, plain):
        torch.testing.assert_close(f, p, rtol=1e-5, atol=1e-5, msg=name)
    dx = fused[1][0]  # the flat image: the gradient differs from the rest only where a window routed one
    routed = dx != dx[:, 1:2, 1:2]
    assert routed[:, 0::2, 0::2].any() and not routed[:, 1::2, :].any() and not routed[:, :, 1::2].any()  # the first


@needs_kernels
def test_running_statistics_follow_pytorchs_update():
    x = torch.randn(6, 5, 4, 4, generator=torch.Generator().manual_seed(4)).contiguous(memory_format=torch.channels_last)
    ours, theirs = _bn(5), _bn(5)
    ours.momentum = theirs.momentum = 0.3
    for _ in range(2):
        _run(x * 2 + 1, ours, True)
        _run(x * 2 + 1, theirs, False)
    assert ours.num_batches_tracked.item() == theirs.num_batches_tracked.item() == 2
    torch.testing.assert_close(ours.running_mean, theirs.running_mean)
    torch.testing.assert_close(ours.running_var, theirs.running_var)


@needs_kernels
def test_a_nan_spreads_as_in_pytorch():
    x = torch.randn(4, 3, 4, 4).contiguous(memory_format=torch.channels_last)
    x[1, 2, 3, 0] = float("nan")
    fused, plain = _run(x, _bn(3), True), _run(x, _bn(3), False)
    assert torch.equal(fused[0].isnan(), plain[0].isnan()) and fused[0].isnan().any()


@needs_kernels
def test_threads_split_the_batch_without_changing_the_result(monkeypatch):
    x = torch.randn(7, 6, 8, 8, generator=torch.Generator().manual_seed(5)).contiguous(memory_format=torch.channels_last)
    monkeypatch.setattr(_bn_pool_relu, "PER_THREAD", 1)  # split even this small batch
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _run(x, _bn(6), True)
        torch.set_num_threads(3)  # 7 images in chunks of 2, 2, 3, run at once
        three = _run(x, _bn(6), True)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, three):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def _fused_sum_in(queue) -> None:
    x = torch.randn(4, 3, 4, 4).contiguous(memory_format=torch.channels_last)
    queue.put(_run(x, _bn(3), True)[0].sum().item())


@needs_kernels
def test_a_forked_child_runs_the_kernels_on_threads_of_its_own(monkeypatch):
    """A DataLoader worker is a fork: the parent's thread pool comes along without its threads."""
    import multiprocessing

    monkeypatch.setattr(_bn_pool_relu, "PER_THREAD", 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        x = torch.randn(4, 3, 4, 4).contiguous(memory_format=torch.channels_last)
        _run(x, _bn(3), True)  # the parent's pool exists now
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_fused_sum_in, args=(queue,))
        child.start()
        child.join(timeout=60)
        alive = child.is_alive()
        child.kill()
    finally:
        torch.set_num_threads(threads)
    assert not alive and child.exitcode == 0 and isinstance(queue.get(timeout=5), float)


@needs_kernels
def test_small_convnet_takes_the_fused_path_when_training_channels_last_on_a_cpu():
    net = SmallConvNet(3, 4)
    x = torch.randn(4, 3, 8, 8)

    def fused_nodes(model: nn.Module, inp: torch.Tensor) -> int:
        out, seen, todo = model(inp), 0, [model(inp).grad_fn]
        while todo:
            fn = todo.pop()
            seen += type(fn).__name__ == "BNPoolReLUBackward"
            todo += [f for f, _ in fn.next_functions if f is not None]
        return seen if out.requires_grad else 0

    cl = x.contiguous(memory_format=torch.channels_last)
    assert fused_nodes(net, cl) == 2  # the two pooled blocks; the last block has no pool
    assert fused_nodes(net, x) == 0  # NCHW: the regime grid's layout keeps PyTorch's layers, bit for bit
    assert fused_nodes(net, torch.randn(4, 3, 10, 10).contiguous(memory_format=torch.channels_last)) == 1  # 5x5: odd
    net[1].register_forward_hook(lambda *a: None)
    assert fused_nodes(net, cl) == 1  # a hook on a layer sees that layer run
    net[5].register_full_backward_hook(lambda *a: None)
    assert fused_nodes(net, cl) == 0  # a backward hook too
    net.eval()
    with torch.no_grad():
        assert not _bn_pool_relu.usable(list(net)[5:8], cl)


def _library_in_a_fresh_process(env: dict) -> subprocess.Popen:
    code = ("from imix_teach import _bn_pool_relu as k, models; import torch\n"
            "net = models.SmallConvNet(3, 4); x = torch.randn(4, 3, 8, 8).contiguous(memory_format=torch.channels_last)\n"
            "net(x).sum().backward()\n"  # trains either way
            "print(k.library() is not None)")
    return subprocess.Popen([sys.executable, "-c", code], env={**os.environ, **env}, stdout=subprocess.PIPE, text=True)


def test_without_a_compiler_or_opted_out_the_model_trains_on_pytorchs_layers(tmp_path):
    runs = [_library_in_a_fresh_process({"XDG_CACHE_HOME": str(tmp_path / "a"), "CC": "no-such-compiler"}),
            _library_in_a_fresh_process({"IMIX_FUSED_CPU": "0"})]
    assert [r.communicate()[0].strip() for r in runs] == ["False", "False"]
    assert [r.returncode for r in runs] == [0, 0]


@needs_kernels
def test_two_processes_building_the_library_at_once_both_get_it(tmp_path):
    """torchrun's ranks start together: each builds aside and renames, so neither loads a half-written file."""
    runs = [_library_in_a_fresh_process({"XDG_CACHE_HOME": str(tmp_path)}) for _ in range(2)]
    assert [r.communicate()[0].strip() for r in runs] == ["True", "True"]
    assert [p.suffix for p in (tmp_path / "imix_teach" / "kernels").iterdir()] == [".so"]  # no leftovers


@needs_kernels
def test_a_compiler_without_march_native_still_builds_it(tmp_path):
    """Some compilers (Apple's clang on arm64, older ones) refuse -march=native: the build retries without it."""
    cc = tmp_path / "picky-cc"
    cc.write_text('#!/bin/sh\nfor a in "$@"; do [ "$a" = "-march=native" ] && exit 1; done\nexec cc "$@"\n')
    cc.chmod(0o755)
    run = _library_in_a_fresh_process({"XDG_CACHE_HOME": str(tmp_path / "cache"), "CC": str(cc)})
    assert run.communicate()[0].strip() == "True" and run.returncode == 0


@needs_kernels
def test_a_library_built_for_one_cpu_is_not_loaded_on_another(tmp_path, monkeypatch):
    """-march=native code can crash on another CPU: a home folder shared by two machines keeps one build each."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    _bn_pool_relu._compile()
    monkeypatch.setattr(_bn_pool_relu, "_cpu", lambda: "flags : another processor")
    _bn_pool_relu._compile()
    assert len(list((tmp_path / "imix_teach" / "kernels").glob("*.so"))) == 2
