"""What does i-Mix cost per training step? Throughput, peak memory and linear-probe time, per method.

    python benchmarks/step_benchmark.py                          # CPU (and CUDA when present)
    python benchmarks/step_benchmark.py --threads 1 --json out.json
    python benchmarks/step_benchmark.py --device cuda --model resnet18 --image-size 32 --batch 256

For each method (npair, simclr, moco, byol), with and without i-Mix, on the same random
"views" (augmentation is identical with and without i-Mix, so it is left out):

- **samples/s**: batch size / median step time (forward, loss, backward, SGD step, EMA/queue update);
  baseline and i-Mix are timed in alternating rounds, so slow phases of a shared machine hit both;
- **peak memory**: CPU: growth of the peak RSS of a fresh subprocess over its RSS just before the
  model was built, the peak reset there (Linux ``/proc/self/clear_refs``; elsewhere
  ``resource.getrusage`` max RSS, which the torch import can mask); tracemalloc does not see torch;
  CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``;
- **probe s**: feature extraction + :func:`imix_teach.evaluate.linear_probe` on the trained encoder
  (the probe does not depend on i-Mix: this column is a noise gauge);

each also as a ratio i-Mix / baseline of the same method in the same run. On CUDA the grid
also switches AMP (bf16/fp16), channels_last and torch.compile on and off. Expectation: i-Mix
adds a mixup and a few (N, N) target operations, i.e. almost nothing, for N-pair, MoCo and BYOL;
SimCLR's i-Mix needs a second (mixed) forward pass, so about 2x.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone

import torch

from imix_teach.evaluate import extract_features, linear_probe
from imix_teach.methods import METHODS as REGISTRY
from imix_teach.methods import build_method
from imix_teach.models import SmallConvNet, cifar_resnet
from imix_teach.train import StepOptions, pretrain, train_step
from imix_teach.train import Mixing, Optim, Runtime

METHODS = tuple(name for name, cls in REGISTRY.items() if not cls.needs_labels)  # every self-supervised method


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _maxrss_bytes() -> int:
    scale = 1 if sys.platform == "darwin" else 1024  # Linux reports KiB, macOS bytes
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _reset_peak() -> bool:
    """Linux: reset this process's peak RSS (VmHWM) to its current RSS; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_bytes(reset_worked: bool) -> int:
    if reset_worked:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    return _maxrss_bytes()


def build(args, method: str, device: torch.device):
    torch.manual_seed(0)
    if args.model == "small":
        encoder = SmallConvNet(3, args.width)
    else:
        encoder = cifar_resnet(int(args.model.removeprefix("resnet")))
    scale = "cpu" if args.model == "small" else "paper"
    model = build_method(method, encoder, scale=scale, n_train=4096, tau=0.2).to(device)
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01, momentum=0.9, weight_decay=1e-4)
    return model, opt


class Stepper:
    """One method, one setting: ``step()`` runs a full training step on fixed random views."""

    def __init__(self, args, method: str, imix: bool, device: torch.device, amp: str | None = None,
                 channels_last: bool = False, compile: bool = False):
        self.model, self.opt = build(args, method, device)
        self.alpha = 1.0 if imix else None
        self.device = device
        g = torch.Generator().manual_seed(1)
        shape = (args.batch, 3, args.image_size, args.image_size)
        self.v1, self.v2 = torch.randn(shape, generator=g).to(device), torch.randn(shape, generator=g).to(device)
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
            self.v1 = self.v1.contiguous(memory_format=torch.channels_last)
            self.v2 = self.v2.contiguous(memory_format=torch.channels_last)
        if compile:
            self.model.encoder.compile()
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp or "")
        self.options = StepOptions(Mixing(alpha=self.alpha), amp_dtype=dtype)
        self.scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
        self.gen = torch.Generator(device=device).manual_seed(2)
        views = iter(())

        def fixed_views(x, generator):  # v1 then v2, alternately: augmentation is not what we time
            nonlocal views
            view = next(views, None)
            if view is None:
                views = iter((self.v1, self.v2))
                view = next(views)
            return view

        self.augment = fixed_views

    def step(self) -> None:
        """The project's one training step (imix_teach.train.train_step)."""
        train_step(self.model, self.v1, self.augment, self.opt, self.gen, self.options, scaler=self.scaler)

    def timed(self, steps: int) -> float:
        """Seconds per step over ``steps`` steps (synchronised on CUDA)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        tic = time.perf_counter()
        for _ in range(steps):
            self.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - tic) / steps


def probe_seconds(args, stepper: Stepper) -> float:
    """Extract features of a fixed random set and fit the paper's linear probe; wall seconds."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(args.probe_n, 3, args.image_size, args.image_size, generator=g)
    y = torch.randint(0, 10, (args.probe_n,), generator=g)
    tic = time.perf_counter()
    feats = extract_features(stepper.model.encoder, x, device=stepper.device)
    half = args.probe_n // 2
    linear_probe(feats[:half], y[:half], feats[half:], y[half:], epochs=args.probe_epochs, device=stepper.device)
    return time.perf_counter() - tic


