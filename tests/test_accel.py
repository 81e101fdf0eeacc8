"""The CPU speed path (imix_teach.accel): the fused batch norm -> ReLU -> max-pool computes PyTorch's layers.

Same values and gradients to float rounding (its statistics are summed in double: closer to a float64
reference than PyTorch's own float32 layers), the same window maximum on ties, NaN where PyTorch has
NaN, the same running statistics; a sound custom op (opcheck, fake kernel, no silent double backward);
a library built and loaded only from the user's cache; and the network's own layers back in place after.
"""
import copy
import os
import re
import subprocess
import sys

import pytest
import torch
from torch import nn

from imix_teach import accel
from imix_teach.accel import fused, kernel
from imix_teach.models import SmallConvNet

needs_kernels = pytest.mark.skipif(kernel.library() is None, reason="no C compiler here: the fused path is off")
CL = torch.channels_last


def _bn(channels: int, seed: int = 0) -> nn.BatchNorm2d:
    """A batch norm with weights of both signs (a negative one turns the window's max into its min)."""
    g = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(channels)
    bn.weight.data = torch.linspace(-1.5, 2.0, channels)[torch.randperm(channels, generator=g)]
    bn.bias.data = torch.randn(channels, generator=g)
    return bn


def _run(x: torch.Tensor, bn: nn.Module, fast: bool, grad: torch.Tensor | None = None):
    """(output, dx, dweight, dbias) of maxpool(relu(bn(x))), fused or PyTorch's layers, on a copy of x."""
    x = x.detach().clone().requires_grad_()
    layers = (bn, nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True))
    out = fused.FusedBNReLUPool(*layers)(x) if fast else layers[2](layers[1](bn(x)))
    assert ("imix_teach_bn_relu_pool" in type(out.grad_fn).__name__) == (fast and x.dtype == torch.float32)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(9)) if grad is None else grad
    out.backward(grad.to(out.dtype))
    return out.detach(), x.grad, bn.weight.grad, bn.bias.grad


def _images(shape, seed: int = 1) -> torch.Tensor:
    return (torch.randn(shape, generator=torch.Generator().manual_seed(seed)) * 3 + 1).contiguous(memory_format=CL)


@needs_kernels
@pytest.mark.parametrize("shape", [(16, 8, 8, 8), (5, 3, 6, 10), (2, 17, 2, 4)])
def test_values_and_gradients_are_pytorchs_closer_to_float64(shape):
    x, bn = _images(shape), _bn(shape[1])
    fast = _run(x, copy.deepcopy(bn), True)
    plain = _run(x, copy.deepcopy(bn), False)
    exact = _run(x.double(), copy.deepcopy(bn).double(), False)
    assert fast[0].is_contiguous(memory_format=CL) and fast[1].is_contiguous(memory_format=CL)
    for name, f, p, e in zip(("out", "dx", "dweight", "dbias"), fast, plain, exact):
        err_fast, err_plain = (f.double() - e).abs().max().item(), (p.double() - e).abs().max().item()
        assert err_fast <= 1e-5 * (1 + e.abs().max().item()), name
        assert err_fast <= max(2 * err_plain, 1e-6), name  # at least as close to float64 as PyTorch's float32


@needs_kernels
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_ties_send_the_gradient_to_the_first_maximum_as_pytorch_does(sign):
    """Small integers: most windows hold equal values (all four in flat regions), where the argmax rule matters."""
    x = torch.randint(0, 3, (8, 4, 6, 6), generator=torch.Generator().manual_seed(3)).float().contiguous(memory_format=CL)
    x[0] = 1.0  # one image flat everywhere: every window a four-way tie
    bn = _bn(4)
    bn.weight.data = sign * bn.weight.data.abs()
    fast, plain = _run(x, copy.deepcopy(bn), True), _run(x, copy.deepcopy(bn), False)
    for name, f, p in zip(("out", "dx", "dweight", "dbias"), fast, plain):
        torch.testing.assert_close(f, p, rtol=1e-5, atol=1e-5, msg=name)
    dx = fast[1][0]  # the flat image: the gradient differs from the rest only where a window routed one
    routed = dx != dx[:, 1:2, 1:2]
    assert routed[:, 0::2, 0::2].any() and not routed[:, 1::2, :].any() and not routed[:, :, 1::2].any()  # the first


