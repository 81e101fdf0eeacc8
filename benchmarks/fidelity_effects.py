"""Cheap measurements behind the README's "Differences from the authors' code" table.

    IMIX_DATA=<data root> python benchmarks/fidelity_effects.py

Prints one line per difference: N-pair loss with one vs two forward passes (BN statistics),
speech features of the two recipes on the offline Speech Commands clips, the crop-area and lam
distributions, InputMix's cross-view weight, and a kNN check of CovType's standardisation.
"""
from __future__ import annotations

import math

import torch

from imix_teach import losses
from imix_teach.data import load
from imix_teach.data.speech_features import LogMel
from imix_teach.mixing import imix, inputmix_pair, sample_lambda
from imix_teach.models import SmallConvNet, projection_head


@torch.no_grad()
def npair_bn(seed: int = 0) -> tuple[float, float]:
    """Loss of one i-Mix N-pair batch (CIFAR-10 test images, SmallConvNet + head, train mode) both ways."""
    torch.manual_seed(seed)
    data = load("cifar10", "test", per_class=13)
    x = data.inputs[:128]
    g = torch.Generator().manual_seed(seed)
    v1, v2 = data.augment(x, g), data.augment(x, g)
    enc = SmallConvNet(3, 16)
    model = torch.nn.Sequential(enc, projection_head(enc.out_dim, 256, 64)).train()
    mixed = imix(v1, 1.0, generator=g)
    two = losses.npair_loss(model(mixed.inputs), model(v2), mixed.targets, 0.2)
    a, b = model(torch.cat([mixed.inputs, v2])).chunk(2)
    return float(two), float(losses.npair_loss(a, b, mixed.targets, 0.2))


def speech_features() -> dict[str, float]:
    """Ours (HTK, dB re 1) vs the authors' (Slaney, dB re the clip's peak) on every offline clip."""
    waves = torch.cat([load("speechcommands", s, silence=0.0).inputs for s in ("train", "val", "test")])
    ours, authors = LogMel(0.0, 1.0, "ours"), LogMel(0.0, 1.0, "authors")
    o, a = ours(waves), authors(waves)
    resid = (o - a) - (o - a).mean((1, 2, 3), keepdim=True)  # remove each clip's offset
    corr = torch.corrcoef(torch.stack([o.flatten(), a.flatten()]))[0, 1]
    return {"clips": len(waves), "gain0.7_ours_dB": float((ours(0.7 * waves) - o).mean()),
            "gain0.7_authors_dB": float((authors(0.7 * waves) - a).mean()),
            "mean_abs_diff_after_offset_dB": float(resid.abs().mean()), "correlation": float(corr)}


def covtype_knn() -> dict[str, float]:
    """5-NN test accuracy on raw standardised rows: all 54 columns vs the 10 numeric ones."""
    from sklearn.neighbors import KNeighborsClassifier

    out = {}
    for how in ("all", "numeric"):
        tr, te = load("covtype", "train", standardise=how), load("covtype", "test", standardise=how)
        idx = torch.randperm(len(te), generator=torch.Generator().manual_seed(0))[:10_000]
        knn = KNeighborsClassifier(5).fit(tr.inputs.numpy(), tr.labels.numpy())
        out[how] = float(knn.score(te.inputs[idx].numpy(), te.labels[idx].numpy()))
    return out


def main() -> None:
    torch.set_num_threads(1)
    two, one = npair_bn()
    print(f"N-pair loss, train-mode BN: two passes {two:.4f}, one pass {one:.4f}, difference {abs(two - one):.4f}")
    print("speech features:", {k: round(v, 3) for k, v in speech_features().items()})
    print(f"crop area mean: U(0.08, 1) {(0.08 + 1) / 2:.2f}, U(0.2, 1) {(0.2 + 1) / 2:.2f}")
    for alpha in (1.0, 2.0):
        lam = sample_lambda(alpha, 200_000, generator=torch.Generator().manual_seed(0))
        top = torch.maximum(lam, 1 - lam)
        print(f"lam, alpha {alpha:g}: per batch mean {lam.mean():.3f} (std {lam.std():.3f}); "
              f"per sample max(lam, 1-lam) mean {top.mean():.3f} (std {top.std():.3f})")
    n = 256
    eye = torch.eye(2 * n)
    a, b = inputmix_pair(eye[:n], eye[n:], generator=torch.Generator().manual_seed(0))
    print(f"InputMix from 2N: share of each row's weight from the other view {(a[:, n:].sum() + b[:, :n].sum()) / (2 * n):.3f}")
    print("CovType 5-NN on standardised rows:", covtype_knn())
    print(f"time shift: ours +-0.1 s, authors +-8 frames = +-{8 * 512 / 16000:.3f} s; "
          f"amplitude x0.7 in dB re 1: {20 * math.log10(0.7):.2f} dB")


if __name__ == "__main__":
    main()
