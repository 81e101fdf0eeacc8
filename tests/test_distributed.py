"""Contrast across processes (SPEC §6) and training under torchrun, on 2 CPU processes with gloo."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import distributed_workers as dw
from imix_teach import distributed
from imix_teach.train import pretrain
from helpers import pretrain_flat

ROOT = Path(__file__).resolve().parents[1]


def test_one_process_gather_and_targets_are_identities():
    x = torch.randn(4, 3, requires_grad=True)
    assert distributed.gather(x) is x
    assert distributed.local_targets(None, 4) is None
    t = torch.eye(4)
    assert distributed.local_targets(t, 4) is t
    assert distributed.world_size() == 1 and distributed.rank() == 0


TRAINED = ["npair", "moco", "byol"]


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> Path:
    """One pair of processes runs the workers of the three tests below, in turn."""
    out = tmp_path_factory.mktemp("two_ranks")
    dw.spawn(dw.all_workers, out, TRAINED)
    return out


@pytest.mark.slow
def test_a_pretrain_that_joined_the_process_group_leaves_it(two_ranks):
    for rank in range(dw.WORLD):
        assert torch.load(two_ranks / f"alone{rank}.pt") == dict(before=False, after=False)


@pytest.mark.slow
def test_per_rank_losses_and_gradients_equal_the_one_process_ones(two_ranks):
    for rank in range(dw.WORLD):
        errors = torch.load(two_ranks / f"losses{rank}.pt")
        assert set(errors) == {"npair", "moco", "simclr", "npair+mix", "moco+mix", "simclr+mix"}
        for name, err in errors.items():
            assert err < 1e-12, (rank, name, err)


@pytest.mark.slow
def test_moco_shuffle_bn_keys_equal_a_reference_that_shuffles_by_hand(two_ranks):
    """The global batch is permuted, each rank encodes one block (its BN sees that block's statistics),
    and the keys are put back in the global batch's order: here done by hand in one process."""
    import torch.nn.functional as F

    method = dw.make_method("moco", shuffle_bn=True).train()
    s = dw.SHUFFLED
    everything = dw._global(s["seed"], dw.WORLD * s["n"], 5).float()
    order = torch.randperm(len(everything), generator=torch.Generator().manual_seed(s["order_seed"]))

    def keys(block):
        with torch.no_grad():
            return F.normalize(method.key_projector(method.key_encoder(everything[block])), dim=1)

    shuffled = torch.cat([keys(block) for block in order.view(dw.WORLD, -1)])
    reference = torch.empty_like(shuffled)
    reference[order] = shuffled  # row j of `shuffled` is sample order[j]
    unshuffled = torch.cat([keys(block) for block in torch.arange(len(everything)).view(dw.WORLD, -1)])
    assert (reference - unshuffled).abs().max() > 1e-3, "the check must tell shuffled BN from plain per-rank BN"
    for rank in range(dw.WORLD):
        got = torch.load(two_ranks / f"shuffle{rank}.pt")
        assert torch.allclose(got, reference, atol=1e-6), (rank, float((got - reference).abs().max()))


def test_two_processes_train_to_the_weights_of_one_process_on_the_global_batch(two_ranks):
    worst = {}
    for name in TRAINED:
        single = dw.make_method(name)
        pretrain_flat(single, dw.DATA, dw.same_views, **dw.TRAIN)
        for rank in range(dw.WORLD):
            two = torch.load(two_ranks / f"{name}{rank}.pt")
            for key, value in single.state_dict().items():
                if value.is_floating_point():
                    worst[name] = max(worst.get(name, 0.0), float((two[key] - value).abs().max()))
                else:
                    assert torch.equal(two[key], value), (name, rank, key)
    print("largest |2-process - 1-process| over weights, EMA twins and queue:", worst)
    assert max(worst.values()) < 3e-5, worst  # float32 sums in another order: about 1e-5


def test_two_process_imix_resume_equals_uninterrupted_and_queues_agree(two_ranks):
    for rank in range(dw.WORLD):
        got = torch.load(two_ranks / f"resume{rank}.pt")
        for key, value in got["straight"].items():
            if "running_" in key or "num_batches" in key:
                continue  # without SyncBN each rank's BN statistics are its own; rank 0's are saved
            assert torch.equal(value, got["resumed"][key]), (rank, key)
        assert torch.equal(got["queues"][0], got["queues"][1])
    # Rank 0 alone writes: one checkpoint, no temporary files left behind.
    assert sorted(p.name for p in (two_ranks / "resumed").iterdir()) == ["ckpt.pt"]


def _torchrun(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests")]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)


@pytest.mark.slow
def test_a_failing_rank_stops_every_rank_with_its_error():
    # Stopped, not hung until the 10-minute collective timeout: a hang raises TimeoutExpired (a generous bound
    # on a busy machine, far below the collective's).
    done = _torchrun(str(ROOT / "tests" / "distributed_workers.py"), "fail", timeout=240)
    assert done.returncode != 0
    assert "rank 1 broke on purpose" in done.stdout + done.stderr


@pytest.mark.slow
def test_torchrun_pretrain_command_trains_evaluates_once_and_resumes(tmp_path):
    out = tmp_path / "run"
    args = ["-m", "imix_teach", "pretrain", "--dataset", "digits", "--method", "moco", "--alpha", "1",
            "--epochs", "1", "--batch-size", "64", "--per-class", "30", "--out", str(out), "--no-progress",
            "--probe-epochs", "5"]
    done = _torchrun(*args)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("test top-1") == 1  # evaluated by rank 0 only
    assert {"checkpoint.pt", "history.json", "scores.json", "config.json"} <= {p.name for p in out.iterdir()}
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and state["config"]["world_size"] == 2
    again = _torchrun(*args[:args.index("--epochs") + 1], "2", *args[args.index("--epochs") + 2:])
    assert again.returncode == 0, again.stderr[-3000:]
    assert "changed settings" in again.stderr and "epochs 1 -> 2" in again.stderr
    assert torch.load(out / "checkpoint.pt", weights_only=True)["epoch"] == 2
