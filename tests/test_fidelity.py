"""Faithful to the authors' code (github kibok90/imix): each ``recipe="authors"`` / paper-preset
choice checked against a numpy transcription of what their code (and the librosa functions it
calls) computes. The transcriptions are written from the formulas, so the tests need no librosa;
where librosa is installed, it is compared too."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from imix_teach.data.speech_features import (
    AuthorsSpeechAugment, LogMel, SpeechAugment, power_to_db, speed_change, stretch_and_shift,
)

SR, N_FFT, HOP, N_MELS = 16_000, 2048, 512, 32


# ----------------------------------------------------------------------------- transcriptions
def slaney_mel_filters(sr: int = SR, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """librosa.filters.mel(sr, n_fft, n_mels) defaults: Slaney mel scale, 'slaney' area norm."""
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp

    def hz_to_mel(f):
        f = np.asarray(f, dtype=np.float64)
        return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, f / f_sp)

    def mel_to_hz(m):
        return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)

    fft_freqs = np.linspace(0, sr / 2, 1 + n_fft // 2)
    mel_f = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(sr / 2), n_mels + 2))
    fdiff, ramps = np.diff(mel_f), mel_f[:, None] - fft_freqs[None]
    lower, upper = -ramps[:-2] / fdiff[:-1, None], ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    return weights * (2.0 / (mel_f[2:] - mel_f[:-2]))[:, None]


def stft_power(y: np.ndarray) -> np.ndarray:
    """|librosa.stft(y, n_fft=2048, hop_length=512)|^2 with reflect padding (librosa < 0.10 default)."""
    y = np.pad(y.astype(np.float64), N_FFT // 2, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)  # periodic Hann
    frames = np.stack([y[i:i + N_FFT] for i in range(0, len(y) - N_FFT + 1, HOP)], 1)
    return np.abs(np.fft.rfft(frames * window[:, None], axis=0)) ** 2


def authors_db(power: np.ndarray) -> np.ndarray:
    """librosa.power_to_db(S, ref=np.max): amin 1e-10, top_db 80."""
    log_spec = 10 * np.log10(np.maximum(1e-10, power)) - 10 * np.log10(max(1e-10, power.max()))
    return np.maximum(log_spec, log_spec.max() - 80.0)


def authors_logmel(y: np.ndarray) -> np.ndarray:
    """Their eval transform: ToMelSpectrogram(n_mels=32) = power_to_db(melspectrogram, ref=np.max)."""
    return authors_db(slaney_mel_filters() @ stft_power(y))


def clips(n: int = 4, seed: int = 0) -> torch.Tensor:
    """Speech-like 1 s test signals: decaying chirps in noise, varied loudness (no data files needed)."""
    g = np.random.default_rng(seed)
    t = np.arange(SR) / SR
    out = []
    for i in range(n):
        f0 = 150 + 100 * i
        chirp = np.sin(2 * np.pi * (f0 * t + 400 * t ** 2)) * np.exp(-((t - 0.5) / 0.2) ** 2)
        out.append((0.05 + 0.2 * i) * chirp + 0.003 * g.standard_normal(SR))
    return torch.tensor(np.stack(out), dtype=torch.float32)


# ----------------------------------------------------------------------------- speech features
def test_authors_logmel_matches_transcription():
    x = clips()
    ours = LogMel(0.0, 1.0, recipe="authors")(x)[:, 0].numpy()
    ref = np.stack([authors_logmel(w) for w in x.numpy()])
    assert ours.shape == ref.shape == (4, 32, 32)
    assert np.abs(ours - ref).max() < 1e-3  # dB
    assert np.allclose(ours.max((1, 2)), 0.0) and ours.min() >= -80.0  # every clip peaks at 0 dB


def test_authors_logmel_matches_librosa_if_installed():
    librosa = pytest.importorskip("librosa")
    x = clips()
    ours = LogMel(0.0, 1.0, recipe="authors")(x)[:, 0].numpy()
    mel = [librosa.feature.melspectrogram(y=w, sr=SR, n_mels=N_MELS, pad_mode="reflect") for w in x.numpy()]
    ref = np.stack([librosa.power_to_db(m, ref=np.max) for m in mel])
    assert np.abs(ours - ref).max() < 1e-3


def test_ref_max_makes_features_loudness_free_and_ours_not():
    x = clips()
    authors, ours = LogMel(0.0, 1.0, recipe="authors"), LogMel(0.0, 1.0, recipe="ours")
    assert torch.allclose(authors(0.7 * x), authors(x), atol=1e-3)
    shift = (ours(0.7 * x) - ours(x)).mean()  # dB relative to 1: 20 log10(0.7) = -3.1 dB
    assert abs(float(shift) - 20 * math.log10(0.7)) < 0.05


def test_power_to_db_floor_and_ref():
    p = torch.tensor([[1e-12, 1e-3, 1.0, 100.0]])
    assert torch.allclose(power_to_db(p, ref_max=True), torch.tensor([[-80.0, -50.0, -20.0, 0.0]]))
    assert torch.allclose(power_to_db(p, ref_max=False), torch.tensor([[-60.0, -30.0, 0.0, 20.0]]))


@pytest.mark.parametrize("scale", [-0.2, -0.05, 0.0, 0.13, 0.2])
def test_speed_change_matches_np_interp(scale):
    x = clips(2)
    ours = speed_change(x, torch.full((2,), scale)).numpy()
    for w, o in zip(x.numpy(), ours):
        # ChangeSpeedAndPitchAudio then FixAudioLength (cut or zero-pad the end)
        y = np.interp(np.arange(0, len(w), 1.0 / (1 + scale)), np.arange(len(w)), w)
        y = y[:SR] if len(y) >= SR else np.pad(y, (0, SR - len(y)))
        assert np.abs(o - y).max() < 1e-5


def _authors_stretch_shift(mag: np.ndarray, rate: float, shift: int) -> np.ndarray:
    """Magnitude of phase_vocoder(S, rate) -> TimeshiftAudioOnSTFT(shift) -> FixSTFTDimension."""
    frames = mag.shape[1]
    padded = np.pad(mag, ((0, 0), (0, 2)))
    steps = np.arange(0, frames, rate, dtype=np.float64)
    out = np.stack([(1 - s % 1) * padded[:, int(s)] + (s % 1) * padded[:, int(s) + 1] for s in steps], 1)
    a, b = -min(0, shift), max(0, shift)
    out = np.pad(out, ((0, 0), (a, b)))
    out = out[:, b:] if a == 0 else out[:, :-a]
    return out[:, :frames] if out.shape[1] >= frames else np.pad(out, ((0, 0), (0, frames - out.shape[1])))


@pytest.mark.parametrize("rate,shift", [(1.0, 0), (0.8, 0), (1.2, 0), (1.0, 8), (1.0, -8), (0.85, 5), (1.17, -3)])
def test_stretch_and_shift_matches_transcription(rate, shift):
    mag = torch.rand(1, 1025, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ours = stretch_and_shift(mag, torch.tensor([rate], dtype=torch.float64), torch.tensor([shift]))[0].numpy()
    assert np.abs(ours - _authors_stretch_shift(mag[0].numpy(), rate, shift)).max() < 1e-9


def test_phase_vocoder_magnitude_if_librosa_installed():
    librosa = pytest.importorskip("librosa")
    w = clips(1)[0].numpy()
    stft = librosa.stft(w, n_fft=N_FFT, hop_length=HOP, pad_mode="reflect")
    ref = np.abs(librosa.phase_vocoder(stft, rate=1.15, hop_length=HOP))
    ours = stretch_and_shift(torch.tensor(np.abs(stft))[None], torch.tensor([1.15]), torch.tensor([0]))[0].numpy()
    assert np.abs(ours[:, : ref.shape[1]] - ref).max() < 1e-4 * np.abs(stft).max()


def test_authors_augment_ranges_and_determinism():
    x = clips(6)
    aug = AuthorsSpeechAugment()
    a = aug(x, torch.Generator().manual_seed(1))
    b = aug(x, torch.Generator().manual_seed(1))
    assert a.shape == (6, 1, 32, 32) and torch.equal(a, b)
    assert float(a.amax()) <= 1e-4 and float(a.amin()) >= -80.0 - 1e-4
    still = AuthorsSpeechAugment(p=0.0)(x, torch.Generator().manual_seed(1))
    assert torch.allclose(still, LogMel(0.0, 1.0, recipe="authors")(x), atol=1e-4)
    for op in AuthorsSpeechAugment.OPS:
        if op == "gain":  # ref=max removes loudness: amplitude alone changes nothing
            continue
        out = AuthorsSpeechAugment(p=1.0, ops=(op,))(x, torch.Generator().manual_seed(2))
        assert not torch.allclose(out, still, atol=1e-2), op


def test_time_shift_ranges():
    """Ours shifts by up to 0.1 s (1,600 samples); the authors' up to 8 STFT frames = 0.256 s."""
    assert SpeechAugment().shift_s == 0.1
    assert AuthorsSpeechAugment().shift_frames * HOP / SR == pytest.approx(0.256)


