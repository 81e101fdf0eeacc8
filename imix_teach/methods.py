"""Self-supervised methods as ``nn.Module``s with one interface, each with i-Mix one argument away.

    method = MoCo(encoder)                   # or NPair, SimCLR, BYOL, SupervisedNPair
    loss = method(view1, view2, alpha=1.0)   # alpha=None: the plain method; a number: i-Mix
    loss.backward(); optimizer.step()
    method.after_step()                      # EMA / queue updates

Switching i-Mix on changes only the anchor batch and its targets: the same heads, negatives,
temperature and number of forward passes (SimCLR excepted: its mixed anchors need an extra
forward pass, Appendix A.1). Where the authors' code differs we say so in the class docstring.
"""
from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import losses
from .mixing import cutmix, imix, mix_targets, mixup
from .models import prediction_head, projection_head


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """theta_target <- m * theta_target + (1 - m) * theta_online, parameter by parameter (Eq. 7)."""
    t_params = [p for p in target.parameters()]
    o_params = [p.detach() for p in online.parameters()]
    torch._foreach_mul_(t_params, momentum)
    torch._foreach_add_(t_params, o_params, alpha=1 - momentum)


def _frozen_copy(module: nn.Module) -> nn.Module:
    twin = copy.deepcopy(module)
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


class ContrastiveMethod(nn.Module):
    """Shared parts: ``encoder`` (kept for evaluation), ``projector``, temperature ``tau``."""

    name = "base"

    def __init__(self, encoder: nn.Module, *, proj_hidden: int = 2048, proj_dim: int = 128, tau: float = 0.2,
                 proj_bn: bool = False):
        super().__init__()
        if not hasattr(encoder, "out_dim"):
            raise ValueError("encoder must have an `out_dim` attribute (its feature size), see imix_teach.models")
        if not tau > 0:
            raise ValueError(f"tau must be > 0, got {tau!r}")
        self.encoder = encoder
        self.projector = projection_head(encoder.out_dim, proj_hidden, proj_dim, out_bn=proj_bn)
        self.tau = tau

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, ...) inputs -> (N, proj_dim) projections (not normalised; the losses do that)."""
        return self.projector(self.encoder(x))

    def anchors(
        self,
        view: torch.Tensor,
        alpha: float | None,
        targets: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        **mix_options: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The anchor batch and its targets: as given when alpha is None, else i-Mixed (Algorithm 1)."""
        if alpha is None:
            return view, targets
        mixed = imix(view, alpha, targets=targets, generator=generator, **mix_options)
        return mixed.inputs, mixed.targets

    def after_step(self) -> None:
        """Called once after each optimiser step (EMA and queue updates)."""


class NPair(ContrastiveMethod):
    """N-pair / SimCLR-without-self-negatives (Eq. 5); i-Mix mixes the anchor view only (Eq. 6).

    Exactly Algorithm 1: ``logits = normalize(f(a_mix)) @ normalize(f(b)).T / tau`` with targets
    lam * I + (1 - lam) * I[perm]. The clean positive view costs nothing extra.
    """

    name = "npair"

    def forward(self, view1, view2, alpha=None, *, generator=None, labels=None, **mix_options):
        anchor, targets = self.anchors(view1, alpha, self.base_targets(labels), generator, **mix_options)
        return losses.npair_loss(self.embed(anchor), self.embed(view2), targets, self.tau, check=False)

    def base_targets(self, labels: torch.Tensor | None) -> torch.Tensor | None:
        return None


class SupervisedNPair(NPair):
    """Supervised contrastive N-pair (Appendix A.2): v_ij = 1 where labels match, rows normalised."""

    name = "supnpair"

    def base_targets(self, labels):
        if labels is None:
            raise ValueError("labels must be given to SupervisedNPair (shape (N,) class ids)")
        return losses.supervised_targets(labels)


class SimCLR(ContrastiveMethod):
    """SimCLR's (2N-1)-way loss over both views (Eq. 4), i-Mix as in Appendix A.1.

    With i-Mix both views are mixed with the same partners and contrasted against clean
    embeddings of both views, with 2N virtual labels; this needs the clean forward pass as well,
    so an i-Mix step costs about twice a plain one.
    """

    name = "simclr"

    def forward(self, view1, view2, alpha=None, *, generator=None, labels=None, **mix_options):
        n = view1.shape[0]
        clean = self.embed(torch.cat([view1, view2]))
        if alpha is None:
            return losses.simclr_loss(clean, clean, None, self.tau, check=False)
        base = losses.simclr_targets(n, view1.device)
        first = imix(view1, alpha, targets=base[:n], generator=generator, **mix_options)
        if mix_options.get("mode", "mixup") == "cutmix":
            second, lam2 = cutmix(view2, first.lam, first.perm, generator=generator)
        else:
            second, lam2 = mixup(view2, first.lam, first.perm, check=False), first.lam
        targets = torch.cat([first.targets, mix_targets(base[n:], lam2, first.perm, check=False)])
        mixed = self.embed(torch.cat([first.inputs, second]))
        return losses.simclr_loss(mixed, clean, targets, self.tau, check=False)