def memory_cpu(args, method: str, imix: bool) -> int:
    """Peak RSS growth (bytes) of a fresh subprocess running ``--mem-steps`` steps."""
    cmd = [sys.executable, os.path.abspath(__file__), "--_child-memory", f"{method}:{int(imix)}",
           "--model", args.model, "--width", str(args.width), "--batch", str(args.batch),
           "--image-size", str(args.image_size), "--threads", str(torch.get_num_threads()),
           "--mem-steps", str(args.mem_steps)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[-1])


def child_memory(args) -> None:
    """Peak RSS growth from just before the model is built to the end of ``mem_steps`` steps.

    The peak is reset first (Linux ``clear_refs``), otherwise the import of torch, whose peak is
    higher than a small model's whole training step, would hide the step's memory.
    """
    method, imix = args._child_memory.split(":")
    reset = _reset_peak()
    before = _rss_bytes() if reset else _maxrss_bytes()
    stepper = Stepper(args, method, bool(int(imix)), torch.device("cpu"))
    for _ in range(args.mem_steps):
        stepper.step()
    print(_peak_bytes(reset) - before)


def settings_for(device: torch.device, args) -> list[dict]:
    if device.type != "cuda":
        return [dict(amp=None, channels_last=False, compile=False)]
    amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    grid = [dict(amp=None, channels_last=False, compile=False), dict(amp=amp, channels_last=False, compile=False),
            dict(amp=amp, channels_last=True, compile=False)]
    if not args.no_compile:
        grid.append(dict(amp=amp, channels_last=True, compile=True))
    return grid


def bench_device(args, device: torch.device) -> list[dict]:
    rows = []
    for setting in settings_for(device, args):
        for method in args.methods:
            pair = {imix: Stepper(args, method, imix, device, **setting) for imix in (False, True)}
            for s in pair.values():  # warm-up (and compilation)
                s.timed(args.warmup)
            times = {False: [], True: []}
            for _ in range(args.rounds):  # alternate, so a slow phase of a shared machine hits both
                for imix in (False, True):
                    times[imix].append(pair[imix].timed(args.steps))
            for imix in (False, True):
                row = dict(device=device.type, method=method, imix=imix, **setting, batch=args.batch,
                           step_ms=1000 * statistics.median(times[imix]),
                           step_ms_all=[1000 * t for t in times[imix]])
                row["samples_per_s"] = args.batch / (row["step_ms"] / 1000)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats(device)
                    base = torch.cuda.memory_allocated(device)
                    pair[imix].timed(2)
                    row["peak_mem_mb"] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
                elif not args.no_memory:
                    row["peak_mem_mb"] = memory_cpu(args, method, imix) / 2**20
                row["probe_s"] = probe_seconds(args, pair[imix]) if not args.no_probe else None
                rows.append(row)
            del pair
            print(f"  {device.type} {method} {setting} done", file=sys.stderr, flush=True)
    for row in rows:  # ratios against the same method and setting without i-Mix
        base = next(r for r in rows if r["device"] == row["device"] and r["method"] == row["method"]
                    and r["amp"] == row["amp"] and r["channels_last"] == row["channels_last"]
                    and r["compile"] == row["compile"] and not r["imix"])
        row["throughput_ratio"] = row["samples_per_s"] / base["samples_per_s"]
        row["step_time_ratio"] = row["step_ms"] / base["step_ms"]
        row["mem_ratio"] = (row["peak_mem_mb"] / base["peak_mem_mb"]
                            if row.get("peak_mem_mb") and base.get("peak_mem_mb") else None)
        row["probe_ratio"] = row["probe_s"] / base["probe_s"] if row["probe_s"] and base["probe_s"] else None
    return rows


