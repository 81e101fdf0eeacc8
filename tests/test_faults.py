"""Faults a real user meets: kill -9, two writers at once, a full disk, a read-only folder, corrupt files.

Each test runs real processes (``subprocess``) on scikit-learn's digits (no files needed), so the
kernel's own behaviour is tested: a killed process leaves its files as they were and drops its
locks. About 30 s on 2 cores.
"""
from __future__ import annotations

import json
import gzip
import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from helpers import tiny_preset
from imix_teach import reproduce as rp

ROOT = Path(__file__).resolve().parents[1]

# A tiny reproduce grid in a fresh process: prints one line per run it executed.
WORKER = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(1)
    sys.path.insert(0, "tests")
    from imix_teach import reproduce as rp
    from helpers import tiny_preset
    out, methods, epochs = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
    print("start", flush=True)
    records = rp.reproduce(tiny_preset(epochs).grid(["image"], methods, 1), out, progress=False,
                           on_run_done=lambda r: print("ran", r["key"], flush=True))
    print("found", len(records), flush=True)
""")


def _python(code: str, *args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    return subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _start(out: Path, methods: str, epochs: int = 1) -> subprocess.Popen:
    return _python(WORKER, str(out), methods, str(epochs))


def _finish(proc: subprocess.Popen) -> list[str]:
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr[-3000:]
    return stdout.splitlines()


def _saved_keys(out: Path) -> list[str]:
    return [r["key"] for r in json.loads((out / "runs.json").read_text())["runs"]]


@pytest.mark.slow
def test_two_processes_on_one_folder_lose_no_record_and_run_nothing_twice(tmp_path):
    # Two grids that share the npair runs, at once on one output folder: another process and this one.
    other = _start(tmp_path, "npair")
    assert other.stdout.readline() == "start\n"  # both grids really run at the same time
    ran = []
    records = rp.reproduce(tiny_preset().grid(["image"], ["byol", "npair"], 1), tmp_path, progress=False,
                           on_run_done=lambda r: ran.append(r["key"]))
    lines = _finish(other)
    ran += [line.split()[1] for line in lines if line.startswith("ran ")]
    assert lines[-1] == "found 2" and len(records) == 4
    keys = _saved_keys(tmp_path)
    assert len(keys) == len(set(keys)) == 4
    assert sorted(ran) == sorted(keys), "each run executed exactly once across both processes"
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob(".*.tmp"))


@pytest.mark.slow
def test_kill_9_at_a_random_point_of_reproduce_then_resume_completes_the_grid(tmp_path):
    proc = _start(tmp_path, "npair,byol", epochs=2)
    # Killed where the grid reports it has got to (after 0, 1 or 2 of its 4 runs: mid-run, or just after a
    # record was written), not after a sleep that a fast machine outruns.
    after = random.Random(0).randint(0, 2)
    for line in proc.stdout:
        if line == "start\n" and after == 0 or line.startswith("ran ") and (after := after - 1) == 0:
            break
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the grid finished before it was killed"
    saved = _saved_keys(tmp_path) if (tmp_path / "runs.json").exists() else []  # a whole, readable file
    ran = []
    records = rp.reproduce(tiny_preset(epochs=2).grid(["image"], ["npair", "byol"], 1), tmp_path, progress=False,
                           on_run_done=lambda r: ran.append(r["key"]))
    assert len(records) == 4 and len(set(_saved_keys(tmp_path))) == 4
    assert sorted(saved + ran) == sorted(r["key"] for r in records), "runs saved before the kill are not recomputed"


def _pretrain_run(checkpoint: str, epochs: int = 4) -> None:
    """A tiny MoCo + i-Mix pretraining with a checkpoint; the final weights go to ``<checkpoint>.final``."""
    from imix_teach.methods import build_method
    from imix_teach.models import TabularMLP
    from imix_teach.train import Mixing, Optim, Runtime, pretrain

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = build_method("moco", TabularMLP(5, widths=(16, 16, 32)), proj_hidden=16, proj_dim=8, queue_size=32)
        data = torch.randn(128, 5, generator=torch.Generator().manual_seed(0))
        pretrain(model, data, lambda x, g: x + 0.1 * torch.randn(x.shape, generator=g),
                 optim=Optim(epochs=epochs, batch_size=16), mixing=Mixing(alpha=1.0), runtime=Runtime(progress=False),
                 checkpoint=checkpoint, callback=lambda e, h: print("epoch", e, flush=True))
        torch.save(model.state_dict(), f"{checkpoint}.final")
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_kill_9_during_pretrain_then_resume_is_bitwise_equal_to_an_uninterrupted_run(tmp_path):
    killed = _python("import sys; sys.path.insert(0, 'tests'); from test_faults import _pretrain_run; "
                     "_pretrain_run(sys.argv[1])", str(tmp_path / "b.pt"))
    at = random.Random(1).randint(0, 2)  # after epoch 1, 2 or 3 of 4 has reported (its checkpoint is on disk)
    for line in killed.stdout:
        if line == f"epoch {at}\n":
            killed.send_signal(signal.SIGKILL)
            break
    killed.communicate()
    assert killed.returncode == -signal.SIGKILL
    _pretrain_run(str(tmp_path / "b.pt"))  # resumes from what the killed process left
    _pretrain_run(str(tmp_path / "a.pt"))  # uninterrupted
    a = torch.load(tmp_path / "a.pt.final", weights_only=True)
    b = torch.load(tmp_path / "b.pt.final", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_full_disk_keeps_the_old_runs_json_and_leaves_no_temporary_file(tmp_path):
    resource = pytest.importorskip("resource")
    store = rp.ResultStore(tmp_path / "runs.json")
    store.add({"key": "a", "value": 1})
    before = (tmp_path / "runs.json").read_bytes()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (len(before) + 100, hard))  # no file may grow past this
    try:
        with pytest.raises(OSError, match="runs.json.*free disk space"):
            store.add({"key": "b", "value": "x" * 10_000})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert (tmp_path / "runs.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs.json", "runs.json.lock"]


def test_an_unwritable_output_folder_is_named_before_any_run(tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    with pytest.raises(PermissionError, match="a-file.*not a writable folder"):
        rp.reproduce(tiny_preset().grid(["image"], ["npair"], 1), blocked / "out", progress=False)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write to read-only folders")
def test_a_read_only_output_folder_is_named_before_any_run(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    out.chmod(0o555)
    try:
        with pytest.raises(PermissionError, match="results.*not a writable folder"):
            rp.reproduce(tiny_preset().grid(["image"], ["npair"], 1), out, progress=False)
    finally:
        out.chmod(0o755)


def test_a_folder_that_refuses_writes_is_named_before_any_run_also_as_root(tmp_path, monkeypatch):
    """As root (CI, containers) chmod does not stop writes, so the refusal is the file system's, stood in for."""
    from imix_teach.reproduce import store

    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(store, "atomic_write", refuse)
    ran = []
    with pytest.raises(PermissionError, match="results.*not a writable folder.*Permission denied"):
        rp.reproduce(tiny_preset().grid(["image"], ["npair"], 1), tmp_path / "results", progress=False,
                     on_run_done=ran.append)
    assert ran == []