# ----------------------------------------------------------------------------- models
def _authors_mlp_params(groups=None, in_features=None) -> int:
    """Parameters of the authors' mlp_5layer (widths 2048-2048-4096-4096-8192), its ``fc`` head excluded."""
    if groups is not None:  # one Linear(c, 64) with bias per column group, no BN
        stem, prev = sum(c * 64 + 64 for c in groups), 64 * len(groups)
    else:  # Linear(in, 64, bias=False) + BN(64)
        stem, prev = in_features * 64 + 2 * 64, 64
    body = 0
    for size in (2048, 2048, 4096, 4096):  # Linear without bias + BN
        body += prev * size + 2 * size
        prev = size
    return stem + body + prev * 8192 + 8192  # last_fc with bias, no BN, then maxout


def test_tabular_mlp_authors_layout_parameter_counts():
    from imix_teach.models import TabularMLP

    def count(m):
        return sum(p.numel() for p in m.parameters())

    covtype = TabularMLP(54, stem=64, groups=(10, 4, 40), last_bn=False)
    higgs = TabularMLP(28, stem=64, last_bn=False)
    assert count(covtype) == _authors_mlp_params(groups=(10, 4, 40)) == 63_344_192
    assert count(higgs) == _authors_mlp_params(in_features=28) == 63_080_320
    assert count(TabularMLP(54)) == 63_066_112  # ours: no stem, BN before the maxout
    x = torch.randn(8, 54)
    assert covtype(x).shape == (8, 2048) and covtype.out_dim == 2048
    g = covtype[0]
    assert torch.allclose(g(x)[:, 64:128], g.linears[1](x[:, 10:14]))  # wilderness columns alone
    with pytest.raises(ValueError, match="groups"):
        TabularMLP(54, stem=64, groups=(10, 4))