@needs_kernels
def test_running_statistics_follow_pytorchs_update():
    x = _images((6, 5, 4, 4), seed=4)
    ours, theirs = _bn(5), _bn(5)
    ours.momentum = theirs.momentum = 0.3
    for _ in range(2):
        _run(x, ours, True)
        _run(x, theirs, False)
    assert ours.num_batches_tracked.item() == theirs.num_batches_tracked.item() == 2
    torch.testing.assert_close(ours.running_mean, theirs.running_mean)
    torch.testing.assert_close(ours.running_var, theirs.running_var)


@needs_kernels
@pytest.mark.parametrize("where", ["input", "gradient"])
def test_a_nan_spreads_forward_and_backward_as_in_pytorch(where):
    """A NaN pixel: NaN in the same outputs, input gradients and weight gradients; the rest equal."""
    x, grad = _images((4, 3, 4, 4)), torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(9))
    if where == "input":
        x[1, 2, 3, 0] = float("nan")
    else:  # where the output is > 0: there the ReLU passes the gradient on
        grad[tuple(torch.nonzero(_run(x, _bn(3), False)[0] > 0)[0])] = float("nan")
    fast, plain = _run(x, _bn(3), True, grad), _run(x, _bn(3), False, grad)
    for name, f, p in zip(("out", "dx", "dweight", "dbias"), fast, plain):
        assert torch.equal(f.isnan(), p.isnan()), name
        torch.testing.assert_close(f.nan_to_num(), p.nan_to_num(), rtol=1e-5, atol=1e-5, msg=name)
    assert fast[1].isnan().any() and fast[2].isnan().any()


@needs_kernels
def test_threads_split_the_batch_without_changing_the_result(monkeypatch):
    x = _images((7, 6, 8, 8), seed=5)
    monkeypatch.setattr(kernel, "PER_THREAD", 1)  # split even this small batch
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
    queue.put(_run(_images((4, 3, 4, 4)), _bn(3), True)[0].sum().item())


@needs_kernels
def test_a_forked_child_runs_the_kernels_in_one_thread(monkeypatch):
    """A DataLoader worker is a fork: the parent's OpenMP team does not come along, and a parallel region
    there would wait forever for its threads."""
    import multiprocessing

    monkeypatch.setattr(kernel, "PER_THREAD", 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        parent = _run(_images((4, 3, 4, 4)), _bn(3), True)[0].sum().item()  # on the team's two threads
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_fused_sum_in, args=(queue,))
        child.start()
        child.join(timeout=60)
        alive = child.is_alive()
        child.kill()
    finally:
        torch.set_num_threads(threads)
    assert not alive and child.exitcode == 0
    assert queue.get(timeout=5) == pytest.approx(parent, rel=1e-6)


