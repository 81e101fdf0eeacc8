"""The course's interactive demos: alpha, lam, tau, MoCo's queue and momentum, BYOL's mixed target,
supervised virtual labels.

Each demo is a plain plotting function (runs headless, e.g. under nbval) plus a ``*_widget``
wrapper that puts it behind core ipywidgets sliders with ``continuous_update=False``:

    beta_plot(alpha=1.0)          # Beta(alpha, alpha): density and sampled lam
    alpha_widget()
    imix_plot(images, lam=0.6)    # mixed inputs and the mixed virtual-label matrix, side by side
    lam_widget(images)            #   (+ live loss and similarities with embed=..., views=...)
    temperature_plot(tau=0.2)     # softmax sharpness and the N-pair loss against tau
    tau_widget()
    queue_plot(4096, 0.999)       # MoCo: how old the queue's keys are vs how slowly the key encoder moves
    queue_widget()
    byol_target_plot(lam=0.6)     # BYOL with a mixed label: the three readings of Eq. 12
    byol_widget()
    supervised_targets_plot(0.6)  # supervised virtual labels (Appendix A.2), mixed by i-Mix
    supervised_targets_widget()
    interact(fn, **sliders)       # any function returning a figure, behind sliders, with its picture

A widget's saved output also carries a PNG of its default state, so a notebook read without a
kernel (GitHub, nbviewer) shows the picture where the sliders would be.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..losses import npair_loss, supervised_targets
from ..mixing import mix_targets, mixup, sample_lambda

if TYPE_CHECKING:  # types only: ipywidgets is imported when a widget is built
    from ipywidgets import interactive


def _to_display(images: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) uint8 or float -> float in [0, 1] per image (min-max), for imshow."""
    x = images.detach().float().cpu()
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(1e-8)