def test_projection_head_output_bn():
    from imix_teach.models import prediction_head, projection_head

    plain, with_bn = projection_head(512, 64, 16), projection_head(512, 64, 16, out_bn=True)
    assert len(with_bn) == len(plain) + 1 and with_bn[-1].out_features == plain[-1].out_features == 16
    out = with_bn.train()(torch.randn(32, 512))
    assert torch.allclose(out.mean(0), torch.zeros(16), atol=1e-5)  # batch-normalised embeddings
    assert isinstance(prediction_head(16, 32, out_bn=True)[-1], torch.nn.BatchNorm1d)


# ----------------------------------------------------------------------------- mixing
def test_inputmix_pair_draws_partners_from_both_views():
    from imix_teach.mixing import inputmix, inputmix_pair

    n = 64
    eye = torch.eye(2 * n)  # row i = one-hot of input i: outputs show who was mixed in
    out1, out2 = inputmix_pair(eye[:n], eye[n:], generator=torch.Generator().manual_seed(0))
    out = torch.cat([out1, out2])
    assert torch.allclose(out.sum(1), torch.ones(2 * n)) and (out.diagonal() >= 0.5 - 1e-6).all()
    cross = out1[:, n:].sum() + out2[:, :n].sum()  # weight taken from the other view
    assert cross > 0.1 * n  # about half the partner weight (0.5 of each row) in expectation
    within = inputmix(eye[:n, :n], generator=torch.Generator().manual_seed(0))  # ours: one view only
    assert torch.allclose(within.sum(1), torch.ones(n))
    with pytest.raises(ValueError, match="same shape"):
        inputmix_pair(eye[:n], eye[:n - 1])