def test_a_corrupt_runs_json_names_itself_and_the_fix(tmp_path):
    for text in ("{not json", '{"runs": [{"no key": 1}]}', "", "[1, 2]"):
        (tmp_path / "runs.json").write_text(text)
        with pytest.raises(ValueError, match=r"runs\.json cannot be read.*move it aside"):
            rp.reproduce(tiny_preset().grid(["image"], ["npair"], 1), tmp_path, progress=False)


# ----------------------------------------------------------------------------- downloads and data files
class _Server:
    """A local HTTP server: serves ``files[path]``; with ``cut`` it announces every file whole but
    sends only that many bytes, then drops the connection (a lost connection mid-download)."""

    def __init__(self) -> None:
        import http.server
        import threading

        self.files: dict[str, bytes] = {}
        self.cut: int | None = None
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_HEAD(self) -> None:  # noqa: N802 (http.server's names)
                self.send_response(200)
                self.send_header("Content-Length", str(len(server.files[self.path])))
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802
                self.do_HEAD()
                body = server.files[self.path]
                self.wfile.write(body if server.cut is None else body[: server.cut])

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"


@pytest.fixture()
def server():
    s = _Server()
    yield s
    s.httpd.shutdown()


def _gzip_csv(rows: int = 200) -> bytes:
    import gzip

    return gzip.compress("".join(f"{i},{i % 7 + 1}\n" for i in range(rows)).encode(), mtime=0)


def _tar_gz() -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        data = os.urandom(50_000)  # incompressible, so a cut lands inside the member
        info = tarfile.TarInfo("repo/recordings/0_x_0.wav")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("name, make", [("data.csv.gz", _gzip_csv), ("archive.tar.gz", _tar_gz)])