def _imshow(ax: Axes, image: torch.Tensor) -> None:
    if image.shape[0] == 1:
        ax.imshow(image[0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
    ax.set_xticks([])
    ax.set_yticks([])


def beta_plot(alpha: float = 1.0, n_samples: int = 4000, seed: int = 0) -> Figure:
    """Density of Beta(alpha, alpha) with a histogram of ``sample_lambda`` draws; returns the figure."""
    lam = sample_lambda(alpha, n_samples, generator=torch.Generator().manual_seed(seed))
    grid = torch.linspace(0.002, 0.998, 400, dtype=torch.float64)
    log_norm = 2 * math.lgamma(alpha) - math.lgamma(2 * alpha)
    density = torch.exp((alpha - 1) * (grid.log() + (1 - grid).log()) - log_norm)
    fig, ax = plt.subplots(figsize=(5.5, 3.0))
    ax.hist(lam.numpy(), bins=40, range=(0, 1), density=True, alpha=0.45, label=f"{n_samples} draws of lam")
    ax.plot(grid.numpy(), density.numpy(), lw=2, label=f"Beta({alpha:g}, {alpha:g}) density")
    ax.set(xlabel="lam", ylabel="density", title=f"alpha = {alpha:g}: mean |lam - 0.5| = {float((lam - 0.5).abs().mean()):.2f}")
    ax.set_ylim(0, min(6.0, max(2.0, float(density.max()) * 1.1)))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


@torch.no_grad()
def _readout(embed: Callable[[torch.Tensor], torch.Tensor], views: tuple[torch.Tensor, torch.Tensor], lam: float,
             perm: torch.Tensor, tau: float) -> tuple[torch.Tensor, float]:
    """Cosine similarities (N, N) of the mixed anchors to the clean positives, and the i-Mix N-pair loss."""
    a, b = views
    za, zb = embed(mixup(a, lam, perm)), embed(b)
    sims = F.normalize(za, dim=1) @ F.normalize(zb, dim=1).T
    return sims, float(npair_loss(za, zb, mix_targets(torch.eye(len(perm)), lam, perm), tau=tau))


def imix_plot(images: torch.Tensor, lam: float = 0.6, seed: int = 0, n_show: int = 8, *,
              perm: torch.Tensor | None = None, embed: Callable[[torch.Tensor], torch.Tensor] | None = None,
              views: tuple[torch.Tensor, torch.Tensor] | None = None, tau: float = 0.2) -> Figure:
    """i-Mix on a real batch: the mixed inputs (left) and their virtual labels (right).

    images: (N, C, H, W) raw batch (uint8 or float), N >= 2. Row i of the label matrix is
    lam * e_i + (1 - lam) * e_perm(i): where instance i's "class probability" goes. ``perm``:
    the partners (default: a seeded random permutation). With ``embed`` (a network) and ``views``
    (two model-ready views (N, ...)), each mixed anchor is labelled with its cosine similarity
    to its own positive (s_i) and to its partner's (s_j), and the title gives the batch's loss.
    """
    n = images.shape[0]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)) if perm is None else perm
    x = _to_display(images)
    mixed = mixup(x, lam, perm)
    targets = mix_targets(torch.eye(n), lam, perm)
    sims, loss = _readout(embed, views, lam, perm, tau) if embed is not None and views is not None else (None, None)
    k = min(n_show, n)
    fig = plt.figure(figsize=(10, 3.6))
    grid = fig.add_gridspec(3, k + 4)
    for i in range(k):
        for row, (img, label) in enumerate(((x[i], f"x_{i}"), (x[perm[i]], f"x_{int(perm[i])}"), (mixed[i], "mixed"))):
            ax = fig.add_subplot(grid[row, i])
            _imshow(ax, img)
            if i == 0 or row < 2:
                ax.set_title(label, fontsize=7)
            if row == 2 and sims is not None:
                ax.set_xlabel(f"s_i {float(sims[i, i]):+.2f}\ns_j {float(sims[i, perm[i]]):+.2f}", fontsize=6)
    ax = fig.add_subplot(grid[:, k + 1:])
    im = ax.imshow(targets.numpy(), cmap="magma", vmin=0, vmax=1)
    title = f"virtual labels, lam = {lam:.2f}" + (f"\ni-Mix N-pair loss {loss:.3f} (tau {tau:g})" if loss is not None else "")
    ax.set(title=title, xlabel="instance (class)", ylabel="anchor")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def temperature_plot(tau: float = 0.2, similarities: tuple[float, ...] = (0.9, 0.6, 0.3, 0.0, -0.3), n: int = 16,
                     seed: int = 0) -> Figure:
    """Left: softmax(s / tau) over an anchor's similarities (first = positive). Right: N-pair loss vs tau.

    The loss curve uses a random batch of N embedding pairs whose positives are noisy copies of
    the anchors, so it shows how tau trades off hard negatives against the positive.
    """
    if not tau > 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    s = torch.tensor(similarities)
    probs = torch.softmax(s / tau, dim=0)
    g = torch.Generator().manual_seed(seed)
    anchors = torch.randn(n, 16, generator=g)
    positives = anchors + 0.8 * torch.randn(n, 16, generator=g)
    taus = torch.logspace(-2, 0.5, 40)
    curve = [float(npair_loss(anchors, positives, tau=float(t))) for t in taus]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.0))
    colours = ["tab:green"] + ["tab:gray"] * (len(s) - 1)
    ax1.bar([f"{v:+.1f}" for v in similarities], probs.numpy(), color=colours)
    ax1.set(xlabel="cosine similarity (first bar = positive)", ylabel="softmax probability",
            title=f"tau = {tau:g}: positive gets {float(probs[0]):.2f}")
    ax1.set_ylim(0, 1)
    ax2.semilogx(taus.numpy(), curve)
    ax2.axvline(tau, color="tab:red", ls="--")
    ax2.set(xlabel="tau", ylabel="N-pair loss", title=f"loss at tau = {tau:g}: {float(npair_loss(anchors, positives, tau=tau)):.3f}")
    fig.tight_layout()
    return fig


def _png(fig: Figure) -> str:
    """The figure as base64 PNG text (what Jupyter stores for an image output)."""
    import base64
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _settings(sliders: dict[str, Any]) -> str:
    """The controls' values as "alpha = 1, i-Mix = True" (each control's label, else its argument name)."""
    def shown(v: Any) -> str:
        return f"{v:.3g}" if isinstance(v, float) else str(v)
    return ", ".join(f"{getattr(c, 'description', '') or name} = {shown(c.value)}" for name, c in sliders.items())


