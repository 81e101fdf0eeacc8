"""Log-mel features and random views of 1 s, 16 kHz waveforms: two recipes.

Both compute a 2048-point STFT (hop 512, periodic Hann window, reflect-padded centred frames:
32 frames per second), a 32-band mel power spectrogram and its dB values, (N, L) -> (N, 1, 32, 32).

``recipe="authors"`` follows the authors' code (librosa's defaults): **Slaney** mel scale with
Slaney area normalisation of the filters, and ``power_to_db(ref=max)``: each clip is rescaled so
that its loudest bin is 0 dB (then floored at -80 dB), so its overall loudness is gone. No further
normalisation (the network sees dB in [-80, 0]). Views (:class:`AuthorsSpeechAugment`), each
step with probability 0.5, in their order: amplitude x U(0.7, 1.1); speed/pitch (the waveform is
read at t / (1 + s), s ~ U(-0.2, 0.2), from its start); STFT; time stretch (frames read at rate
1 + s, magnitudes interpolated as librosa's phase vocoder does); time shift by an integer
U{-8..8} frames (+-0.256 s); background noise mixed as ``(1 - p) clip + p noise``, p ~ U(0, 0.45),
where the noise is a 1 s piece of ``_background_noise_`` that went through the same steps.

``recipe="ours"`` (this library's first version, used by the committed CPU results): torchaudio's
default **HTK** mel without filter normalisation, dB relative to 1 (so a clip's loudness stays
in the features), a fixed ``(dB - db_mean) / db_std``, and :class:`SpeechAugment`'s views.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import rand, randn, uniform

SAMPLE_RATE = 16_000
N_FFT, HOP, N_MELS, FRAMES = 2048, 512, 32, 32
RECIPES = ("ours", "authors")
_MEL: dict[tuple[str, str], torch.nn.Module] = {}


def mel_module(device: torch.device | str, recipe: str = "ours") -> torch.nn.Module:
    """torchaudio ``MelSpectrogram`` of the recipe, built once per device."""
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {list(RECIPES)}, got {recipe!r}")
    key = (str(torch.device(device)), recipe)
    if key not in _MEL:
        import torchaudio.transforms as T

        scale = dict(norm="slaney", mel_scale="slaney") if recipe == "authors" else dict(norm=None, mel_scale="htk")
        _MEL[key] = T.MelSpectrogram(sample_rate=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS,
                                     power=2.0, **scale).to(device)
    return _MEL[key]


def power_to_db(p: Tensor, ref_max: bool, top_db: float = 80.0) -> Tensor:
    """(N, ..., F, T) power -> dB, floored ``top_db`` below each sample's peak (librosa's ``power_to_db``).

    ``ref_max``: 0 dB = the sample's largest bin (librosa ``ref=np.max``), else 0 dB = power 1.
    """
    db = 10.0 * torch.log10(p.clamp(min=1e-10))
    dims = tuple(range(1, db.dim()))
    peak = db.amax(dim=dims, keepdim=True)
    if ref_max:
        db, peak = db - peak, torch.zeros_like(peak)
    return torch.maximum(db, peak - top_db)


class LogMel:
    """Evaluation transform: waveforms (N, L) -> log-mel (N, 1, 32, 32) float32, ``(dB - db_mean) / db_std``."""

    frames = FRAMES

    def __init__(self, db_mean: float = -11.0, db_std: float = 20.0, recipe: str = "ours"):
        mel_module("cpu", recipe)  # validates the recipe
        self.db_mean, self.db_std, self.recipe = db_mean, db_std, recipe

    def stft_power(self, x: Tensor) -> Tensor:
        """(N, L) -> |STFT|^2 (N, 1025, T), with the window and padding of the torchaudio module.

        |STFT|^2 is taken as re^2 + im^2 because complex ``abs`` is slow on CPU.
        """
        spec = mel_module(x.device, self.recipe).spectrogram
        stft = torch.stft(x.float(), spec.n_fft, spec.hop_length, spec.win_length, spec.window, center=spec.center,
                          pad_mode=spec.pad_mode, normalized=False, onesided=True, return_complex=True)
        return torch.view_as_real(stft).pow(2).sum(-1)

    def mel(self, power: Tensor) -> Tensor:
        """(N, 1025, T) STFT power -> (N, 1, 32, T) mel power."""
        return mel_module(power.device, self.recipe).mel_scale(power).unsqueeze(1)

    def power(self, x: Tensor) -> Tensor:
        """(N, L) -> mel power spectrogram (N, 1, 32, T)."""
        return self.mel(self.stft_power(x))

    def to_db(self, p: Tensor) -> Tensor:
        """(N, 1, 32, T) power -> (N, 1, 32, 32) normalised dB (time padded with the floor / cut)."""
        db = power_to_db(p, ref_max=self.recipe == "authors")
        t = db.shape[-1]
        if t < self.frames:
            db = F.pad(db, (0, self.frames - t), value=float(db.amin()))
        return (db[..., : self.frames] - self.db_mean) / self.db_std

    def __call__(self, x: Tensor) -> Tensor:
        return self.to_db(self.power(x))


def coloured_noise(n: int, length: int, like: Tensor, generator: torch.Generator | None) -> Tensor:
    """(n, length) synthetic noise with unit RMS, power spectrum 1/f^beta, beta ~ U(0, 2) (white to brown)."""
    white = randn((n, length), like, generator)
    beta = uniform(n, 0.0, 2.0, like, generator)
    freqs = torch.arange(length // 2 + 1, device=like.device).clamp(min=1).float()
    noise = torch.fft.irfft(torch.fft.rfft(white) * freqs.pow(-beta[:, None] / 2), n=length)
    noise = noise - noise.mean(1, keepdim=True)
    return noise / noise.pow(2).mean(1, keepdim=True).sqrt().clamp(min=1e-8)


def read_at(x: Tensor, pos: Tensor, valid: Tensor, edge: str) -> Tensor:
    """Linear interpolation of x (N, C, L) at fractional positions pos (N, M) -> (N, C, M).

    ``edge``: beyond sample L-1 repeat the last one ("clamp", as ``np.interp``) or read zero
    ("zero", as librosa's phase vocoder, which pads two zero frames). Outputs where ``valid``
    (N, M) is False are 0 (the authors' fix-length padding).
    """
    n, c, length = x.shape
    pos = pos.clamp(min=0.0)
    i0 = pos.floor().long().clamp(max=length - 1)
    frac = (pos - i0).to(x.dtype).unsqueeze(1)
    padded = torch.cat([x, x[..., -1:] if edge == "clamp" else torch.zeros_like(x[..., -1:])], -1)
    gather = lambda i: padded.gather(2, i.unsqueeze(1).expand(n, c, -1))  # noqa: E731
    out = (1 - frac) * gather(i0) + frac * gather((i0 + 1).clamp(max=length))
    return out * valid.unsqueeze(1).to(x.dtype)


def speed_change(x: Tensor, scale: Tensor) -> Tensor:
    """Speed/pitch change of (N, L) waveforms, scale (N,): output t reads x at t / (1 + scale).

    The authors' ``np.interp(arange(0, L, 1 / (1 + s)), arange(L), x)`` followed by cutting or
    zero-padding the end back to L samples.
    """
    n, length = x.shape
    t = torch.arange(length, device=x.device, dtype=torch.float64)
    step = 1.0 / (1.0 + scale.double())
    kept = torch.ceil(length / step)  # len(np.arange(0, L, step))
    pos, valid = t[None] * step[:, None], t[None] < kept[:, None]
    return read_at(x.unsqueeze(1), pos, valid, "clamp").squeeze(1)


def stretch_and_shift(mag: Tensor, rate: Tensor, shift: Tensor) -> Tensor:
    """Time stretch then shift of STFT magnitudes (N, F, T); rate (N,) float, shift (N,) int frames.

    Stretch: output frame t reads frame t * rate (linear interpolation of magnitudes, as librosa's
    ``phase_vocoder``), ceil(T / rate) frames. Shift (the authors' pad-and-cut): shift > 0 drops
    the first frames, shift < 0 inserts silence at the start; the result is cut / zero-padded to T.
    """
    n, _, frames = mag.shape
    t = torch.arange(frames, device=mag.device, dtype=torch.float64)[None]
    rate = rate.double()[:, None]
    kept = torch.ceil(frames / rate)  # frames after the stretch
    src = t + shift.double()[:, None]  # frame of the stretched spectrogram that lands at t
    valid = (src >= 0) & (src < kept) & (t < kept)
    return read_at(mag, src * rate, valid, "zero")


class SpeechAugment(LogMel):
    """Random view, ``recipe="ours"``: waveforms (N, L) -> normalised log-mel (N, 1, 32, 32).

    Each op with probability ``p``: amplitude x U(0.7, 1.1); speed/pitch x U(0.8, 1.2) and time
    shift U(-0.1, 0.1) s, one linear interpolation about the clip's centre; background noise at
    SNR U(5, 20) dB in the waveform (pieces of ``noise_bank``, else :func:`coloured_noise`);
    time stretch x U(0.8, 1.2) of the mel power's time axis about the centre.

    ``noise_bank``: 1-D float32 waveform of background noise (16 kHz), or None for synthetic noise.
    ``ops``: the augmentations in use (default all of ``OPS``), each applied with probability ``p``.
    The random numbers drawn do not depend on ``ops``, so a seed gives the same draws either way.
    """

    OPS = ("gain", "speed", "shift", "noise", "stretch")

    def __init__(self, db_mean: float = -11.0, db_std: float = 20.0, noise_bank: Optional[Tensor] = None,
                 p: float = 0.5, gain=(0.7, 1.1), speed: float = 0.2, shift_s: float = 0.1, snr_db=(5.0, 20.0),
                 stretch: float = 0.2, ops: tuple[str, ...] = OPS):
        super().__init__(db_mean, db_std)
        unknown = set(ops) - set(self.OPS)
        if unknown:
            raise ValueError(f"ops has unknown entries {sorted(unknown)}; valid: {list(self.OPS)}")
        self.noise_bank, self.p, self.gain, self.speed = noise_bank, p, gain, speed
        self.shift_s, self.snr_db, self.stretch, self.ops = shift_s, snr_db, stretch, tuple(ops)
        self._bank: dict[str, Tensor] = {}

    def _coin(self, n: int, x: Tensor, g, op: str) -> Tensor:
        return (rand((n,), x, g) < self.p) & (op in self.ops)

    def _noise(self, n: int, length: int, x: Tensor, g) -> Tensor:
        """(n, length) noise with unit RMS."""
        if self.noise_bank is not None and len(self.noise_bank) > length:
            key = str(x.device)
            if key not in self._bank:
                self._bank[key] = self.noise_bank.to(x.device)
            bank = self._bank[key]
            start = (rand((n,), x, g) * (len(bank) - length)).long()
            noise = bank[start[:, None] + torch.arange(length, device=x.device)]
            noise = noise - noise.mean(1, keepdim=True)
            return noise / noise.pow(2).mean(1, keepdim=True).sqrt().clamp(min=1e-8)
        return coloured_noise(n, length, x, g)

    def waveform_view(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        """Time-domain part: (N, L) -> (N, L): amplitude, speed/pitch + shift, background noise."""
        x = x.float()
        n, length = x.shape
        one, zero = torch.ones(n, device=x.device), torch.zeros(n, device=x.device)
        gain = torch.where(self._coin(n, x, generator, "gain"), uniform(n, *self.gain, x, generator), one)
        speed = torch.where(self._coin(n, x, generator, "speed"),
                            uniform(n, 1 - self.speed, 1 + self.speed, x, generator), one)
        shift = self.shift_s * SAMPLE_RATE
        shift = torch.where(self._coin(n, x, generator, "shift"), uniform(n, -shift, shift, x, generator), zero)
        # output sample t reads input position c + speed * (t - c) - shift, c = the centre; in
        # grid_sample's [-1, 1] coordinates that is speed * u - 2 shift / (L - 1): one linear
        # interpolation for the whole batch (zeros outside the clip)
        u = torch.linspace(-1.0, 1.0, length, device=x.device)
        gx = speed[:, None] * u[None] - shift[:, None] * (2.0 / (length - 1))
        grid = torch.stack([gx, torch.zeros_like(gx)], -1).unsqueeze(1)  # (N, 1, L, 2)
        y = F.grid_sample(x.reshape(n, 1, 1, length), grid, mode="bilinear", padding_mode="zeros",
                          align_corners=True).view(n, length) * gain[:, None]
        use = self._coin(n, x, generator, "noise")
        snr = uniform(n, *self.snr_db, x, generator)
        rms = y.pow(2).mean(1).sqrt().clamp(min=1e-2)  # floor: silence clips get faint noise too
        scale = torch.where(use, rms * 10 ** (-snr / 20), zero)
        return y + scale[:, None] * self._noise(n, length, x, generator)

    def __call__(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        y = self.waveform_view(x, generator)
        p = self.power(y)  # (N, 1, 32, T)
        n = p.shape[0]
        rate = torch.where(self._coin(n, y, generator, "stretch"),
                           uniform(n, 1 - self.stretch, 1 + self.stretch, y, generator), torch.ones(n, device=y.device))
        theta = torch.zeros(n, 2, 3, device=y.device)
        theta[:, 0, 0], theta[:, 1, 1] = rate, 1.0  # x (time) read at rate * u: stretch about the centre
        grid = F.affine_grid(theta, list(p.shape), align_corners=False)
        p = F.grid_sample(p, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        return self.to_db(p)




class AuthorsSpeechAugment(LogMel):
    """Random view, ``recipe="authors"``: waveforms (N, L) -> log-mel dB (N, 1, 32, 32); see the module docstring.

    ``noise_bank``: 1-D background-noise waveform (16 kHz), cut into 1 s pieces as the authors do;
    None (e.g. FSDD, or a Speech Commands copy without ``_background_noise_``): :func:`coloured_noise`
    at the clip's RMS (floor 0.01) instead. The noise mix ``(1 - p) S + p N`` of complex STFTs is
    taken in power, ``(1 - p)^2 |S|^2 + p^2 |N|^2``: the cross term, zero on average for unrelated
    phases, is dropped (the stretched phases of librosa's phase vocoder are not modelled).
    """

    OPS = ("gain", "speed", "stretch", "shift", "noise")

    def __init__(self, db_mean: float = 0.0, db_std: float = 1.0, noise_bank: Optional[Tensor] = None,
                 p: float = 0.5, gain=(0.7, 1.1), speed: float = 0.2, stretch: float = 0.2, shift_frames: int = 8,
                 noise_max: float = 0.45, ops: tuple[str, ...] = OPS):
        super().__init__(db_mean, db_std, recipe="authors")
        unknown = set(ops) - set(self.OPS)
        if unknown:
            raise ValueError(f"ops has unknown entries {sorted(unknown)}; valid: {list(self.OPS)}")
        self.p, self.gain, self.speed, self.stretch = p, gain, speed, stretch
        self.shift_frames, self.noise_max, self.ops = shift_frames, noise_max, tuple(ops)
        pieces = None if noise_bank is None else len(noise_bank) // SAMPLE_RATE
        self.noise_pieces = noise_bank[: pieces * SAMPLE_RATE].view(pieces, SAMPLE_RATE) if pieces else None

    def _draw(self, n: int, x: Tensor, g, op: str, low: float, high: float, neutral: float) -> Tensor:
        """(n,) parameter ~ U(low, high) where the op's coin (prob. p) says so, else ``neutral``."""
        use = (rand((n,), x, g) < self.p) & (op in self.ops)
        return torch.where(use, uniform(n, low, high, x, g), torch.full((n,), neutral, device=x.device))

    def magnitude_view(self, x: Tensor, g: Optional[torch.Generator] = None) -> Tensor:
        """(N, L) -> augmented STFT magnitude (N, 1025, 32): amplitude, speed, STFT, stretch, shift."""
        n = x.shape[0]
        x = x.float() * self._draw(n, x, g, "gain", *self.gain, 1.0)[:, None]
        x = speed_change(x, self._draw(n, x, g, "speed", -self.speed, self.speed, 0.0))
        rate = 1.0 + self._draw(n, x, g, "stretch", -self.stretch, self.stretch, 0.0)
        k = self.shift_frames
        shift = self._draw(n, x, g, "shift", -k - 0.5, k + 0.5, 0.0).round()  # integer in [-k, k]
        return stretch_and_shift(self.stft_power(x).sqrt(), rate, shift)

    def _noise(self, x: Tensor, g) -> Tensor:
        n, length = x.shape
        if self.noise_pieces is None:
            rms = x.float().pow(2).mean(1, keepdim=True).sqrt().clamp(min=1e-2)
            return coloured_noise(n, length, x, g) * rms
        if self.noise_pieces.device != x.device:  # moved once, then reused
            self.noise_pieces = self.noise_pieces.to(x.device)
        pieces = self.noise_pieces
        return pieces[(rand((n,), x, g) * len(pieces)).long().clamp(max=len(pieces) - 1)][:, :length]

    def __call__(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        n = x.shape[0]
        mag = self.magnitude_view(x, generator)
        frac = self._draw(n, x, generator, "noise", 0.0, self.noise_max, 0.0)[:, None, None]
        noise = self.magnitude_view(self._noise(x, generator), generator)
        power = ((1 - frac) * mag).pow(2) + (frac * noise).pow(2)
        return self.to_db(self.mel(power))