def test_a_cut_or_damaged_download_is_never_promoted(tmp_path, server, name, make):
    from imix_teach.data.base import fetch, make_source

    src = make_source("demo", tmp_path, True)
    body = make()
    server.files["/" + name] = body
    dest = tmp_path / name
    for cut in (len(body) // 2, len(body) - 5):  # lost connection: urllib sees a short read
        server.cut = cut
        with pytest.raises(FileNotFoundError, match=f"{name}.*downloading it failed"):
            fetch(src, f"{server.url}/{name}", dest, name)
        assert list(tmp_path.iterdir()) == [], "neither the file nor a partial one is left"
    server.cut = None
    damaged = bytearray(body)
    damaged[len(body) // 2] ^= 0xFF  # the server sends every byte, but one of them is wrong
    server.files["/" + name] = bytes(damaged)
    with pytest.raises(FileNotFoundError, match="not a complete archive"):
        fetch(src, f"{server.url}/{name}", dest, name)
    assert list(tmp_path.iterdir()) == []
    server.files["/" + name] = body
    assert fetch(src, f"{server.url}/{name}", dest, name, size=len(body)).read_bytes() == body
    assert sorted(p.name for p in tmp_path.iterdir()) == [name, name + ".sha256"]


def test_size_and_checksum_mismatches_are_named(tmp_path, server):
    import hashlib

    from imix_teach.data.base import fetch, make_source

    src, body = make_source("demo", tmp_path, True), _gzip_csv()
    server.files["/a.gz"] = body
    with pytest.raises(FileNotFoundError, match="expected 9"):
        fetch(src, f"{server.url}/a.gz", tmp_path / "a.gz", "a.gz", size=9)
    with pytest.raises(FileNotFoundError, match="sha256 is not the expected"):
        fetch(src, f"{server.url}/a.gz", tmp_path / "a.gz", "a.gz", sha256="0" * 64)
    good = hashlib.sha256(body).hexdigest()
    assert fetch(src, f"{server.url}/a.gz", tmp_path / "a.gz", "a.gz", sha256=good).is_file()


def test_ctrl_c_during_a_download_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv

    from imix_teach.data.base import fetch, make_source

    def interrupted(url, root, filename, md5=None):
        Path(root, filename).write_bytes(_gzip_csv()[:100])
        raise KeyboardInterrupt

    monkeypatch.setattr(tv, "download_url", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fetch(make_source("demo", tmp_path, True), "http://example.invalid/a.gz", tmp_path / "a.gz", "a.gz")
    assert list(tmp_path.iterdir()) == []


def test_a_downloaded_covtype_file_changed_afterwards_is_not_loaded(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv

    from imix_teach.data import load, tabular

    def download(url, root, filename, md5=None):
        Path(root, filename).write_bytes(gzip.compress(b"".join(
            b",".join([b"1"] * 54 + [str(i % 7 + 1).encode()]) + b"\n" for i in range(16_000)), mtime=0))

    monkeypatch.setattr(tv, "download_url", download)
    monkeypatch.setattr(tabular, "COVTYPE_SHA256", None)  # a synthetic download, not UCI's published file
    first = load("covtype", root=tmp_path, download=True, per_class=5)  # downloaded, checked, digest kept
    path = tmp_path / "covtype" / "covtype.data.gz"
    assert (tmp_path / "covtype" / "covtype.data.gz.sha256").exists() and len(first) > 0
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes()).replace(b"1,1,", b"9,9,", 1), mtime=0))
    with pytest.raises(ValueError, match=r"covtype\.data\.gz cannot be used: its sha256 is not the expected"):
        load("covtype", root=tmp_path, download=False, per_class=5)


@pytest.mark.parametrize("content", [b"", b"\x1f\x8b\x08\x00 cut", b"not gzip at all\n"])
def test_a_broken_covtype_file_names_itself(tmp_path, content):
    from imix_teach.data import load

    (tmp_path / "covtype").mkdir()
    (tmp_path / "covtype" / "covtype.data.gz").write_bytes(content)
    with pytest.raises((ValueError, RuntimeError), match=r"covtype\.data\.gz.*(delete it|malformed)"):
        load("covtype", root=tmp_path, download=False)


def test_two_downloads_of_one_file_at_once_do_not_collide(tmp_path, server):
    from concurrent.futures import ThreadPoolExecutor

    from imix_teach.data.base import fetch, make_source

    body = _tar_gz()
    server.files["/a.tar.gz"] = body
    src, dest = make_source("demo", tmp_path, True), tmp_path / "a.tar.gz"
    with ThreadPoolExecutor(2) as pool:
        done = list(pool.map(lambda _: fetch(src, f"{server.url}/a.tar.gz", dest, "a.tar.gz"), range(2)))
    assert done == [dest, dest] and dest.read_bytes() == body
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz", "a.tar.gz.sha256"]
