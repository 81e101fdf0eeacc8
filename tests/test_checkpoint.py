"""Checkpoints a user can trust: plain data, atomic, named errors, never a bad state saved."""
from __future__ import annotations

import errno
import os
import pickle

import pytest
import torch

from imix_teach.checkpoint import CheckpointError
from imix_teach.methods import build_method
from imix_teach.models import TabularMLP
from imix_teach.train import NonFiniteLossError, ResumeWarning, lr_lambda, pretrain
from helpers import pretrain_flat

DATA = torch.randn(64, 5, generator=torch.Generator().manual_seed(0))


def _noise(x, g):
    return x + 0.1 * torch.randn(x.shape, generator=g, device=x.device)


def _method():
    torch.manual_seed(0)
    return build_method("npair", TabularMLP(5, widths=(16, 16, 32)), proj_hidden=16, proj_dim=8)


def _train(path, **kwargs):
    settings = dict(epochs=1, batch_size=16, progress=False, checkpoint=path)
    return pretrain_flat(_method(), DATA, kwargs.pop("augment", _noise), **{**settings, **kwargs})


class _Planted:
    """Unpickling this would run code (writes a marker file): weights_only loading must refuse."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_crafted_file_is_refused_without_running_its_code(tmp_path):
    path, marker = tmp_path / "ckpt.pt", tmp_path / "pwned"
    with open(path, "wb") as fh:
        pickle.dump({"epoch": 1, "payload": _Planted(str(marker))}, fh)
    with pytest.raises(CheckpointError, match="ckpt.pt.*resume=False"):
        _train(path)
    assert not marker.exists()


def test_saved_state_is_plain_data_and_loads_weights_only(tmp_path):
    _train(tmp_path / "ckpt.pt")
    state = torch.load(tmp_path / "ckpt.pt", weights_only=True)
    assert state["epoch"] == 1 and state["config"]["method"] == "npair"
    assert os.stat(tmp_path / "ckpt.pt").st_mode & 0o777 == 0o644


def test_a_symlink_planted_at_the_temporary_name_is_refused_not_followed(tmp_path, monkeypatch):
    """The name atomic_write will use is made predictable (a fixed uuid), and a symlink planted there."""
    import uuid

    from imix_teach import files

    fixed = uuid.UUID(int=0xABCDEF12 << 96)
    monkeypatch.setattr(files.uuid, "uuid4", lambda: fixed)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    planted = tmp_path / f".ckpt.pt.{os.getpid()}.{fixed.hex[:8]}.tmp"
    planted.symlink_to(victim)
    with pytest.raises(CheckpointError, match=r"could not write .*ckpt\.pt \(File exists\)"):
        _train(tmp_path / "ckpt.pt")
    assert victim.read_text() == "keep me" and not (tmp_path / "ckpt.pt").exists()
    monkeypatch.undo()  # a fresh name: the same write succeeds and leaves no temporary file
    _train(tmp_path / "ckpt2.pt")
    assert (tmp_path / "ckpt2.pt").exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("damage", ["empty", "truncated", "garbage"])
def test_a_damaged_checkpoint_names_the_file_and_the_way_out_before_training(tmp_path, damage):
    path = tmp_path / "ckpt.pt"
    _train(path)
    data = path.read_bytes()
    path.write_bytes({"empty": b"", "truncated": data[: len(data) // 2], "garbage": b"not a checkpoint" * 10}[damage])
    calls = []

    def counting(x, g):
        calls.append(1)
        return _noise(x, g)

    with pytest.raises(CheckpointError, match=r"ckpt\.pt.*resume=False"):
        _train(path, augment=counting)
    assert calls == []  # nothing was trained before the error
    _train(path, resume=False)  # the way out works
    assert torch.load(path, weights_only=True)["epoch"] == 1


def test_an_unwritable_place_fails_before_training(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(CheckpointError, match="writable checkpoint path"):
        _train(blocker / "ckpt.pt")  # its folder is a file: no checkpoint can ever be written there


def test_a_read_only_folder_fails_before_training(tmp_path, monkeypatch):
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    with pytest.raises(CheckpointError, match="Read-only file system.*writable checkpoint path"):
        _train(tmp_path / "ckpt.pt", augment=lambda x, g: pytest.fail("trained before checking the folder"))


def test_a_full_disk_keeps_the_previous_checkpoint_and_says_so(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    _train(path)
    before = path.read_bytes()

    def full_disk(obj, fh, *args, **kwargs):
        fh.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(CheckpointError, match="No space left.*previous checkpoint.*intact"):
        _train(path, epochs=2)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.pt"]  # no temporary file left


def test_exploding_weights_never_replace_the_last_good_checkpoint(tmp_path):
    path = tmp_path / "ckpt.pt"
    _train(path, batch_size=64)  # one step per epoch; epoch 1 is good
    with pytest.warns(ResumeWarning), pytest.raises(NonFiniteLossError, match="weights.*last good checkpoint"):
        # The loss of the step is finite (computed before the update); the update is not.
        _train(path, batch_size=64, epochs=3, lr=1e37, log_every=1)
    state = torch.load(path, weights_only=True)
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() and v.abs().max() < 1e6 for v in state["method"].values() if v.is_floating_point())


def test_resuming_with_a_lower_lr_applies_it_and_says_so(tmp_path):
    path = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        _train(path, epochs=2, lr=0.2, warmup_epochs=0, callback=_stop_after_first_epoch)
    with pytest.warns(ResumeWarning, match=r"lr 0\.2 -> 0\.05"):
        history = _train(path, epochs=2, lr=0.05, warmup_epochs=0, log_every=1)
    # One logged row from the first run (its last step), then steps 5..8 at the new base lr.
    assert history.lr[1:] == pytest.approx([0.05 * lr_lambda(0, 8)(s) for s in (5, 6, 7, 8)])
    assert torch.load(path, weights_only=True)["config"]["lr"] == 0.05


def _stop_after_first_epoch(epoch, history):
    raise KeyboardInterrupt


def test_resuming_another_run_is_refused_with_the_way_out(tmp_path):
    path = tmp_path / "ckpt.pt"
    _train(path)
    for change in (dict(batch_size=32), dict(seed=5), dict(alpha=1.0)):
        with pytest.raises(ValueError, match="another run.*resume=False"):
            _train(path, **change)
