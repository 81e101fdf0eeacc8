"""The day a GPU is lent: one command that measures the training step and runs the comparison, in ~9 minutes.

    python benchmarks/gpu_session.py --data ../shared/data --out $OUT          # on the GPU
    python benchmarks/gpu_session.py --dry-run --out /tmp/gpu_dry              # every step on a CPU, < 1 min

1. Speed (``speed.json``): N-pair on ResNet-18 (CIFAR stem), batch 512, the dataset's batched
   SimCLR augmentation on the device: images/s, seconds per CIFAR-10 epoch (50,000 images /
   throughput) and peak memory, for fp32, bf16 autocast + channels_last, and the same +
   torch.compile (compile seconds apart), each without and with i-Mix (alpha = 1); MoCo and
   BYOL likewise at bf16 + channels_last. Each row is :func:`imix_teach.engine.short_run` (the
   engine's :func:`~imix_teach.train.pretrain`, so the library's one training step): an untimed
   epoch of ``speed_steps`` steps, then a timed one, clocked between the loop's epoch callbacks
   (each after the epoch's loss was read, i.e. after the GPU finished it). The i-Mix / baseline
   ratio divides the two rows' step times. Goals reported against: <= 2 s per epoch,
   i-Mix <= 1.05x the baseline's step.
2. The comparison (``runs.json``): :mod:`gpu_session_runs`: N-pair and MoCo without and with
   i-Mix on all of CIFAR-10 and on 10 % of each class, epochs from the minutes left (the rule is
   written to the file before any run), linear and kNN probes on the GPU.

Both files carry the device, the GPU's name, torch and CUDA versions and the exact command line,
and are rewritten atomically after every record, so a session killed at its time limit keeps
every row that finished.
"""
from __future__ import annotations

import time

START = time.monotonic()  # the budget counts from here: before torch is imported

import argparse  # noqa: E402
import gc  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

import gpu_session_runs as parts  # noqa: E402  (this folder is on sys.path when the script runs)
from imix_teach import engine  # noqa: E402
from imix_teach.data.base import DomainData  # noqa: E402
from imix_teach.run_config import Mixing, Runtime  # noqa: E402

SETTINGS = {  # the speed table's precision / layout / compile settings (imix_teach.run_config.Runtime fields)
    "fp32": dict(amp="off", channels_last=False, compile=False),
    "bf16_cl": dict(amp="bf16", channels_last=True, compile=False),
    "bf16_cl_compile": dict(amp="bf16", channels_last=True, compile=True),
}
CASES = [("npair", s) for s in SETTINGS] + [("moco", "bf16_cl"), ("byol", "bf16_cl")]  # each without, then with i-Mix
GOALS = dict(epoch_s_at_most=2.0, imix_over_baseline_at_most=1.05)
DEFAULT_BUDGET_MIN = dict(gpu=8.5, dry=1.0)  # gpu: the whole script inside ~9 of a 10-minute command


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path, help="folder for speed.json and runs.json")
    p.add_argument("--data", help="data root holding cifar10-jpg/ or cifar-10-batches-py/ (or that folder itself); "
                                  "required unless --dry-run, which then uses synthetic images")
    p.add_argument("--budget-min", type=float, help="minutes the whole script may take, counted from its start "
                                                    f"(default {DEFAULT_BUDGET_MIN['gpu']}, dry run "
                                                    f"{DEFAULT_BUDGET_MIN['dry']})")
    p.add_argument("--dry-run", action="store_true", help="every step on the CPU with tiny sizes")
    args = p.parse_args(argv)
    if not args.dry_run and args.data is None:
        p.error("--data is required for a GPU session (--dry-run runs on synthetic images without it)")
    if args.budget_min is None:
        args.budget_min = DEFAULT_BUDGET_MIN["dry" if args.dry_run else "gpu"]
    return args


def pick(dry_run: bool) -> torch.device:
    """The CPU for a dry run; else this machine's first GPU (a session without one stops here, saying so)."""
    if dry_run:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run on the GPU machine, or pass --dry-run")
    return torch.device("cuda", torch.cuda.current_device())


def environment(device: torch.device, args: argparse.Namespace, sizes: parts.Sizes) -> dict[str, Any]:
    """Where and how the numbers were made: device, versions, the exact command line, the sizes."""
    cuda = device.type == "cuda"
    return dict(
        device=str(device), gpu_name=torch.cuda.get_device_name(device) if cuda else None,
        torch=torch.__version__, cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version() if cuda else None,
        python=platform.python_version(), cpu=platform.processor() or platform.machine(), cpus=os.cpu_count(),
        torch_threads=torch.get_num_threads(), command=shlex.join(sys.orig_argv), cwd=os.getcwd(),
        dry_run=args.dry_run, budget_min=args.budget_min, data=args.data, started=parts.stamp(parts.now()),
        sizes=dict(batch=sizes.batch, speed_steps=sizes.speed_steps, image_size=sizes.image_size,
                   encoder=dict(kind=sizes.encoder.kind, size=sizes.encoder.size),
                   compile_backend=sizes.compile_backend or "inductor (torch's default)"))


