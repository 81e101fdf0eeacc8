"""``imix-teach pretrain``: one method on one dataset, on one process or under torchrun.

    imix-teach pretrain --dataset digits --method npair --alpha 1 --epochs 15 --out runs/npair
    torchrun --standalone --nproc_per_node 2 -m imix_teach pretrain --dataset digits --method moco --out runs/moco

Writes ``<out>/checkpoint.pt`` (every epoch, resumable), ``<out>/history.json``,
``<out>/config.json`` and, unless ``--no-eval``, ``<out>/scores.json`` (linear probe and kNN test
top-1, evaluated once, by rank 0). Rerunning the same command resumes from the checkpoint.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from . import distributed
from .config import pick_device
from .data import DATASETS, load
from .evaluate import evaluate_encoder
from .files import write_json
from .experiment import small_encoder
from .methods import METHODS, build_method
from .models import cifar_resnet
from .train import pretrain

ENCODERS = ("small", "resnet18", "resnet50")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``pretrain`` command's options (the cli module adds them to its sub-parser)."""
    p.add_argument("--dataset", required=True, help=f"one of {', '.join(sorted(DATASETS))}")
    p.add_argument("--method", default="npair", help=f"one of {', '.join(sorted(METHODS))} (default npair)")
    p.add_argument("--alpha", type=float, default=None, help="i-Mix's Beta(alpha, alpha); omit for the plain method")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=256, help="the global batch, split over processes (default 256)")
    p.add_argument("--encoder", default="small", choices=ENCODERS, help="small (CPU-sized), resnet18, resnet50")
    p.add_argument("--tau", type=float, default=0.2, help="temperature (default 0.2)")
    p.add_argument("--lr", type=float, default=None, help="default 0.125 * batch size / 256")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--amp", default="auto", choices=("auto", "bf16", "fp16", "off"))
    p.add_argument("--compile", action="store_true", help="torch.compile the encoder")
    p.add_argument("--no-sync-bn", action="store_true", help="per-process BN statistics under torchrun")
    p.add_argument("--shuffle-bn", action="store_true", help="MoCo: shuffle keys across processes (shuffle-BN)")
    p.add_argument("--per-class", type=int, default=None, help="load only this many samples per class")
    p.add_argument("--image-size", type=int, default=None, help="images: resize to this size")
    p.add_argument("--root", default=None, help="data root (default $IMIX_DATA, else ~/.cache/imix_teach)")
    p.add_argument("--out", required=True, help="output folder (checkpoint, history, scores)")
    p.add_argument("--no-resume", action="store_true", help="start over even if <out>/checkpoint.pt exists")
    p.add_argument("--no-eval", action="store_true", help="skip the linear probe and kNN")
    p.add_argument("--probe-epochs", type=int, default=100)
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: CUDA if present)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    p.add_argument("--no-progress", action="store_true")


def _data(args: argparse.Namespace, split: str):
    options: dict[str, Any] = {}
    if args.per_class is not None:
        options["per_class"] = args.per_class
    if args.image_size is not None:
        options["image_size"] = args.image_size
    return load(args.dataset, split, root=args.root, **options)


def _method(args: argparse.Namespace, input_shape: tuple[int, ...], n_train: int):
    if args.method not in METHODS:
        raise SystemExit(f"imix-teach pretrain: --method must be one of {', '.join(sorted(METHODS))}, got {args.method!r}")
    if args.encoder == "small":
        encoder, scale = small_encoder(input_shape), "cpu"
    elif len(input_shape) != 3:
        raise SystemExit(f"imix-teach pretrain: --encoder {args.encoder} needs images or spectrograms (C, H, W); "
                         f"{args.dataset} rows have shape {input_shape}: use --encoder small")
    else:
        encoder, scale = cifar_resnet(int(args.encoder.removeprefix("resnet")), input_shape[0]), "paper"
    kwargs: dict[str, Any] = {}
    if args.shuffle_bn:
        if args.method != "moco":
            raise SystemExit("imix-teach pretrain: --shuffle-bn applies to --method moco only")
        kwargs["shuffle_bn"] = True
    return build_method(args.method, encoder, scale=scale, n_train=n_train, tau=args.tau, **kwargs)


def run(args: argparse.Namespace) -> int:
    """Pretrain, then (rank 0 only) save the history and evaluate. Returns the exit code."""
    if args.threads:
        torch.set_num_threads(args.threads)
    ctx = distributed.setup(pick_device(args.device))
    try:
        train = _data(args, "train")
        torch.manual_seed(args.seed)  # the same initial weights on every rank and on every rerun
        method = _method(args, tuple(train.input_shape), len(train))
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        history = pretrain(method, train.inputs, train.augment, epochs=args.epochs,
                           batch_size=min(args.batch_size, len(train)), alpha=args.alpha, lr=args.lr, seed=args.seed,
                           amp=args.amp, compile=args.compile, sync_bn=not args.no_sync_bn, device=ctx.device,
                           checkpoint=out / "checkpoint.pt", resume=not args.no_resume,
                           labels=train.labels if method.needs_labels else None,
                           progress=not args.no_progress)
        if not ctx.is_main:
            return 0
        write_json(out / "config.json", dict(vars(args), world_size=ctx.world_size, device=str(ctx.device)))
        write_json(out / "history.json", history.as_dict())
        if not args.no_eval:
            scores = evaluate_encoder(method.encoder, train, _data(args, "test"), probe_epochs=args.probe_epochs,
                                      seed=args.seed, device=ctx.device)
            write_json(out / "scores.json", scores)
            print("test top-1: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in scores.items()))
        print(f"wrote {out / 'checkpoint.pt'}, {out / 'history.json'}"
              + ("" if args.no_eval else f", {out / 'scores.json'}"))
        return 0
    finally:
        distributed.cleanup(ctx)
