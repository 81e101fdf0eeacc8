"""``imix-teach pretrain``: one method on one dataset, on one process or under torchrun.

    imix-teach pretrain --dataset digits --method npair --alpha 1 --epochs 15 --out runs/npair
    torchrun --standalone --nproc_per_node 2 -m imix_teach pretrain --dataset digits --method moco --out runs/moco

The options are the fields of a :class:`~imix_teach.run_config.RunConfig` (their defaults too);
:func:`imix_teach.engine.run` trains it. Writes ``<out>/checkpoint.pt`` (every epoch, resumable),
``<out>/history.json``, ``<out>/config.json`` (the run's whole description) and, unless
``--no-eval``, ``<out>/scores.json`` (linear probe and kNN test top-1, evaluated once, by rank 0).
Rerunning the same command resumes from the checkpoint.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from . import distributed, engine
from .config import pick_device
from .data import DATASETS
from .files import write_json
from .methods import METHODS
from .models import ENCODER_KINDS
from .run_config import (AMP, Checkpointing, Data, Encoder, Evaluation, Method, Mixing, Optim, RunConfig, Runtime)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``pretrain`` command's options (the cli module adds them to its sub-parser)."""
    p.add_argument("--dataset", required=True, help=f"one of {', '.join(sorted(DATASETS))}")
    p.add_argument("--method", default=Method.name, help=f"one of {', '.join(sorted(METHODS))} (default {Method.name})")
    p.add_argument("--alpha", type=float, default=Mixing.alpha, help="i-Mix's Beta(alpha, alpha); omit for the plain method")
    p.add_argument("--epochs", type=int, default=Optim.epochs, help=f"default {Optim.epochs}")
    p.add_argument("--batch-size", type=int, default=Optim.batch_size,
                   help=f"the global batch, split over processes (default {Optim.batch_size})")
    p.add_argument("--encoder", default=Encoder.kind, choices=ENCODER_KINDS,
                   help="models.build_encoder's kind: small (CPU-sized), resnet (CIFAR stem), resnet-imagenet, mlp, mlp-authors")
    p.add_argument("--encoder-size", type=float, default=Encoder.size,
                   help="its size: width (small), depth (resnet: 18 or 50), width scale (mlp); default the kind's")
    p.add_argument("--scale", choices=("cpu", "paper"), default=None,
                   help="head/EMA/queue settings: cpu (256-64, EMA 0.99) or paper (2048-128, EMA 0.999); "
                        "default cpu for the small encoder, paper for the others")
    p.add_argument("--tau", type=float, default=Method.tau, help=f"temperature (default {Method.tau})")
    p.add_argument("--lr", type=float, default=Optim.lr, help="default 0.125 * batch size / 256")
    p.add_argument("--seed", type=int, default=RunConfig.seed)
    p.add_argument("--amp", default=Runtime.amp, choices=AMP)
    p.add_argument("--compile", action="store_true", help="torch.compile the encoder")
    p.add_argument("--no-sync-bn", action="store_true", help="per-process BN statistics under torchrun")
    p.add_argument("--shuffle-bn", action="store_true", help="MoCo: shuffle keys across processes (shuffle-BN)")
    p.add_argument("--per-class", type=int, default=None, help="load only this many samples per class")
    p.add_argument("--image-size", type=int, default=None, help="images: resize to this size")
    p.add_argument("--root", default=None, help="data root (default $IMIX_DATA, else ~/.cache/imix_teach)")
    p.add_argument("--out", required=True, help="output folder (checkpoint, history, scores)")
    p.add_argument("--no-resume", action="store_true", help="start over even if <out>/checkpoint.pt exists")
    p.add_argument("--no-eval", action="store_true", help="skip the linear probe and kNN")
    p.add_argument("--probe-epochs", type=int, default=Evaluation.probe_epochs)
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: CUDA if present)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    p.add_argument("--no-progress", action="store_true")


def config_from(args: argparse.Namespace) -> RunConfig:
    """The run the command line describes."""
    if args.method not in METHODS:
        raise SystemExit(f"imix-teach pretrain: --method must be one of {', '.join(sorted(METHODS))}, got {args.method!r}")
    if args.shuffle_bn and args.method != "moco":
        raise SystemExit("imix-teach pretrain: --shuffle-bn applies to --method moco only")
    options: dict[str, Any] = {k: v for k, v in (("per_class", args.per_class), ("image_size", args.image_size))
                               if v is not None}
    scale = args.scale or ("cpu" if args.encoder == "small" else "paper")
    return RunConfig(
        data=Data(args.dataset, options, options, root=args.root),
        encoder=Encoder(args.encoder, args.encoder_size),
        method=Method(args.method, args.tau, scale, {"shuffle_bn": True} if args.shuffle_bn else {}),
        mixing=Mixing(alpha=args.alpha),
        optim=Optim(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr),
        runtime=Runtime(device=args.device, amp=args.amp, compile=args.compile, sync_bn=not args.no_sync_bn,
                        threads=args.threads, progress=not args.no_progress),
        checkpoint=Checkpointing(str(Path(args.out) / "checkpoint.pt"), resume=not args.no_resume),
        evaluation=Evaluation(() if args.no_eval else Evaluation.probes, args.probe_epochs),
        seed=args.seed)


def run(args: argparse.Namespace) -> int:
    """Pretrain, then (rank 0 only) save the history and the scores. Returns the exit code."""
    config = config_from(args)
    out = Path(args.out)
    with distributed.session(pick_device(args.device)) as ctx:  # one process group, held until rank 0 has written
        out.mkdir(parents=True, exist_ok=True)
        result = engine.run(config)
        if not ctx.is_main:
            return 0
        write_json(out / "config.json", dict(config.as_dict(), world_size=ctx.world_size, device=str(ctx.device)))
        write_json(out / "history.json", result.history.as_dict())
        if config.evaluation.probes:
            scores = {k: v for k, v in result.summary().items()
                      if k in ("linear", "knn", "least_squares", "train_accuracy") and v is not None}
            write_json(out / "scores.json", scores)
            print("test top-1: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in scores.items()))
        print(f"wrote {out / 'checkpoint.pt'}, {out / 'history.json'}"
              + (f", {out / 'scores.json'}" if config.evaluation.probes else ""))
        return 0
