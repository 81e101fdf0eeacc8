"""What the README and the docs pages claim about results, notebooks and widgets equals what the repository holds."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
RESULTS = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")  # the results the README used to hold
LANDING = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")  # the site's landing page: what each notebook holds
NOTEBOOKS = {p.name[:2]: p for p in sorted((ROOT / "notebooks").glob("*.ipynb"))}


def _table(text: str, after: str) -> list[dict[str, str]]:
    """The first markdown table in `text` after the line containing `after`, as one dict per row."""
    lines = text[text.index(after):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    header, body = rows[0], rows[2:]
    return [dict(zip(header, row)) for row in body]


def _outputs(path: Path) -> tuple[str, str]:
    """(all text the notebook's code cells printed or displayed, all of its code)."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    texts = ["".join(o.get("text", "")) for c in code for o in c["outputs"]]
    texts += ["".join(v) for c in code for o in c["outputs"] for k, v in o.get("data", {}).items() if k.startswith("text/")]
    return "\n".join(texts), "\n".join("".join(c["source"]) for c in code)


def test_committed_cpu_table_equals_results_md():
    readme = _table(RESULTS, "Committed result (")
    committed = _table((ROOT / "results/cpu/results.md").read_text(encoding="utf-8"), "| dataset |")
    assert readme and len(readme) == len(committed)
    for ours, theirs in zip(readme, committed):
        assert ours == {k: theirs[k] for k in ours}


def test_step_benchmark_table_equals_its_json():
    rows = json.loads((ROOT / "results/benchmarks/step_benchmark_cpu.json").read_text())["rows"]
    expected = [{"method": r["method"], "step time": f"{r['step_time_ratio']:.2f}", "peak memory": f"{r['mem_ratio']:.2f}"}
                for r in rows if r["imix"] and r["device"] == "cpu"]
    assert _table(RESULTS, "## What i-Mix costs") == expected


@pytest.mark.parametrize("row", _table(RESULTS, "## What the notebooks' full-mode runs show"), ids=lambda r: r["notebook"])
def test_notebook_results_table_matches_the_committed_outputs(row):
    """Each number in the results page's row is, at the page's precision, a number the notebook printed."""
    printed, _ = _outputs(NOTEBOOKS[row["notebook"]])
    numbers = re.findall(r"\d+\.\d+", printed)
    for claim in re.findall(r"\d+\.\d+", row[next(k for k in row if k.startswith("baseline"))]):
        digits = len(claim.split(".")[1])
        assert any(f"{float(n):.{digits}f}" == claim for n in numbers), f"{claim} not among notebook {row['notebook']}'s outputs"


def test_course_table_lists_every_notebook_and_links_exist():
    assert [row["#"] for row in _table(README, "## The course")] == list(NOTEBOOKS)
    for link in re.findall(r"\]\(((?!https?://|#)[^)]+)\)", README):
        assert (ROOT / link).exists(), f"README links to missing {link}"


def test_widget_claim_names_exactly_the_notebooks_with_each_widget():
    claim = re.search(r"widgets that also run headless on ipywidgets 7.7 or 8 \(alpha in ([\d/]+), tau in (\d+), "
                      r"lam with live loss and similarity readouts in ([\d and]+), queue size and momentum in (\d+), "
                      r"BYOL's mixed target in (\d+), masking noise in (\d+), the ablation browser in (\d+), "
                      r"supervised virtual labels in (\d+), the playground in (\d+)\)", " ".join(LANDING.split()))
    assert claim, "docs/index.md's sentence on widgets changed: update this test with it"
    alpha, tau, lam, queue, byol, masking, ablation, supervised, playground = claim.groups()
    expected = {"alpha_widget(": alpha.split("/"), "tau_widget(": [tau], "lam_widget(": lam.split(" and "),
                "queue_widget(": [queue], "byol_widget(": [byol], "supervised_targets_widget(": [supervised],
                "playground(": [playground], "interact(masking_plot": [masking], "interact(ablation_plot": [ablation]}
    for call, listed in expected.items():
        using = [n for n, p in NOTEBOOKS.items() if call in _outputs(p)[1]]
        assert using == listed, f"{call} is used in {using}, docs/index.md says {listed}"


def test_every_committed_widget_carries_a_picture_of_its_default_state():
    """docs/index.md: each widget "is saved with a picture of its default state" (what GitHub and the site show)."""
    assert "each is saved with a picture of its default state" in " ".join(LANDING.split())
    widgets = 0
    for number, path in NOTEBOOKS.items():
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            for out in cell.get("outputs", []):
                if "application/vnd.jupyter.widget-view+json" in out.get("data", {}):
                    widgets += 1
                    assert "image/png" in out["data"], f"a widget of notebook {number} has no picture"
    assert widgets >= 10


def test_exercise_claim_matches_the_notebooks():
    """docs/index.md: notebooks 01-10 have exercises with checkers; 00 checks the setup instead."""
    assert "Notebooks 01-10 show the math tied to the paper's equations and have exercises" in " ".join(LANDING.split())
    for number, path in NOTEBOOKS.items():
        code = _outputs(path)[1]
        has_exercise = bool(re.search(r"YOUR CODE|Your code", code)) and "check_" in code
        assert has_exercise == (number != "00"), f"notebook {number}: exercise {'missing' if number != '00' else 'unexpected'}"


def test_every_notebook_is_committed_with_full_mode_outputs():
    for number, path in NOTEBOOKS.items():
        assert "mode: full" in _outputs(path)[0], f"notebook {number} was not committed from a full-mode run"


def test_speed_against_lightly_equals_the_committed_benchmark():
    """docs/results.md's and benchmarks/README.md's ratios are results/benchmarks/vs_lightly_cpu.json's, and it used the fused kernels."""
    bench = json.loads((ROOT / "results/benchmarks/vs_lightly_cpu.json").read_text(encoding="utf-8"))
    assert bench["fused_kernels"] and bench["threads"] == 1

    def ratio(method: str, layout: str = "") -> str:
        return f"{bench['rows'][f'imix-teach {method} + i-Mix' + (f' ({layout})' if layout else '')]['ratio']:.2f}x"

    for row, method in zip(_table(RESULTS, "## Speed on a CPU against lightly"), ("npair", "moco")):
        assert list(row.values())[1:] == [ratio(method), ratio(method, "unfused"), ratio(method, "plain"),
                                          ratio(method, "nchw")]
    bench_readme = (ROOT / "benchmarks" / "README.md").read_text(encoding="utf-8")
    table = {r["imix-teach"].strip("*"): r for r in _table(bench_readme, "### Result on CPU (")}
    for method in ("npair", "moco"):
        for layout in ("", "unfused", "plain", "nchw"):
            assert table[f"{method} + i-Mix, {layout or 'default'}"]["ratio"].strip("*") == ratio(method, layout)