def interact(fn: Callable[..., Figure], **sliders: Any) -> interactive:
    """``ipywidgets.interactive`` over ``fn`` (which returns a figure), plus a PNG of the default state.

    Frontends that render widgets (JupyterLab, Colab) prefer the widget; the PNG is what GitHub
    and nbviewer show instead of ``interactive(children=...)``. A notebook's own demo uses it too:
    ``interact(masking_plot, p=FloatSlider(...))``.
    """
    import ipywidgets as widgets
    from IPython.display import display

    def draw(**kwargs):
        fig = fn(**kwargs)
        display(fig)
        plt.close(fig)

    widget = widgets.interactive(draw, **sliders)
    bundle = getattr(widget, "_repr_mimebundle_", None)
    if bundle is not None:  # ipywidgets >= 8; older versions display through _ipython_display_
        fig = fn(**{name: control.value for name, control in sliders.items()})
        # A picture without its controls does not say what drew it: name each control's value under it.
        fig.text(0.5, 0, "drawn with " + _settings(sliders), ha="center", va="top", fontsize=9, color="0.3")
        picture = _png(fig)
        plt.close(fig)

        def with_picture(**kwargs):
            data = bundle(**kwargs)
            if isinstance(data, tuple):
                data = data[0]
            return {**data, "image/png": picture}

        widget._repr_mimebundle_ = with_picture
    return widget


def alpha_widget() -> interactive:
    """Slider over alpha (log scale) for :func:`beta_plot`."""
    import ipywidgets as widgets

    return interact(beta_plot, alpha=widgets.FloatLogSlider(value=1.0, base=10, min=-1.3, max=1.3, step=0.05,
                                                            description="alpha", continuous_update=False))


def lam_widget(images: torch.Tensor, seed: int = 0, **readout: Any) -> interactive:
    """Slider over lam for :func:`imix_plot` on ``images`` (N, C, H, W); ``readout``: perm, embed, views, tau."""
    import ipywidgets as widgets

    return interact(lambda lam: imix_plot(images, lam, seed, **readout),
                    lam=widgets.FloatSlider(value=0.6, min=0.0, max=1.0, step=0.05, description="lam",
                                            continuous_update=False))


def tau_widget() -> interactive:
    """Slider over tau (log scale) for :func:`temperature_plot`."""
    import ipywidgets as widgets

    return interact(temperature_plot, tau=widgets.FloatLogSlider(value=0.2, base=10, min=-2, max=0.5, step=0.05,
                                                                 description="tau", continuous_update=False))


def queue_plot(queue_size: int = 4096, momentum: float = 0.999, batch_size: int = 256) -> Figure:
    """MoCo's two clocks: keys in a queue of ``queue_size`` were encoded up to K / N steps ago, by a key
    encoder that averages the online weights of the last ~1 / (1 - m) steps (EMA, Eq. 7)."""
    if not 0 <= momentum < 1 or queue_size < 1 or batch_size < 1:
        raise ValueError(f"need 0 <= momentum < 1, queue_size >= 1, batch_size >= 1; got {momentum}, {queue_size}, {batch_size}")
    age = queue_size / batch_size  # steps since the oldest key in the queue was encoded
    memory = 1 / (1 - momentum)  # mean age of the online weights inside the key encoder
    steps = torch.arange(0, int(max(3 * memory, 1.5 * age)) + 2, dtype=torch.float64)
    weight = (1 - momentum) * momentum ** steps
    fig, ax = plt.subplots(figsize=(7.5, 3.0))
    ax.plot(steps.numpy(), weight.numpy(), color="tab:purple", label="EMA weight of the online encoder k steps ago")
    ax.axvspan(0, age, color="tab:orange", alpha=0.2, label=f"age of the keys in the queue (0 to {age:.0f} steps)")
    ax.axvline(memory, color="tab:purple", ls="--", lw=1)
    ax.set(xlabel="steps ago", ylabel="EMA weight",
           title=f"K = {queue_size}, m = {momentum:g}: the key encoder lags ~{memory:.0f} steps;\n"
                 f"the oldest key in the queue was encoded {age:.0f} steps ago")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def queue_widget(batch_size: int = 256) -> interactive:
    """Sliders over the queue size and the EMA momentum for :func:`queue_plot`."""
    import ipywidgets as widgets

    return interact(lambda queue_size, momentum: queue_plot(queue_size, momentum, batch_size),
                    queue_size=widgets.IntSlider(value=4096, min=256, max=65536, step=256, description="queue K",
                                                 continuous_update=False),
                    momentum=widgets.FloatSlider(value=0.999, min=0.9, max=0.9999, step=0.0005, readout_format=".4f",
                                                 description="momentum m", continuous_update=False))