class MoCo(ContrastiveMethod):
    """MoCo v2 (Eq. 7-9): EMA key encoder, FIFO queue of K past keys, (N+K)-way loss.

    The plain method here also uses the (N+K)-way loss (in-batch keys are negatives too) so that
    i-Mix on/off changes nothing else; the authors' code used the classic (K+1)-way loss for the
    baseline. Single-device runs use plain BN in the key encoder (no shuffle-BN).
    """

    name = "moco"

    def __init__(self, encoder, *, queue_size: int = 4096, momentum: float = 0.999, **kwargs):
        super().__init__(encoder, **kwargs)
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if not 0 <= momentum <= 1:
            raise ValueError(f"momentum must lie in [0, 1], got {momentum}")
        self.momentum = momentum
        self.key_encoder = _frozen_copy(self.encoder)
        self.key_projector = _frozen_copy(self.projector)
        dim = self.projector[-1].out_features
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self._pending_keys: torch.Tensor | None = None

    def forward(self, view1, view2, alpha=None, *, generator=None, labels=None, **mix_options):
        anchor, targets = self.anchors(view1, alpha, None, generator, **mix_options)
        with torch.no_grad():
            keys = F.normalize(self.key_projector(self.key_encoder(view2)), dim=1)
        self._pending_keys = keys
        return losses.moco_loss(self.embed(anchor), keys, self.queue, targets, self.tau, check=False)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys`` (N, D) over the oldest entries of the queue (FIFO, wrapping around)."""
        k = self.queue.shape[0]
        keys = keys[-k:]
        idx = (self.queue_ptr + torch.arange(keys.shape[0], device=keys.device)) % k
        self.queue[idx] = keys.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + keys.shape[0]) % k)

    def after_step(self) -> None:
        ema_update(self.key_encoder, self.encoder, self.momentum)
        ema_update(self.key_projector, self.projector, self.momentum)
        if self._pending_keys is not None:
            self.enqueue(self._pending_keys)
            self._pending_keys = None


class BYOL(ContrastiveMethod):
    """BYOL (Eq. 10-12): online encoder + projector + predictor, EMA target network.

    Not symmetrised, as in the paper (Sec. 4: "we do not symmetrize the BYOL loss"). With i-Mix
    the online view is mixed and the loss is linear in the virtual labels (``losses.byol_loss``).
    """

    name = "byol"

    def __init__(self, encoder, *, momentum: float = 0.999, pred_hidden: int = 512, **kwargs):
        super().__init__(encoder, **kwargs)
        if not 0 <= momentum <= 1:
            raise ValueError(f"momentum must lie in [0, 1], got {momentum}")
        self.momentum = momentum
        self.predictor = prediction_head(self.projector[-1].out_features, pred_hidden)
        self.target_encoder = _frozen_copy(self.encoder)
        self.target_projector = _frozen_copy(self.projector)

    def forward(self, view1, view2, alpha=None, *, generator=None, labels=None, **mix_options):
        anchor, targets = self.anchors(view1, alpha, None, generator, **mix_options)
        with torch.no_grad():
            target_embeddings = self.target_projector(self.target_encoder(view2))
        predictions = self.predictor(self.embed(anchor))
        return losses.byol_loss(predictions, target_embeddings, targets, check=False)

    def after_step(self) -> None:
        ema_update(self.target_encoder, self.encoder, self.momentum)
        ema_update(self.target_projector, self.projector, self.momentum)


METHODS: dict[str, type[ContrastiveMethod]] = {
    cls.name: cls for cls in (NPair, SimCLR, MoCo, BYOL, SupervisedNPair)
}


def build_method(name: str, encoder: nn.Module, **kwargs: Any) -> ContrastiveMethod:
    """``build_method("moco", encoder, queue_size=1024)``: a method by name (see ``METHODS``)."""
    if name not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {name!r}")
    return METHODS[name](encoder, **kwargs)