@needs_kernels
def test_the_custom_ops_pass_opcheck():
    """Schema, fake kernel (shapes and strides), autograd registration and torch.compile's dispatch."""
    x, w, b = _images((4, 3, 4, 6)), torch.randn(3, requires_grad=True), torch.randn(3, requires_grad=True)
    torch.library.opcheck(fused.bn_relu_pool, (x.requires_grad_(), w, b, 1e-5))
    out, xsel, mean, var = fused.bn_relu_pool(x, w, b, 1e-5)
    grad = torch.randn(out.shape).contiguous(memory_format=CL)
    torch.library.opcheck(fused.bn_relu_pool_backward, (grad, x.detach(), out.detach(), xsel, w.detach(),
                                                        b.detach(), mean, var, 1e-5),
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_dynamic"))


@needs_kernels
def test_a_double_backward_raises_instead_of_treating_the_gradient_as_constant():
    x = _images((4, 3, 4, 4)).requires_grad_()
    out = fused.FusedBNReLUPool(_bn(3), nn.ReLU(), nn.MaxPool2d(2))(x)
    (dx,) = torch.autograd.grad((out ** 2).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="no second derivative"):
        dx.sum().backward()


@needs_kernels
def test_the_op_refuses_a_batch_it_cannot_run_with_the_fix():
    with pytest.raises(ValueError, match="channels_last"):
        fused.bn_relu_pool(torch.randn(2, 3, 4, 4), torch.ones(3), torch.zeros(3), 1e-5)
    with pytest.raises(ValueError, match="even height and width"):
        fused.bn_relu_pool(_images((2, 3, 5, 4)), torch.ones(3), torch.zeros(3), 1e-5)


def test_every_c_function_has_its_argument_and_result_types():
    """Each function the C file exports is declared to ctypes with as many arguments as it takes."""
    source = kernel.SOURCE.read_text()
    exported = dict(re.findall(r"^void (\w+)\(([^)]*)\)", source, flags=re.MULTILINE))
    assert set(exported) == set(kernel.SIGNATURES)
    for name, params in exported.items():
        assert len(params.split(",")) == 2 + len(kernel.SIGNATURES[name]), name
        assert all(("*" in p) == (t is kernel._P) for p, t in zip(params.split(",")[2:], kernel.SIGNATURES[name]))
    if kernel.library() is not None:
        for name, args in kernel.SIGNATURES.items():
            fn = getattr(kernel.library(), name)
            assert fn.argtypes == (kernel._I, kernel._I, *args) and fn.restype is None, name


def _speedy(monkeypatch, channels_last: bool, size: int) -> None:
    """Pretend the speed path was measured to help at this layout and size, at any thread count."""
    layout = "channels_last" if channels_last else "nchw"
    monkeypatch.setattr(accel, "MEASURED", {(layout, size, t): 2.0 for t in range(1, 65)})


@needs_kernels
@pytest.mark.parametrize("channels_last", [True, False])
def test_speed_path_swaps_layers_and_puts_the_networks_own_back(channels_last, monkeypatch):
    """Inside: fused blocks (channels_last) or the fast max-pool (NCHW), the same state_dict names and
    tensors; outside: the very modules that were there, holding the trained values."""
    _speedy(monkeypatch, channels_last, 8)
    net = SmallConvNet(3, 4).to(memory_format=CL if channels_last else torch.contiguous_format)
    before, keys, params = list(net), list(net.state_dict()), list(net.parameters())
    x = torch.randn(4, 3, 8, 8).contiguous(memory_format=CL if channels_last else torch.contiguous_format)
    with accel.speed_path(net, x, torch.device("cpu"), channels_last) as on:
        assert on and list(net.state_dict()) == keys and all(a is b for a, b in zip(net.parameters(), params))
        names = [type(m).__name__ for m in net]
        net(x).sum().backward()
    expect = (["FusedBNReLUPool", "Identity", "Identity"] if channels_last else ["BatchNorm2d", "ReLU", "NCHWMaxPool"])
    assert names[1:4] == names[5:8] == expect
    assert names[11] == ("LayoutKeepingAvgPool" if channels_last else "AdaptiveAvgPool2d")
    assert all(a is b for a, b in zip(net, before)) and net[1].num_batches_tracked.item() == 1
    assert all(p.grad is not None for p in net.parameters())


@needs_kernels
def test_a_swapped_block_falls_back_to_its_layers_where_the_kernels_do_not_apply(monkeypatch):
    """Eval mode, NCHW, odd sizes: the block runs the batch norm, ReLU and pool it took the place of."""
    _speedy(monkeypatch, True, 8)
    torch.manual_seed(0)
    net = SmallConvNet(3, 4)
    twin = copy.deepcopy(net)
    with accel.swapped(net, True):
        for x, train in ((torch.randn(4, 3, 8, 8), True), (torch.randn(4, 3, 5, 5).contiguous(memory_format=CL), True),
                         (torch.randn(4, 3, 8, 8).contiguous(memory_format=CL), False)):
            net.train(train), twin.train(train)
            assert torch.equal(net(x), twin(x))
    for a, b in zip(net.state_dict().values(), twin.state_dict().values()):
        assert torch.equal(a, b)


@needs_kernels
def test_a_state_saved_on_the_speed_path_loads_into_the_plain_model():
    """A checkpoint written mid-training (inside the speed path) is the plain network's, name for name."""
    net, plain = SmallConvNet(3, 4).to(memory_format=CL), SmallConvNet(3, 4)
    x = torch.randn(4, 3, 8, 8).contiguous(memory_format=CL)
    with accel.swapped(net, True):
        net(x).sum().backward()
        state = copy.deepcopy(net.state_dict())
        net.eval()
    plain.load_state_dict(state)  # strict: the same keys
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), net.state_dict().values()))
    assert not any(m.training for m in net.modules())  # put back in the mode the network was left in


