"""Where each notebook's full mode spends its minutes: pretraining, probes, feature extraction, data loading, the rest.

    python benchmarks/notebook_profile.py --out results/benchmarks/notebook_profile.json          # all, full mode
    python benchmarks/notebook_profile.py --notebooks 03 06 --quick --out /tmp/profile.json      # a smoke run
    python benchmarks/notebook_profile.py --out results/benchmarks/notebook_profile.json --save notebooks  # and keep the outputs

Each notebook runs headless (nbclient) on a copy in a temporary folder, as a student's Run All would, with
one cell put before its first: it wraps the library's entry points of each kind of work (``train.pretrain``;
the probes ``linear_probe``, ``knn_accuracy``, ``least_squares_accuracy``; ``extract_features``;
``data.load``) wherever a module of the package holds them, and times each call *exclusively* (a probe
inside a pretraining call's evaluation counts as probe time, not twice). One cell put after the last prints
the totals. "rest" is the notebook's wall time minus the four: plotting, widgets, the kernel's start,
teaching cells. The notebooks are modified only with ``--save DIR``, which writes each executed notebook
there without the two added cells (``--save notebooks``: the course's committed outputs come from the
profiled run). Timings are wall seconds on this machine: compare notebooks within one run.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KINDS = {"pretraining": ["imix_teach.train:pretrain"],
         "probes": ["imix_teach.evaluate:linear_probe", "imix_teach.evaluate:knn_accuracy",
                    "imix_teach.evaluate:least_squares_accuracy"],
         "features": ["imix_teach.evaluate:extract_features"],
         "data loading": ["imix_teach.data.base:load"]}
MARK = "IMIX_PROFILE_JSON "

# Put before a notebook's first cell: wraps each entry point in every imix_teach module that holds it.
_INSTALL = '''
import importlib, pkgutil, sys, time, functools, json as _json
import imix_teach
for _m in pkgutil.walk_packages(imix_teach.__path__, "imix_teach."):
    if ".exercises" not in _m.name and not _m.name.endswith("__main__"):
        try:
            importlib.import_module(_m.name)
        except ImportError:  # an optional extra that is not installed: nothing of it can run here either
            pass
_PROFILE = {k: 0.0 for k in KINDS}
_STACK = []
def _timed(kind, f):
    @functools.wraps(f)
    def wrapper(*a, **kw):
        _STACK.append(0.0)
        tic = time.perf_counter()
        try:
            return f(*a, **kw)
        finally:
            total = time.perf_counter() - tic
            inner = _STACK.pop()
            _PROFILE[kind] += total - inner  # exclusive: the time of nested timed calls is theirs
            if _STACK:
                _STACK[-1] += total
    return wrapper
for _kind, _names in KINDS.items():
    for _name in _names:
        _mod, _attr = _name.split(":")
        _orig = getattr(importlib.import_module(_mod), _attr)
        _new = _timed(_kind, _orig)
        for _m in list(sys.modules.values()):
            if getattr(_m, "__name__", "").startswith("imix_teach") and getattr(_m, _attr, None) is _orig:
                setattr(_m, _attr, _new)
'''


def profile_notebook(path: Path, *, quick: bool, timeout: int = 3600, save: Path | None = None) -> dict:
    """Run one notebook headless (full mode unless ``quick``) and return its seconds per kind of work;
    ``save``: a folder to write the executed notebook to, as a student's Run All leaves it."""
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(f"KINDS = {KINDS!r}\n" + _INSTALL))
    nb.cells.append(nbformat.v4.new_code_cell(f"print({MARK!r} + _json.dumps(_PROFILE))"))
    # No MPLBACKEND: the kernel's own inline backend is what shows a notebook's figures (Agg would drop them
    # from the saved outputs).
    env = {k: v for k, v in dict(os.environ, IMIX_QUICK="1" if quick else "0").items() if k != "MPLBACKEND"}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "notebooks"
        shutil.copytree(path.parent, work, ignore=shutil.ignore_patterns("*.ipynb_checkpoints"))
        old = dict(os.environ)
        os.environ.update(env)  # the kernel inherits the environment of this process
        try:
            tic = time.perf_counter()
            nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                    resources={"metadata": {"path": str(work)}}).execute()
            wall = time.perf_counter() - tic
        finally:
            os.environ.clear()
            os.environ.update(old)
    text = "".join(o.get("text", "") for o in nb.cells[-1].outputs if o.get("output_type") == "stream")
    seconds = json.loads(text.split(MARK, 1)[1])
    if save is not None:
        _save(nb, save / path.name)
    return dict(notebook=path.name, wall_s=round(wall, 1), **{k: round(v, 1) for k, v in seconds.items()},
                rest=round(wall - sum(seconds.values()), 1))


def _save(nb, out: Path) -> None:
    """The executed notebook without the two profiling cells, its code cells counted from 1."""
    import nbformat

    nb.cells = nb.cells[1:-1]
    code = [c for c in nb.cells if c.cell_type == "code"]
    for number, cell in enumerate((c for c in code if c.get("execution_count") is not None), start=1):
        cell.execution_count = number
        for output in cell.outputs:
            if "execution_count" in output:
                output.execution_count = number
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)


def table(rows: list[dict]) -> str:
    """Markdown: minutes per notebook and kind of work, and the total."""
    cols = ["wall_s", *KINDS, "rest"]
    lines = ["| notebook | total min | " + " | ".join(c for c in cols[1:]) + " |", "|---" * (len(cols) + 1) + "|"]
    for r in [*rows, dict(notebook="all", **{c: sum(r[c] for r in rows) for c in cols})]:
        lines.append(f"| {r['notebook']} | " + " | ".join(f"{r[c] / 60:.1f}" for c in cols) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Profile the chosen notebooks; write JSON (every row, the machine, the command) and print the table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--notebooks", nargs="*", default=None, help="two-digit prefixes (default: all)")
    ap.add_argument("--quick", action="store_true", help="quick mode (IMIX_QUICK=1): a smoke run of the tool")
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    ap.add_argument("--save", type=Path, default=None, help="folder to write the executed notebooks to")
    args = ap.parse_args(argv)
    paths = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.notebooks:
        paths = [p for p in paths if p.name[:2] in args.notebooks]
        if not paths:
            ap.error(f"argument --notebooks: no notebook starts with {args.notebooks}")
    rows = []
    for path in paths:
        rows.append(profile_notebook(path, quick=args.quick, save=args.save))
        print(rows[-1], flush=True)
        _write(args.out, rows, args)  # after each notebook: a stopped run keeps what it measured
    print(table(rows))


def _write(out: Path, rows: list[dict], args: argparse.Namespace) -> None:
    import torch

    out.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(mode="quick" if args.quick else "full", torch=torch.__version__, threads=torch.get_num_threads(),
                cpus=os.cpu_count(), machine=platform.processor() or platform.machine(),
                command="python benchmarks/notebook_profile.py" + (" --quick" if args.quick else "")
                + (f" --notebooks {' '.join(args.notebooks)}" if args.notebooks else "") + f" --out {out.name}")
    out.write_text(json.dumps(dict(meta, notebooks=rows), indent=1) + "\n")


if __name__ == "__main__":
    main()