# ----------------------------------------------------------------------------- processes (torchrun)
def child_pretrain(args) -> None:
    """Inside 1 or W processes: time pretrain (train_step + DDP + gathers) on random images."""
    steps = args.steps * 2
    x = torch.rand(args.batch * steps, 3, args.image_size, args.image_size, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    method = build_method(args.methods[0], SmallConvNet(3, args.width), scale="cpu", n_train=4096, tau=0.2)
    device = torch.device("cuda") if torch.cuda.is_available() and args.device != "cpu" else torch.device("cpu")
    history = pretrain(method, x, lambda v, g: v.float(),
                       optim=Optim(epochs=3, batch_size=args.batch, warmup_epochs=0), mixing=Mixing(alpha=1.0),
                       runtime=Runtime(device=device, progress=False))
    if int(os.environ.get("RANK", "0")) == 0:
        seconds = statistics.median(history.epoch_seconds[1:])  # epoch 1 pays for start-up
        print(json.dumps(dict(samples_per_s=args.batch * steps / seconds, epoch_s=seconds)))


def bench_processes(args, counts: list[int]) -> list[dict]:
    """The same global batch on 1 process and on W processes (torchrun), i-Mix on, one method."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    rows = []
    for w in counts:
        threads = args.threads or max(1, cpus // w)
        launch = [sys.executable] if w == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                  "--nproc_per_node", str(w)]
        cmd = launch + [os.path.abspath(__file__), "--_child-pretrain", "--methods", args.methods[0], "--batch",
                        str(args.batch), "--image-size", str(args.image_size), "--width", str(args.width), "--steps",
                        str(args.steps), "--threads", str(threads), "--device", args.device or "all"]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS=str(threads)))
        result = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(dict(processes=w, threads_per_process=threads, method=args.methods[0], batch=args.batch, **result))
    for row in rows:
        row["speedup"] = row["samples_per_s"] / rows[0]["samples_per_s"]
    return rows


def processes_markdown(rows: list[dict]) -> str:
    lines = ["| processes | torch threads each | method (i-Mix) | global batch | samples/s | epoch s | speed-up vs first row |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['processes']} | {r['threads_per_process']} | {r['method']} | {r['batch']} | {r['samples_per_s']:.0f} "
              f"| {r['epoch_s']:.2f} | {r['speedup']:.2f} |" for r in rows]
    return "\n".join(lines)


def markdown(rows: list[dict]) -> str:
    def f(v, fmt):
        return "–" if v is None else format(v, fmt)

    lines = ["| device | setting | method | i-Mix | samples/s | step ms | ratio step time (i-Mix/base) | "
             "peak mem MB | ratio mem | probe s | ratio probe |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        setting = "fp32" if r["amp"] is None else r["amp"]
        setting += (" + channels_last" if r["channels_last"] else "") + (" + compile" if r["compile"] else "")
        lines.append(
            f"| {r['device']} | {setting} | {r['method']} | {'yes' if r['imix'] else 'no'} | {r['samples_per_s']:.0f} "
            f"| {r['step_ms']:.1f} | {f(r['step_time_ratio'], '.2f') if r['imix'] else '1'} "
            f"| {f(r.get('peak_mem_mb'), '.0f')} | {f(r['mem_ratio'], '.2f') if r['imix'] else '1'} "
            f"| {f(r['probe_s'], '.2f')} | {f(r['probe_ratio'], '.2f') if r['imix'] else '1'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=None, help="cpu, cuda or all (default: cpu, plus cuda when present)")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--model", default="small", help="small (SmallConvNet), resnet18 or resnet50")
    p.add_argument("--width", type=int, default=32, help="SmallConvNet width")
    p.add_argument("--image-size", type=int, default=16)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=5, help="steps per timing round")
    p.add_argument("--rounds", type=int, default=4, help="alternating baseline/i-Mix rounds (median is reported)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--mem-steps", type=int, default=3)
    p.add_argument("--probe-n", type=int, default=2000, help="samples for the probe timing (half train, half test)")
    p.add_argument("--probe-epochs", type=int, default=100)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default torch's choice)")
    p.add_argument("--no-memory", action="store_true", help="skip the CPU memory subprocesses")
    p.add_argument("--no-probe", action="store_true")
    p.add_argument("--no-compile", action="store_true", help="CUDA: skip the torch.compile setting")
    p.add_argument("--json", default=None, help="also write the rows (and the machine) to this JSON file")
    p.add_argument("--processes", default=None, metavar="1,2",
                   help="instead of the method grid: time pretrain on 1 process vs W processes (torchrun), e.g. 1,2")
    p.add_argument("--_child-memory", default=None, help=argparse.SUPPRESS)
    p.add_argument("--_child-pretrain", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args._child_memory:
        child_memory(args)
        return []
    args.methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in args.methods if m not in METHODS]
    if bad:
        p.error(f"argument --methods: unknown {bad}; choose from {', '.join(METHODS)}")
    if args._child_pretrain:
        child_pretrain(args)
        return []
    if args.processes:
        rows = bench_processes(args, [int(w) for w in args.processes.split(",")])
        print(processes_markdown(rows))
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(dict(rows=rows, torch=torch.__version__, cpus=os.cpu_count()), fh, indent=1)
        return rows
    if args.device in (None, "all"):
        devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    else:
        devices = [torch.device(args.device)]
    machine = dict(platform=platform.platform(), processor=platform.processor(), cpus=os.cpu_count(),
                   threads=torch.get_num_threads(), torch=torch.__version__,
                   cuda=torch.cuda.get_device_name() if torch.cuda.is_available() else None,
                   date=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    tic = time.perf_counter()
    rows = [row for d in devices for row in bench_device(args, d)]
    print(f"model {args.model}{' width ' + str(args.width) if args.model == 'small' else ''}, "
          f"{args.image_size}x{args.image_size} px, batch {args.batch}; median of {args.rounds} rounds x {args.steps} "
          f"steps; {machine['cpus']} CPUs, {machine['threads']} torch threads, torch {machine['torch']}"
          f"{', ' + machine['cuda'] if machine['cuda'] else ''}; {time.perf_counter() - tic:.0f} s\n")
    print(markdown(rows))
    if args.json:
        with open(args.json, "w") as fh:
            # the output's file name only: a machine's folders (a /tmp path) say nothing to a reader of the JSON
            settings = {k: os.path.basename(v) if k == "json" else v for k, v in vars(args).items() if not k.startswith("_")}
            json.dump(dict(machine=machine, args=settings, rows=rows), fh, indent=1)
    return rows


if __name__ == "__main__":
    main()
