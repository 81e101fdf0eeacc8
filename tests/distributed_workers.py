"""Code that runs inside each of 2 CPU processes (gloo) for tests/test_distributed.py.

Each worker joins the group through torchrun's environment variables (RANK, WORLD_SIZE,
MASTER_ADDR, MASTER_PORT), exactly the path ``pretrain`` takes under torchrun, and writes what
the parent checks into ``out`` (a folder).
"""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from imix_teach import distributed, losses
from imix_teach.methods import build_method
from imix_teach.models import TabularMLP
from helpers import pretrain_flat

WORLD = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(worker, out: Path, *args) -> None:
    """Run ``worker(rank, out, *args)`` in 2 processes joined like torchrun joins them.

    Two ports: a worker that joins a second group (``all_workers``) rendezvous on the second one. On the
    first port, a rank that left the first group early could read rank 0's old store, still up, and
    gloo would dial a pair that is gone ("connectFullMesh failed ... Connect timeout", seen in CI).
    """
    ports = [free_port()]
    while len(ports) < 2:
        ports += [p for p in [free_port()] if p not in ports]
    torch.multiprocessing.spawn(_entry, args=(ports, worker, str(out), *args), nprocs=WORLD, join=True)


def _entry(rank: int, ports: list[int], worker, out: str, *args) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(ports[0]), SECOND_PORT=str(ports[1]), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    try:
        worker(rank, Path(out), *args)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


# ----------------------------------------------------------------------------- losses (SPEC §6)
def _global(seed: int, *shape: int) -> torch.Tensor:
    """The same float64 tensor on every rank (and in the one-process reference)."""
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _mixed(n: int, seed: int) -> torch.Tensor:
    """Local i-Mix targets lam * I + (1 - lam) * I[perm] with a per-sample lam."""
    g = torch.Generator().manual_seed(seed)
    lam = torch.rand(n, 1, generator=g, dtype=torch.float64)
    eye = torch.eye(n, dtype=torch.float64)
    return lam * eye + (1 - lam) * eye[torch.randperm(n, generator=g)]


def _blockdiag(blocks: list[torch.Tensor]) -> torch.Tensor:
    return torch.block_diag(*blocks)


def losses_worker(rank: int, out: Path) -> None:
    """Mean over ranks of each rank's loss vs the one-process loss on the whole batch; gradients too."""
    if not dist.is_initialized():
        dist.init_process_group("gloo")
    n, d, k, tau = 4, 6, 5, 0.3
    errors = {}
    for mixed in (False, True):
        local = [_mixed(n, 10 + r) if mixed else torch.eye(n, dtype=torch.float64) for r in range(WORLD)]
        errors.update({f"{name}{'+mix' if mixed else ''}": err
                       for name, err in _npair_moco(rank, n, d, k, tau, local).items()})
        errors[f"simclr{'+mix' if mixed else ''}"] = _simclr(rank, n, d, tau, mixed)
    torch.save(errors, out / f"losses{rank}.pt")


def _npair_moco(rank: int, n: int, d: int, k: int, tau: float, local: list[torch.Tensor]) -> dict[str, float]:
    anchors, positives, queue = _global(1, WORLD * n, d), _global(2, WORLD * n, d), _global(3, k, d)
    full_targets = _blockdiag(local)
    errs = {}
    for name in ("npair", "moco"):
        a_full = anchors.clone().requires_grad_()
        p_full = positives.clone().requires_grad_()
        a = anchors[rank * n:(rank + 1) * n].clone().requires_grad_()
        p = positives[rank * n:(rank + 1) * n].clone().requires_grad_()
        targets = distributed.local_targets(local[rank], n)
        if name == "npair":
            ref = losses.npair_loss(a_full, p_full, full_targets, tau)
            mine = losses.npair_loss(a, distributed.gather(p), targets, tau)
        else:
            ref = losses.moco_loss(a_full, p_full, queue, full_targets, tau)
            mine = losses.moco_loss(a, distributed.gather(p), queue, targets, tau)
        ref.backward()
        mine.backward()
        # DDP averages gradients over ranks; the one-process loss is the mean of the ranks' losses.
        errs[name] = max(abs(float(distributed.all_mean(mine)) - float(ref)),
                         float((a.grad / WORLD - a_full.grad[rank * n:(rank + 1) * n]).abs().max()))
        if name == "npair":  # keys get no gradient in MoCo
            errs[name] = max(errs[name], float((p.grad / WORLD - p_full.grad[rank * n:(rank + 1) * n]).abs().max()))
    return errs


def _simclr(rank: int, n: int, d: int, tau: float, mixed: bool) -> float:
    """Rows of rank r are [view1_r; view2_r]; the one-process batch stacks those blocks in rank order."""
    clean = _global(4, WORLD * 2 * n, d)
    anchors = _global(5, WORLD * 2 * n, d) if mixed else clean
    blocks = [losses.simclr_targets(n).double() for _ in range(WORLD)]
    if mixed:  # mix each rank's rows with partners from its own rows, as i-Mix does
        blocks = [_mixed(2 * n, 20 + r) @ b for r, b in enumerate(blocks)]
        blocks = [b * (1 - torch.eye(2 * n, dtype=torch.float64)) for b in blocks]
        blocks = [b / b.sum(1, keepdim=True) for b in blocks]
    c_full = clean.clone().requires_grad_()
    a_full = anchors.clone().requires_grad_() if mixed else c_full
    ref = losses.simclr_loss(a_full, c_full, _blockdiag(blocks), tau)
    ref.backward()
    rows = slice(rank * 2 * n, (rank + 1) * 2 * n)
    c = clean[rows].clone().requires_grad_()
    a = anchors[rows].clone().requires_grad_() if mixed else c
    mine = losses.simclr_loss(a, distributed.gather(c), distributed.local_targets(blocks[rank], 2 * n), tau,
                              offset=rank * 2 * n)
    mine.backward()
    err = max(abs(float(distributed.all_mean(mine)) - float(ref)),
              float((c.grad / WORLD - c_full.grad[rows]).abs().max()))
    if mixed:
        err = max(err, float((a.grad / WORLD - a_full.grad[rows]).abs().max()))
    return err