def _fresh(device: torch.device) -> None:
    """Free the last row's model and reset the peak, so each row's peak memory is its own."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def speed_row(sizes: parts.Sizes, device: torch.device, train: DomainData, method: str, setting: str,
              alpha: float | None) -> dict[str, Any]:
    """One row: an untimed epoch, then a timed one, of ``speed_steps`` steps through the engine."""
    cfg = parts.config(sizes, device, train, None, method, alpha, 2).replace(
        runtime=Runtime(device=str(device), progress=False, threads=sizes.threads, **SETTINGS[setting]))
    _fresh(device)
    marks: list[float] = []
    tic = time.perf_counter()
    history = engine.short_run(cfg, train, sizes.speed_steps, callback=lambda epoch, h: marks.append(time.perf_counter()))
    step_s = (marks[1] - marks[0]) / sizes.speed_steps
    images_per_s = cfg.optim.batch_size / step_s
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return dict(method=method, setting=setting, alpha=alpha, batch=cfg.optim.batch_size, steps=sizes.speed_steps,
                step_s=step_s, images_per_s=images_per_s, epoch_s=parts.EPOCH_IMAGES / images_per_s,
                first_epoch_s=marks[0] - tic, one_off_s=marks[0] - tic - sizes.speed_steps * step_s,
                peak_memory_mb=peak, final_loss=history.epoch_loss[-1], **SETTINGS[setting])


def _match(rows: list[dict[str, Any]], **keys: Any) -> dict[str, Any] | None:
    """The measured row with these fields, None when it failed or is not there."""
    return next((r for r in rows if r["status"] == "done" and all(r[k] == v for k, v in keys.items())), None)


def derived(row: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """The ratios a row has against rows already measured: i-Mix / baseline step; compile's seconds apart."""
    if row["status"] != "done":
        return
    base = _match(rows, method=row["method"], setting=row["setting"], alpha=None)
    if row["alpha"] is not None and base is not None:
        row["imix_over_baseline"] = row["step_s"] / base["step_s"]
        row["imix_goal_met"] = row["imix_over_baseline"] <= GOALS["imix_over_baseline_at_most"]
    # compile: the one-off seconds beyond the same row's without compile. The second compiled row reuses the
    # first's code (dynamo takes a module's parameters as inputs), so its compile_s is near 0: the first's is the cost.
    plain = _match(rows, method=row["method"], setting="bf16_cl", alpha=row["alpha"])
    if row["compile"] and plain is not None:
        row["compile_s"] = row["one_off_s"] - plain["one_off_s"]
    row["epoch_goal_met"] = row["epoch_s"] <= GOALS["epoch_s_at_most"]


def speed(report: parts.Report, sizes: parts.Sizes, device: torch.device, train: DomainData) -> dict[str, Any]:
    """Every row of the speed table, written as it is measured; returns what the epochs rule needs."""
    order = [c for c in CASES if not SETTINGS[c[1]]["compile"]] + [c for c in CASES if SETTINGS[c[1]]["compile"]]
    for method, setting in order:  # the compile rows last: derived() reads the bf16_cl rows
        for alpha in parts.ALPHAS:
            try:
                row = dict(speed_row(sizes, device, train, method, setting, alpha), status="done")
            except Exception as err:  # noqa: BLE001  (one failed row, e.g. out of memory, must not end the session)
                row = dict(method=method, setting=setting, alpha=alpha, status="failed", error=repr(err)[-800:])
            derived(row, report.doc.get("rows", []))
            report.add("rows", row)
    rows = [r for r in report.doc["rows"] if r["status"] == "done"]
    if not rows:
        raise SystemExit(f"no speed row could be measured: see the errors in {report.path}")
    fastest = min((r for r in rows if r["method"] == "npair"), key=lambda r: r["epoch_s"], default=None)
    report.doc["summary"] = dict(
        goals=GOALS, fastest_npair=None if fastest is None else {k: fastest[k] for k in ("setting", "alpha", "epoch_s")},
        epoch_goal_met=fastest is not None and fastest["epoch_s"] <= GOALS["epoch_s_at_most"],
        imix_over_baseline={f"{r['method']}/{r['setting']}": r["imix_over_baseline"] for r in rows if "imix_over_baseline" in r},
        compile_s={f"{r['method']}/alpha={r['alpha']}": r["compile_s"] for r in rows if "compile_s" in r},
        seconds=time.monotonic() - START)
    report.write()
    same = [r for r in rows if r["setting"] == "bf16_cl"] or rows  # the comparison's setting, else any measured row
    slowest = max(r["step_s"] for r in same)
    return dict(step_s={m: max((r["step_s"] for r in same if r["method"] == m), default=slowest) for m in parts.METHODS},
                one_off_s=max(0.0, max(r["one_off_s"] for r in same)))


def main(argv: list[str] | None = None) -> None:
    """Speed table, then the comparison, inside ``--budget-min`` minutes from the script's start."""
    args = parse_args(argv)
    sizes = parts.DRY if args.dry_run else parts.GPU
    deadline = START + 60 * args.budget_min
    device = pick(args.dry_run)
    if sizes.threads is not None:  # the loading and everything outside the engine's runs too
        torch.set_num_threads(sizes.threads)
    if sizes.compile_backend is not None:
        torch.compiler.set_default_backend(sizes.compile_backend)
    env = environment(device, args, sizes)
    train, test = parts.load_splits(args.data, sizes)
    cells = parts.cells(train, sizes)
    root = None if args.data is None else str(parts.cifar_root(args.data))
    runs = parts.Report(args.out / "runs.json", dict(env, protocol=parts.protocol(sizes, cells, deadline - START),
                                                     floors=[], runs=[]))
    print(f"data loaded: {len(train)} train / {len(test)} test, {time.monotonic() - START:.0f} s", flush=True)
    rule_inputs = speed(parts.Report(args.out / "speed.json", dict(env, rows=[])), sizes, device, train)
    print(f"speed table done, {time.monotonic() - START:.0f} s", flush=True)
    parts.comparison(runs, sizes, device, cells, test, root, rule_inputs, deadline)
    runs.doc["seconds"] = time.monotonic() - START
    runs.write()
    print(f"comparison done, {runs.doc['seconds']:.0f} s: {args.out}/speed.json, {args.out}/runs.json", flush=True)


if __name__ == "__main__":
    main()