def byol_target_plot(lam: float = 0.6, angle: float = 100.0) -> Figure:
    """BYOL with a mixed label on the unit circle: targets f_i, f_j at ``angle`` degrees apart, the mixed
    target F v = lam f_i + (1 - lam) f_j (shorter than 1), and the three readings of Eq. 12 as p turns."""
    theta = math.radians(angle)
    f_i, f_j = torch.tensor([1.0, 0.0]), torch.tensor([math.cos(theta), math.sin(theta)])
    fv = lam * f_i + (1 - lam) * f_j
    turns = torch.linspace(-math.pi, math.pi, 361)
    p = torch.stack([turns.cos(), turns.sin()], dim=1)  # every unit prediction
    readings = {"linear 2 - 2 p.(Fv) (library, authors)": 2 - 2 * p @ fv,
                "squared distance |p - Fv|^2": ((p - fv) ** 2).sum(1),
                "cosine 2 - 2 cos(p, Fv)": 2 - 2 * F.cosine_similarity(p, fv[None], dim=1)}
    fig, (ax_c, ax_l) = plt.subplots(1, 2, figsize=(9, 3.2), gridspec_kw={"width_ratios": [1, 1.8]})
    ax_c.plot(turns.cos().numpy(), turns.sin().numpy(), color="lightgray")
    for vec, name, colour in ((f_i, "f_i", "tab:blue"), (f_j, "f_j", "tab:green"), (fv, "F v", "tab:red")):
        ax_c.annotate("", xy=vec.tolist(), xytext=(0, 0), arrowprops=dict(arrowstyle="->", color=colour, lw=2))
        ax_c.text(*(1.12 * vec).tolist(), name, color=colour, ha="center", va="center")
    ax_c.set(aspect="equal", xlim=(-1.3, 1.3), ylim=(-1.3, 1.3), xticks=[], yticks=[], title=f"|F v| = {float(fv.norm()):.2f}")
    for name, values in readings.items():
        ax_l.plot(torch.rad2deg(turns).numpy(), values.numpy(), label=name)
    ax_l.axvline(math.degrees(math.atan2(fv[1], fv[0])), color="tab:red", ls=":", lw=1)
    ax_l.set(xlabel="direction of the prediction p (degrees)", ylabel="loss", title=f"lam = {lam:.2f}: all three are "
             "smallest where p points along F v")
    ax_l.legend(fontsize=7)
    fig.tight_layout()
    return fig


def byol_widget() -> interactive:
    """Sliders over lam and the angle between the two targets for :func:`byol_target_plot`."""
    import ipywidgets as widgets

    return interact(byol_target_plot,
                    lam=widgets.FloatSlider(value=0.6, min=0.0, max=1.0, step=0.05, description="lam",
                                            continuous_update=False),
                    angle=widgets.FloatSlider(value=100.0, min=0.0, max=180.0, step=5.0, description="angle",
                                              continuous_update=False))


def supervised_targets_plot(lam: float = 0.6, classes: int = 3, n: int = 12, seed: int = 0) -> Figure:
    """Supervised virtual labels (Appendix A.2) of a batch of ``n`` drawn from ``classes`` classes, and
    what i-Mix trains on: lam * v_i + (1 - lam) * v_perm(i). With ``classes = n`` they are the identity."""
    if not 1 <= classes <= n:
        raise ValueError(f"classes must be between 1 and n = {n}, got {classes}")
    labels = (torch.arange(n) % classes).sort().values  # every class present, sorted so blocks show
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    v = supervised_targets(labels)
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.6))
    for ax, (matrix, title) in zip(axes, ((v, f"supervised labels v ({classes} classes)"),
                                          (mix_targets(v, lam, perm), f"i-Mix: lam v_i + (1 - lam) v_perm(i), lam = {lam:.2f}"))):
        im = ax.imshow(matrix.numpy(), cmap="magma", vmin=0, vmax=1)
        ax.set(title=title, xlabel="candidate (positive of instance n)", ylabel="anchor")
        ax.title.set_fontsize(9)
        ax.set_xticks(range(n), [str(int(c)) for c in labels], fontsize=6)
        ax.set_yticks(range(n), [str(int(c)) for c in labels], fontsize=6)
    fig.colorbar(im, ax=axes, fraction=0.025)
    return fig


def supervised_targets_widget(n: int = 12) -> interactive:
    """Sliders over lam and the number of classes in the batch for :func:`supervised_targets_plot`."""
    import ipywidgets as widgets

    return interact(lambda lam, classes: supervised_targets_plot(lam, classes, n),
                    lam=widgets.FloatSlider(value=0.6, min=0.0, max=1.0, step=0.05, description="lam",
                                            continuous_update=False),
                    classes=widgets.IntSlider(value=3, min=1, max=n, description="classes", continuous_update=False))