@needs_kernels
def test_a_layer_with_a_hook_is_not_swapped():
    net = SmallConvNet(3, 4)
    net[1].register_forward_hook(lambda *a: None)
    with accel.swapped(net, True):
        assert [type(m).__name__ for m in net].count("FusedBNReLUPool") == 1  # the second block only


def test_the_speed_path_is_kept_to_the_measured_cases_where_it_helped(monkeypatch):
    assert set(accel.MEASURED) == {(lay, s, t) for lay in ("channels_last", "nchw") for s in (16, 32) for t in (1, 2)}
    for case, speedup in accel.MEASURED.items():
        assert accel.choose(case[0] == "channels_last", case[1], case[2]) == (speedup >= accel.HELPS)
    assert not accel.choose(True, 8, 1) and not accel.choose(True, 16, 4)  # not measured: the plain layers
    net = SmallConvNet(3, 4)
    with accel.speed_path(net, torch.rand(4, 3, 8, 8), torch.device("cpu"), True) as on:
        assert not on and all(type(m).__module__.startswith("torch.nn") for m in net)
    _speedy(monkeypatch, True, 8)
    with accel.speed_path(net, torch.rand(4, 3, 8, 8), torch.device("cpu"), True, compile=True) as on:
        assert not on


def test_the_measured_table_is_the_committed_benchmarks():
    """accel.MEASURED cites results/benchmarks/accel_cases.json (benchmarks/accel_cases.py), to its two decimals."""
    import json
    from pathlib import Path

    bench = json.loads((Path(__file__).parents[1] / "results" / "benchmarks" / "accel_cases.json").read_text())
    assert {(r["layout"], r["size"], r["threads"]): round(r["speedup"], 2) for r in bench["rows"]} == accel.MEASURED


def test_pretrain_trains_inside_the_speed_path(monkeypatch):
    from imix_teach import train
    from imix_teach.methods import build_method

    _speedy(monkeypatch, True, 8)
    seen = []
    monkeypatch.setattr(train, "train_step", lambda model, *a, **k: seen.append([type(m).__name__ for m in model.encoder])
                        or torch.tensor(1.0))
    method = build_method("npair", SmallConvNet(3, width=4), proj_hidden=8, proj_dim=4)
    train.pretrain(method, torch.rand(8, 3, 8, 8), lambda v, g=None: v, optim=train.Optim(epochs=1, batch_size=4),
                   runtime=train.Runtime(progress=False, threads=1))
    swapped = "FusedBNReLUPool" if kernel.library() is not None else "BatchNorm2d"
    assert seen and all(names[1] == swapped for names in seen)
    assert type(method.encoder[1]) is nn.BatchNorm2d  # put back


