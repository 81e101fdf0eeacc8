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
from abc import ABCMeta, abstractmethod
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import _checks, distributed, losses
from .mixing import imix, mix_targets
from .models import parameter_dtype, prediction_head, projection_head


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


METHODS: dict[str, type[ContrastiveMethod]] = {}


def register(cls: type[ContrastiveMethod]) -> type[ContrastiveMethod]:
    """Class decorator: the method becomes buildable by name (build_method, the CLI, reproduce, benchmarks)."""
    METHODS[cls.name] = cls
    return cls


class ContrastiveMethod(nn.Module):
    """Shared parts: ``encoder`` (kept for evaluation), ``projector``, temperature ``tau``.

    A method's constructor defaults are the paper's settings; ``cpu_overrides`` holds what short
    CPU runs (hundreds of steps, not ~10^5) change, see :meth:`settings`. Every ``forward`` takes
    ``check``: True (default) also refuses NaN/inf views; the training step passes False (see
    :meth:`checked_views`).
    """

    name = "base"
    needs_labels = False  # True: pretraining needs class labels (supervised contrastive)
    views = 2  # augmented views per step (train_step draws this many)
    cpu_overrides: dict[str, Any] = dict(proj_hidden=256, proj_dim=64)

    @classmethod
    def settings(cls, scale: str = "paper", n_train: int | None = None) -> dict[str, Any]:
        """Keyword arguments for a scale: "paper" = the constructor's defaults, "cpu" = CPU-sized."""
        if scale not in ("paper", "cpu"):
            raise ValueError(f"scale must be 'paper' or 'cpu', got {scale!r}")
        return dict(cls.cpu_overrides) if scale == "cpu" else {}

    def __init__(self, encoder: nn.Module, *, proj_hidden: int = 2048, proj_dim: int = 128, tau: float = 0.2,
                 proj_bn: bool = False):
        super().__init__()
        if not hasattr(encoder, "out_dim"):
            raise ValueError("encoder must have an `out_dim` attribute (its feature size), see imix_teach.models")
        _checks.integer("encoder.out_dim", encoder.out_dim)
        _checks.integer("proj_hidden", proj_hidden)
        _checks.integer("proj_dim", proj_dim)
        _checks.positive("tau", tau)
        _checks.flag("proj_bn", proj_bn)
        self.encoder = encoder
        self.projector = projection_head(encoder.out_dim, proj_hidden, proj_dim, out_bn=proj_bn)
        self.proj_dim = proj_dim
        self.tau = float(tau)

    def checked_views(self, view1: torch.Tensor, view2: torch.Tensor,
                      check: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """The two views ``forward`` got, checked, in the model's dtype (a float64 batch becomes float32).

        Shape and dtype checks read metadata only and always run. ``check`` adds the finite-value
        check, which syncs a GPU: the training step passes False (``pretrain`` checks its inputs once).
        """
        _checks.views(view1, view2)
        if check:
            _checks.finite("view1", view1)
            _checks.finite("view2", view2)
        dtype = parameter_dtype(self)
        return (view1, view2) if dtype is None else (view1.to(dtype), view2.to(dtype))

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
        mixed = imix(view, alpha, targets=targets, generator=generator, check=False, **mix_options)
        return mixed.inputs, mixed.targets

    def after_step(self) -> None:
        """Called once after each optimiser step (EMA and queue updates)."""


@register
class NPair(ContrastiveMethod):
    """N-pair / SimCLR-without-self-negatives (Eq. 5); i-Mix mixes the anchor view only (Eq. 6).

    Exactly Algorithm 1: ``logits = normalize(f(a_mix)) @ normalize(f(b)).T / tau`` with targets
    lam * I + (1 - lam) * I[perm]. The clean positive view costs nothing extra. Under torchrun the
    positives of every process are gathered (``distributed.gather``), so negatives span the
    global batch. single_pass: put [anchors; positives] through one forward pass, so batch norm
    normalises both with the same statistics (the authors' code); False uses a pass per view.
    """

    name = "npair"

    def __init__(self, encoder: nn.Module, *, single_pass: bool = False, **kwargs: Any):
        super().__init__(encoder, **kwargs)
        _checks.flag("single_pass", single_pass)
        self.single_pass = single_pass

    def forward(self, view1: torch.Tensor, view2: torch.Tensor, alpha: float | None = None, *,
                generator: torch.Generator | None = None, labels: torch.Tensor | None = None,
                check: bool = True, **mix_options: Any) -> torch.Tensor:
        """Loss of one batch of pairs: view1, view2 (N, ...); i-Mix when alpha is a number."""
        view1, view2 = self.checked_views(view1, view2, check)
        targets = self.virtual_labels(view1.shape[0], labels, view1.device)
        anchor, targets = self.anchors(view1, alpha, targets, generator, **mix_options)
        if self.single_pass:
            anchor_emb, positive_emb = self.embed(torch.cat([anchor, view2])).chunk(2)
        else:
            anchor_emb, positive_emb = self.embed(anchor), self.embed(view2)
        return losses.npair_loss(anchor_emb, distributed.gather(positive_emb), targets, self.tau, check=False)

    def virtual_labels(self, n: int, labels: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
        """(N, W*N) targets over the gathered positives; None (= eye) on one process."""
        return distributed.local_targets(None, n, device)


@register
class SupervisedNPair(NPair):
    """Supervised contrastive N-pair (Appendix A.2): v_ij = 1 where labels match, rows normalised."""

    name = "supnpair"
    needs_labels = True

    def virtual_labels(self, n: int, labels: torch.Tensor | None, device: torch.device) -> torch.Tensor:
        """(N, W*N): 1 where the anchor's label matches a (gathered) positive's, rows normalised."""
        if labels is None:
            raise ValueError(f"labels must be given to SupervisedNPair: a tensor of shape ({n},) "
                             "holding integer class ids")
        _checks.labels("labels", labels, n)
        return losses.supervised_targets(labels, distributed.gather(labels))


@register
class SimCLR(ContrastiveMethod):
    """SimCLR's (2N-1)-way loss over both views (Eq. 4), i-Mix as in Appendix A.1.

    With i-Mix both views are mixed with the same partners and contrasted against clean
    embeddings of both views, with 2N virtual labels; this needs the clean forward pass as well,
    so an i-Mix step costs about twice a plain one.
    """

    name = "simclr"

    def forward(self, view1: torch.Tensor, view2: torch.Tensor, alpha: float | None = None, *,
                generator: torch.Generator | None = None, labels: torch.Tensor | None = None,
                check: bool = True, **mix_options: Any) -> torch.Tensor:
        """Loss of one batch of pairs: view1, view2 (N, ...); i-Mix when alpha is a number."""
        view1, view2 = self.checked_views(view1, view2, check)
        n = view1.shape[0]
        clean_here = self.embed(torch.cat([view1, view2]))
        clean = distributed.gather(clean_here)  # (W*2N, D): this rank's rows at 2N*rank...
        offset = 2 * n * distributed.rank()
        base = losses.simclr_targets(n, view1.device)
        if alpha is None:
            targets = distributed.local_targets(base, 2 * n)
            return losses.simclr_loss(clean_here, clean, targets, self.tau, offset=offset, check=False)
        first = imix(view1, alpha, targets=base[:n], generator=generator, check=False, **mix_options)
        second, lam2 = first.apply_to(view2, generator)  # the same partners for the second view
        targets = torch.cat([first.targets, mix_targets(base[n:], lam2, first.perm, check=False)])
        mixed = self.embed(torch.cat([first.inputs, second]))
        return losses.simclr_loss(mixed, clean, distributed.local_targets(targets, 2 * n), self.tau,
                                  offset=offset, check=False)


class MomentumMethod(ContrastiveMethod, metaclass=ABCMeta):
    """Methods with an EMA twin of their online networks (MoCo's key encoder, BYOL's target).

    Subclasses list (online, twin) module pairs in :meth:`momentum_pairs` (solo-learn's pattern);
    after every optimiser step each twin moves towards its online module (Eq. 7).
    """

    cpu_overrides = dict(ContrastiveMethod.cpu_overrides, momentum=0.99)  # 0.999 barely moves in 100s of steps

    def __init__(self, encoder: nn.Module, *, momentum: float = 0.999, **kwargs: Any):
        super().__init__(encoder, **kwargs)
        self.momentum = _checks.number_in("momentum", momentum, 0, 1)

    @abstractmethod
    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """(online, EMA twin) pairs; the twins get no gradients."""

    def after_step(self) -> None:
        """Each EMA twin moves towards its online module (Eq. 7)."""
        for online, twin in self.momentum_pairs():
            ema_update(twin, online, self.momentum)


@register
class MoCo(MomentumMethod):
    """MoCo v2 (Eq. 7-9): EMA key encoder, FIFO queue of K past keys, (N+K)-way loss.

    The plain method here also uses the (N+K)-way loss (in-batch keys are negatives too) so that
    i-Mix on/off changes nothing else; the authors' code used the classic (K+1)-way loss for the
    baseline. Under torchrun the keys of every process are gathered, contrasted and enqueued, so
    the queue is the same on every rank. shuffle_bn: the key encoder sees a batch shuffled across
    processes, so its BN statistics cannot leak which key matches which query (MoCo's shuffle-BN;
    no effect on one process, where SyncBN-free BN is what the authors' 1-GPU code does too).
    """

    name = "moco"
    cpu_queue = (64, 4096)  # on CPU: a queue of half the training set, within these bounds

    def __init__(self, encoder: nn.Module, *, queue_size: int = 4096, shuffle_bn: bool = False, **kwargs: Any):
        super().__init__(encoder, **kwargs)
        _checks.integer("queue_size", queue_size)
        _checks.flag("shuffle_bn", shuffle_bn)
        self.shuffle_bn = shuffle_bn
        self.key_encoder = _frozen_copy(self.encoder)
        self.key_projector = _frozen_copy(self.projector)
        dim = self.proj_dim
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @classmethod
    def settings(cls, scale: str = "paper", n_train: int | None = None) -> dict[str, Any]:
        """As the base; on CPU the queue holds at most half the training set, so it is not mostly stale keys."""
        kwargs = super().settings(scale, n_train)
        if scale == "cpu" and n_train is not None:
            low, high = cls.cpu_queue
            kwargs["queue_size"] = max(low, min(high, n_train // 2))
        return kwargs

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """The query encoder and projector, each with its key-side twin."""
        return [(self.encoder, self.key_encoder), (self.projector, self.key_projector)]

    def forward(self, view1: torch.Tensor, view2: torch.Tensor, alpha: float | None = None, *,
                generator: torch.Generator | None = None, labels: torch.Tensor | None = None,
                check: bool = True, **mix_options: Any) -> torch.Tensor:
        """Loss of one batch of pairs: view1 (queries), view2 (keys), (N, ...); i-Mix when alpha is set."""
        view1, view2 = self.checked_views(view1, view2, check)
        targets = distributed.local_targets(None, view1.shape[0], view1.device)
        anchor, targets = self.anchors(view1, alpha, targets, generator, **mix_options)
        keys = self.keys(view2, generator)
        loss = losses.moco_loss(self.embed(anchor), keys, self.queue, targets, self.tau, check=False)
        if self.training:  # as MoCo's own code: the step's clean keys replace the oldest (the loss holds a copy)
            self.enqueue(keys)
        return loss

    @torch.no_grad()
    def keys(self, view: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Normalised keys of the global batch, (W*N, D) in rank order (N, D on one process)."""
        if not (self.shuffle_bn and distributed.world_size() > 1):
            return distributed.gather(F.normalize(self.key_projector(self.key_encoder(view)), dim=1))
        everything = distributed.gather(view)
        order = distributed.shared_permutation(everything.shape[0], generator)
        mine = order.view(distributed.world_size(), -1)[distributed.rank()]
        shuffled = distributed.gather(F.normalize(self.key_projector(self.key_encoder(everything[mine])), dim=1))
        return shuffled[torch.argsort(order)]  # row j of `shuffled` is sample order[j]

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys`` (N, D) over the oldest entries of the queue (FIFO, wrapping around)."""
        k = self.queue.shape[0]
        keys = keys[-k:]
        idx = (self.queue_ptr + torch.arange(keys.shape[0], device=keys.device)) % k
        self.queue[idx] = keys.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + keys.shape[0]) % k)



@register
class BYOL(MomentumMethod):
    """BYOL (Eq. 10-12): online encoder + projector + predictor, EMA target network.

    Not symmetrised, as in the paper (Sec. 4: "we do not symmetrize the BYOL loss"). With i-Mix
    the online view is mixed and the loss is linear in the virtual labels (``losses.byol_loss``).
    """

    name = "byol"
    cpu_overrides = dict(MomentumMethod.cpu_overrides, pred_hidden=256)

    def __init__(self, encoder: nn.Module, *, pred_hidden: int = 512, pred_bn: bool = False, **kwargs: Any):
        super().__init__(encoder, **kwargs)
        _checks.integer("pred_hidden", pred_hidden)
        _checks.flag("pred_bn", pred_bn)
        self.predictor = prediction_head(self.proj_dim, pred_hidden, out_bn=pred_bn)  # pred_bn: the authors' tables
        self.target_encoder = _frozen_copy(self.encoder)
        self.target_projector = _frozen_copy(self.projector)

    def forward(self, view1: torch.Tensor, view2: torch.Tensor, alpha: float | None = None, *,
                generator: torch.Generator | None = None, labels: torch.Tensor | None = None,
                check: bool = True, **mix_options: Any) -> torch.Tensor:
        """Loss of one batch of pairs: view1 (online), view2 (target), (N, ...); i-Mix when alpha is set."""
        view1, view2 = self.checked_views(view1, view2, check)
        anchor, targets = self.anchors(view1, alpha, None, generator, **mix_options)
        with torch.no_grad():
            target_embeddings = self.target_projector(self.target_encoder(view2))
        predictions = self.predictor(self.embed(anchor))
        return losses.byol_loss(predictions, target_embeddings, targets, check=False)

    def momentum_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        """The online encoder and projector, each with its target twin (the predictor has none)."""
        return [(self.encoder, self.target_encoder), (self.projector, self.target_projector)]


def method_settings(name: str, scale: str | None = None, n_train: int | None = None, **kwargs: Any) -> dict[str, Any]:
    """The keyword arguments :func:`build_method` gives the constructor: the scale's settings, then ``kwargs``.

    scale: None or "paper" = the constructor's (paper) defaults, "cpu" = :meth:`ContrastiveMethod.settings`
    for short CPU runs (n_train sizes MoCo's queue); explicit keyword arguments win over both.
    """
    if name not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {name!r}")
    return {**METHODS[name].settings(scale or "paper", n_train), **kwargs}


def build_method(name: str, encoder: nn.Module, *, scale: str | None = None, n_train: int | None = None,
                 **kwargs: Any) -> ContrastiveMethod:
    """A method by name: ``build_method("moco", encoder, scale="cpu", n_train=1000, tau=0.2)`` (see :func:`method_settings`)."""
    settings = method_settings(name, scale, n_train, **kwargs)
    return METHODS[name](encoder, **settings)