# ----------------------------------------------------------------------------- training
DATA = torch.randn(64, 5, generator=torch.Generator().manual_seed(0))


def same_views(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A deterministic 'augmentation', so 2 processes and 1 process see the very same views."""
    return x * 1.1 + 0.05 * x.roll(1, dims=1)


def noisy_views(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return x + 0.1 * torch.randn(x.shape, generator=generator, device=x.device)


def make_method(name: str, **extra):
    torch.manual_seed(0)
    kwargs = dict(queue_size=48, momentum=0.9, **extra) if name == "moco" else {}
    if name == "byol":
        kwargs = dict(momentum=0.9, pred_hidden=16)
    return build_method(name, TabularMLP(5, widths=(16, 16, 32)), proj_hidden=16, proj_dim=8, **kwargs)


TRAIN = dict(epochs=2, batch_size=16, lr=0.05, progress=False, seed=1)


def training_worker(rank: int, out: Path, names: list[str]) -> None:
    """Plain methods, SyncBN, the same views: 2 processes should end where 1 process ends."""
    for name in names:
        method = make_method(name)
        pretrain_flat(method, DATA, same_views, **TRAIN)
        torch.save(method.state_dict(), out / f"{name}{rank}.pt")


def resume_worker(rank: int, out: Path) -> None:
    """i-Mix MoCo with shuffle-BN: uninterrupted vs interrupted-then-resumed; queues equal across ranks."""
    settings = dict(TRAIN, epochs=3, alpha=1.0, sync_bn=False)  # shuffle-BN is what keeps the keys' BN honest here
    straight = make_method("moco", shuffle_bn=True)
    pretrain_flat(straight, DATA, noisy_views, checkpoint=out / "straight" / "ckpt.pt", **settings)

    class Killed(Exception):
        pass

    def die(epoch, history):
        if epoch == 0:
            raise Killed  # as if the process died right after the first checkpoint

    try:
        pretrain_flat(make_method("moco", shuffle_bn=True), DATA, noisy_views, checkpoint=out / "resumed" / "ckpt.pt",
                      callback=die, **settings)
    except Killed:
        pass
    resumed = make_method("moco", shuffle_bn=True)  # a restarted process rebuilds the model from scratch
    pretrain_flat(resumed, DATA, noisy_views, checkpoint=out / "resumed" / "ckpt.pt", **settings)
    queues = [torch.empty_like(resumed.queue) for _ in range(WORLD)]
    dist.all_gather(queues, resumed.queue)
    torch.save(dict(straight=straight.state_dict(), resumed=resumed.state_dict(), queues=queues),
               out / f"resume{rank}.pt")


def alone_worker(rank: int, out: Path) -> None:
    """``pretrain`` under torchrun with no group yet: it joins one for the run and leaves the one it joined."""
    before = dist.is_initialized()
    pretrain_flat(make_method("npair"), DATA, same_views, **dict(TRAIN, epochs=1))
    torch.save(dict(before=before, after=dist.is_initialized()), out / f"alone{rank}.pt")


SHUFFLED = dict(seed=6, n=8, order_seed=3)  # the global batch of 2 x 8 views and the shuffle's generator


def shuffle_bn_worker(rank: int, out: Path) -> None:
    """MoCo's keys with shuffle-BN: each rank's own 8 views go in, the 16 global keys come out."""
    method = make_method("moco", shuffle_bn=True).train()
    views = _global(SHUFFLED["seed"], WORLD * SHUFFLED["n"], 5).float().chunk(WORLD)[rank]
    keys = method.keys(views, torch.Generator().manual_seed(SHUFFLED["order_seed"]))
    torch.save(keys, out / f"shuffle{rank}.pt")


def all_workers(rank: int, out: Path, names: list[str]) -> None:
    """Every check above in one pair of processes (starting them is most of the cost).

    One session (``distributed.session``) joins the process group from torchrun's variables and holds it
    for every check; each ``pretrain`` inside uses it (a ``pretrain`` alone would join and leave its own).
    """
    alone_worker(rank, out)
    os.environ["MASTER_PORT"] = os.environ["SECOND_PORT"]  # a fresh rendezvous (see spawn)
    with distributed.session(torch.device("cpu")):
        training_worker(rank, out, names)
        resume_worker(rank, out)
        losses_worker(rank, out)
        shuffle_bn_worker(rank, out)


def failing_main() -> None:
    """torchrun entry: rank 1 fails after its first epoch; rank 0 would wait for it forever."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    def fail(epoch, history):
        if dist.get_rank() == 1:
            raise RuntimeError("rank 1 broke on purpose")

    pretrain_flat(make_method("npair"), DATA, noisy_views, callback=fail, **dict(TRAIN, epochs=50))


if __name__ == "__main__" and sys.argv[1:] == ["fail"]:
    failing_main()