# ----------------------------------------------------------------------------- the paper preset
def test_paper_preset_follows_the_authors_code():
    from imix_teach import reproduce as rp
    from imix_teach.engine import build

    p = rp.paper_preset()
    by = {s.dataset: s for s in p.datasets}
    for s in by.values():  # builder.mixup: one lam per sample, max(lam, 1 - lam): what produced Table 1
        assert (s.template.mixing.per_sample, s.template.mixing.max_lam, s.template.mixing.mode) == (True, True, "mixup")
    for name in ("cifar10", "cifar100"):
        s = by[name]
        assert s.template.data.train_options["crop_scale"] == (0.2, 1.0)
        assert s.method_options["npair"]["proj_bn"] and s.method_options["npair"]["single_pass"]  # --proj mlpbn
        assert not s.method_options["moco"]["proj_bn"] and not s.method_options["byol"]["proj_bn"]  # mlpbn1
    sc = by["speechcommands"].template.data
    assert sc.train_options["recipe"] == sc.test_options["recipe"] == "authors"
    for s in (by["speechcommands"], by["covtype"], by["higgs"]):
        assert all(s.method_options[m]["proj_bn"] for m in ("npair", "moco", "byol")), s.dataset
    cov, higgs = by["covtype"].template.data, by["higgs"].template.data
    assert cov.train_options == cov.test_options == {"standardise": "numeric", "split_rule": "authors"}
    assert higgs.train_options["train_rows"] == higgs.test_options["train_rows"] == "random"
    mlp = build(by["covtype"].template, (54,), 15_120).encoder  # the authors' column groups for CovType
    assert sum(q.numel() for q in mlp.parameters()) == _authors_mlp_params(groups=(10, 4, 40))
    for s in rp.cpu_preset().datasets:  # the committed CPU results: one lam per batch (the paper's text)
        assert not (s.template.mixing.per_sample or s.template.mixing.max_lam)


def test_imagenet_preset_is_the_papers_icutmix_setting():
    from imix_teach import reproduce as rp
    from imix_teach.engine import build
    from imix_teach.run_config import Encoder

    by = {s.dataset: s for s in rp.get_preset("paper-imagenet").datasets}
    assert set(by) == {"imagenet", "imagenet100"}
    s, t = by["imagenet100"], by["imagenet100"].template
    assert (t.mixing.mode, t.mixing.per_sample, t.mixing.max_lam) == ("cutmix", False, True)  # builder.cutmix
    assert (t.optim.batch_size, t.optim.epochs, t.method.tau, t.optim.lr, t.optim.warmup_epochs) == (512, 800, 0.2, 0.06, 10)
    assert s.method_options["moco"]["queue_size"] == 65_536 and s.method_options["moco"]["momentum"] == 0.999
    enc = build(t.replace(encoder=Encoder("resnet-imagenet", 18)), (3, 224, 224), 1000).encoder
    assert enc.eval()(torch.zeros(1, 3, 64, 64)).shape == (1, enc.out_dim) == (1, 512)
    assert enc.conv1.kernel_size == (7, 7)  # ImageNet stem


def test_authors_noise_bank_is_cut_into_one_second_pieces():
    bank = torch.arange(3 * SR + 100, dtype=torch.float32)
    aug = AuthorsSpeechAugment(noise_bank=bank)
    assert aug.noise_pieces.shape == (3, SR) and aug.noise_pieces[1, 0] == SR  # the 100-sample tail dropped
    noise = aug._noise(torch.zeros(5, SR), torch.Generator().manual_seed(0))
    assert noise.shape == (5, SR) and set((noise[:, 0] / SR).tolist()) <= {0.0, 1.0, 2.0}


def test_paper_preset_puts_a_bn_on_the_tabular_byol_predictor_output_only():
    from imix_teach import reproduce as rp
    from imix_teach.models import OutputBatchNorm

    preset = rp.get_preset("paper")
    kwargs = {s.domain: s.method_options["byol"] for s in preset.datasets}
    assert kwargs["tabular"]["pred_bn"] and not kwargs["image"]["pred_bn"]
    from imix_teach.methods import build_method
    from imix_teach.models import TabularMLP

    byol = build_method("byol", TabularMLP(6, widths=(16, 16, 32)), **dict(kwargs["tabular"], proj_hidden=16,
                                                                           proj_dim=8, pred_hidden=16))
    assert isinstance(byol.predictor[-1], OutputBatchNorm)