def _library_in_a_fresh_process(env: dict, cwd=None) -> subprocess.Popen:
    code = ("import torch; from imix_teach import accel; from imix_teach.accel import kernel\n"
            "from imix_teach.models import SmallConvNet\n"
            "net = SmallConvNet(3, 4); x = torch.randn(4, 3, 8, 8).contiguous(memory_format=torch.channels_last)\n"
            "with accel.swapped(net, True): net(x).sum().backward()\n"  # trains either way
            "print(kernel.library() is not None)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **env}
    return subprocess.Popen([sys.executable, "-c", code], env=env, cwd=cwd, stdout=subprocess.PIPE, text=True)


def test_without_a_compiler_or_opted_out_the_model_trains_on_pytorchs_layers(tmp_path):
    runs = [_library_in_a_fresh_process({"XDG_CACHE_HOME": str(tmp_path / "a"), "CC": "no-such-compiler"}),
            _library_in_a_fresh_process({"IMIX_FUSED_CPU": "0"})]
    assert [r.communicate()[0].strip() for r in runs] == ["False", "False"]
    assert [r.returncode for r in runs] == [0, 0]


@needs_kernels
@pytest.mark.parametrize("xdg, home", [("", "home"), ("relative/cache", "home"), ("", "")])
def test_the_library_is_never_built_or_loaded_under_the_current_folder(tmp_path, xdg, home):
    """An empty or relative XDG_CACHE_HOME (or a relative HOME) must not put the library in the folder a notebook
    runs in: anyone who could write there could have a student load their code. It goes to the home's cache,
    or, with no absolute home, nowhere (PyTorch's layers train)."""
    work = tmp_path / "work"
    (work / "imix_teach" / "kernels").mkdir(parents=True)
    planted = work / "imix_teach" / "kernels" / "bn_relu_pool-0000000000000000.so"
    planted.write_text("not a library")
    env = {"XDG_CACHE_HOME": xdg, "HOME": str(tmp_path / home) if home else "relative-home"}
    run = _library_in_a_fresh_process(env, cwd=work)
    built = run.communicate()[0].strip()
    assert run.returncode == 0 and sorted(p.name for p in work.rglob("*")) == sorted(["imix_teach", "kernels", planted.name])
    assert built == ("True" if home else "False")
    assert len(list((tmp_path / "home").rglob("bn_relu_pool-*.so"))) == (1 if home else 0)


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
def test_a_compiler_without_openmp_builds_it_and_runs_the_chunks_one_after_another(tmp_path):
    """Apple's clang has no -fopenmp: the build goes on without it, the kernels run in one thread."""
    cc = tmp_path / "no-openmp-cc"
    cc.write_text('#!/bin/sh\nfor a in "$@"; do [ "$a" = "-fopenmp" ] && exit 1; done\nexec cc "$@"\n')
    cc.chmod(0o755)
    code = ("from imix_teach.accel import kernel; lib = kernel.library()\n"
            "print(lib is not None, lib.bnp_openmp(), kernel._threaded)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "XDG_CACHE_HOME": str(tmp_path / "cache"),
           "CC": str(cc)}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert run.stdout.split() == ["True", "0", "False"], run.stderr


@needs_kernels
def test_the_kernels_thread_only_on_the_openmp_runtime_pytorch_loaded(monkeypatch):
    """Built with -fopenmp here, the library needs libgomp.so.1, which PyTorch's wheel has loaded already: one
    team of threads. A runtime the library brought along would be a second team, each waiting behind the other."""
    code = ("import torch; from imix_teach.accel import kernel; before = kernel.openmp_runtimes(); lib = kernel.library()\n"
            "print(lib.bnp_openmp(), len(before or ()), kernel.openmp_runtimes() == before, kernel._threaded)")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    openmp, loaded, same, threaded = run.stdout.split()
    assert threaded == str(openmp == "1" and loaded != "0" and same == "True"), run.stderr
    monkeypatch.setattr(kernel, "_threaded", kernel._threaded)  # put back afterwards
    for maps, expect in (([{"/t/libgomp.so.1"}, {"/t/libgomp.so.1", "/other/libgomp.so.1"}], False),
                         ([set(), set()], False), ([{"/t/libgomp.so.1"}] * 2, True)):
        monkeypatch.setattr(kernel, "_lib", False)  # loaded again, with these runtimes before and after
        monkeypatch.setattr(kernel, "openmp_runtimes", iter(maps).__next__)
        assert kernel.library() is not None and kernel._threaded == expect, maps


@needs_kernels
def test_a_library_built_for_one_cpu_is_not_loaded_on_another(tmp_path, monkeypatch):
    """-march=native code can crash on another CPU: a home folder shared by two machines keeps one build each."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    kernel._compile()
    monkeypatch.setattr(kernel, "_cpu", lambda: "flags : another processor")
    kernel._compile()
    assert len(list((tmp_path / "imix_teach" / "kernels").glob("*.so"))) == 2
