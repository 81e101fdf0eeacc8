"""The ``imix-teach`` command (also ``python -m imix_teach``, and ``torchrun ... -m imix_teach``).

    imix-teach pretrain --dataset digits --method npair --alpha 1 --epochs 15 --out runs/npair
    torchrun --standalone --nproc_per_node 2 -m imix_teach pretrain --dataset digits --out runs/ddp
    imix-teach reproduce --preset cpu --domain all --methods npair,moco,byol --seeds 3 --out results/cpu
    imix-teach reproduce --preset paper --domain image --estimate-steps 5      # time steps, extrapolate
    imix-teach demo                                                              # 2-3 minute digits demo
    imix-teach grade submissions/ --out grades.csv --summary summary.csv         # grade a class's notebooks
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.distributed.elastic.multiprocessing.errors import record

from . import pretrain_command
from .course import demo
from . import reproduce as rp
from .reproduce import domains, regime
from .checkpoint import CheckpointError
from .engine import DataCache


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


FIXED_GRIDS = {"regime": regime.grid, "domains": domains.grid}  # grids whose protocol is fixed
PRESET_NAMES = sorted([*rp.PRESETS, *FIXED_GRIDS])
# A fixed grid's protocol (regime, domains) is fixed: of reproduce's options it takes only these.
REGIME_OPTIONS = ("out", "root", "device", "threads", "max_runs", "quick", "estimate_steps", "no_progress")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imix-teach", description="i-Mix course and library: command-line tools.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    p = sub.add_parser(
        "reproduce", help="pretrain each method with and without i-Mix, evaluate, write table + figure",
        description=rp.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--preset", default="cpu", help=f"one of {PRESET_NAMES} (default cpu); regime and domains: fixed "
                                                   "grids (results/regime/ and results/domains/protocol.json)")
    p.add_argument("--domain", default="all", help="image, speech, tabular or all; a comma list is fine (default all)")
    p.add_argument("--methods", default=",".join(rp.DEFAULT_METHODS),
                   help=f"comma list from {', '.join(rp.METHOD_CHOICES)} (default npair,moco,byol)")
    p.add_argument("--datasets", default=None,
                   help="comma list: keep only these datasets of the chosen domains (e.g. cifar10,covtype)")
    p.add_argument("--seeds", type=_positive_int, default=3, help="number of seeds: 0..N-1 (default 3)")
    p.add_argument("--out", default=None, help="output folder (default results/<preset>)")
    p.add_argument("--root", default=None, help="data root (default $IMIX_DATA, else ~/.cache/imix_teach)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: CUDA if present)")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="torch CPU threads (default torch's choice; 1 is faster on a contended CPU)")
    p.add_argument("--epochs", type=_positive_int, default=None, help="override every dataset's pretraining epochs")
    p.add_argument("--batch-size", type=_positive_int, default=None, help="override the pretraining batch size")
    p.add_argument("--per-class", type=_positive_int, default=None,
                   help="override: load only this many rows per class (train and test)")
    p.add_argument("--max-runs", type=_positive_int, default=None, help="stop after this many new runs (resume later)")
    p.add_argument("--quick", action="store_true", help="tiny smoke version of the cpu preset (also IMIX_QUICK=1)")
    p.add_argument("--estimate-steps", type=_positive_int, default=None, metavar="K",
                   help="do not train: time K steps per dataset/method and print the expected total time")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    t = sub.add_parser("pretrain", help="pretrain one method on one dataset (also under torchrun), then evaluate",
                       description=pretrain_command.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    pretrain_command.add_arguments(t)
    d = sub.add_parser("demo", help="i-Mix vs. baseline on scikit-learn's digits, 3 seeds (2-3 minutes on one CPU thread)")
    d.add_argument("args", nargs=argparse.REMAINDER, help="passed to python -m imix_teach.course.demo")
    g = sub.add_parser("grade", help="run a class's submitted notebooks (quick mode, offline) and write grades.csv",
                       description="Grade a class's notebooks: docs/instructors.md. Needs the grade extra "
                                   "(pip install 'imix-teach[grade]'): nbclient and a Jupyter kernel.")
    g.add_argument("submissions", help="folder: <student>/NN_name.ipynb or <student>__NN_name.ipynb files")
    g.add_argument("--out", default="grades.csv", help="grades CSV: one row per student, notebook, exercise "
                                                       "(default grades.csv)")
    g.add_argument("--summary", default=None, help="also write the per-exercise summary as CSV here")
    g.add_argument("--timeout", type=_positive_int, default=300, help="seconds per notebook (default 300)")
    g.add_argument("--notebooks", default=None, help="comma list: grade only these (e.g. 01,03_imix_npair)")
    g.add_argument("--kernel", default="python3", help="Jupyter kernel to run them in (default python3)")
    return parser


def _split(parser: argparse.ArgumentParser, option: str, text: str, choices, allow_all: bool = False) -> list[str]:
    items = [t.strip().lower() for t in text.split(",") if t.strip()]
    if allow_all and items == ["all"]:
        return list(choices)
    bad = [t for t in items if t not in choices]
    if bad or not items:
        valid = ", ".join(list(choices) + (["all"] if allow_all else []))
        parser.error(f"argument {option}: unknown value(s) {', '.join(map(repr, bad)) or repr(text)}; choose from {valid}")
    return list(dict.fromkeys(items))


@record  # under torchrun: a failing rank's traceback is reported, and torchrun stops the others
def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default: the command line), run the sub-command, return its exit code."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return _dispatch(parser, args)
    except (ValueError, TypeError, FileNotFoundError, PermissionError, CheckpointError) as err:
        # A mistake in the input, named by the error itself: no traceback to read through.
        print(f"imix-teach {args.command}: error: {err}", file=sys.stderr)
        return 2


def _dispatch(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.command == "pretrain":
        return pretrain_command.run(args)
    if args.command == "demo":
        demo.main(args.args)
        return 0
    if args.command == "grade":
        from .course import grading  # nbclient is an extra (grade): import it only for this command

        notebooks = None if args.notebooks is None else [n.strip() for n in args.notebooks.split(",") if n.strip()]
        rows = grading.grade(args.submissions, args.out, timeout=args.timeout, notebooks=notebooks,
                             summary=args.summary, kernel=args.kernel)
        print(grading.summary_table(grading.summarize(rows)))
        print(f"{len(rows)} rows in {args.out}" + (f"; summary in {args.summary}" if args.summary else ""))
        return 0
    if args.preset not in PRESET_NAMES:
        parser.error(f"argument --preset: unknown preset {args.preset!r}; choose from {', '.join(PRESET_NAMES)}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    grid = _fixed_grid(parser, args) if args.preset in FIXED_GRIDS else _preset_grid(parser, args)
    out = Path(args.out) if args.out else Path("results") / grid.name
    if args.estimate_steps is not None:
        store = rp.ResultStore(out / "runs.json")
        todo = [r for r in grid.runs if r.key not in store] or list(grid.runs)
        print(rp.estimate_table(rp.estimate(grid, todo, store, DataCache(), steps=args.estimate_steps, root=args.root)))
        return 0
    tic = time.perf_counter()
    records = rp.reproduce(grid, out, root=args.root, device=args.device, max_runs=args.max_runs,
                           progress=not args.no_progress)
    table = out / ("table.md" if grid.protocol is not None else "results.md")
    print(table.read_text() if records else "no runs finished")
    print(f"{len(records)}/{len(grid.runs)} runs in {out / 'runs.json'}; this call took {time.perf_counter() - tic:.0f} s; "
          f"report in {out}")
    return 0 if len(records) == len(grid.runs) else 3


def _preset_grid(parser: argparse.ArgumentParser, args: argparse.Namespace) -> rp.Grid:
    """The grid of a main-comparison preset (cpu, paper, paper-imagenet) with the command line's choices."""
    domains = _split(parser, "--domain", args.domain, rp.DOMAINS, allow_all=True)
    methods = _split(parser, "--methods", args.methods, rp.METHOD_CHOICES)
    if args.quick and args.preset != "cpu":
        parser.error("argument --quick: only the cpu, regime and domains presets have a quick version")
    preset = rp.get_preset(args.preset, quick=True if args.quick else None)
    overrides = dict(epochs=args.epochs, batch_size=args.batch_size, per_class=args.per_class)
    if args.datasets is not None:
        known = list(dict.fromkeys(s.dataset for d in domains for s in preset.domain(d)))
        overrides["datasets"] = _split(parser, "--datasets", args.datasets, known)
    return preset.grid(domains, methods, args.seeds, **overrides)


def _fixed_grid(parser: argparse.ArgumentParser, args: argparse.Namespace) -> rp.Grid:
    """``reproduce --preset regime`` or ``domains``: a fixed grid; of the command line it takes only REGIME_OPTIONS."""
    defaults = parser.parse_args(["reproduce"])
    changed = [k for k, v in vars(args).items() if k not in (*REGIME_OPTIONS, "command", "preset")
               and v != getattr(defaults, k)]
    if changed:
        parser.error(f"argument --{changed[0].replace('_', '-')}: the {args.preset} preset runs a fixed protocol (its "
                     f"protocol.json); it takes only {', '.join('--' + o.replace('_', '-') for o in REGIME_OPTIONS)}")
    return FIXED_GRIDS[args.preset](quick=args.quick)


if __name__ == "__main__":
    sys.exit(main())
