"""Speech datasets (Google Speech Commands, Free Spoken Digit Dataset) and their views.

``inputs`` are float32 waveforms (N, 16000): 1 s at 16 kHz (shorter clips zero-padded at the
end, longer ones centre-cropped). The model sees 32x32 log-mel spectrograms (N, 1, 32, 32)
(2048-point STFT, hop 512, 32 mel bands, dB), made by one of two recipes (loader option
``recipe``, see :mod:`imix_teach.data.speech_features`):

- ``"ours"`` (default; the committed CPU results): torchaudio's HTK mel, dB relative to power 1
  (a clip's loudness stays in the features), fixed normalisation ``DB_STATS``; views with
  amplitude, speed + shift +-0.1 s about the centre, waveform noise at SNR 5-20 dB, stretch.
- ``"authors"`` (the paper preset): the authors' code, i.e. librosa's Slaney mel with area
  normalisation and ``power_to_db(ref=np.max)`` (every clip peaks at 0 dB), no further
  normalisation; views as their transforms: amplitude, speed from the start, STFT stretch, shift
  +-8 frames (0.256 s), noise mixed as (1 - p) clip + p noise with p ~ U(0, 0.45).

WAV files are decoded with ``soundfile`` (libsndfile), not ``torchaudio.load``: since
torchaudio 2.9 ``load`` goes through TorchCodec/FFmpeg, which hosted runtimes may lack.
torchaudio still provides the Speech Commands split lists (``SPEECHCOMMANDS``), the checked
download and the spectrogram modules; FSDD's 8 kHz clips are resampled with an FFT (fast for batches).
"""
from __future__ import annotations

import re
import tarfile
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from .base import DomainData, Source, check_choice, check_int, fetch, per_class_indices, register
from .speech_features import RECIPES, SAMPLE_RATE, AuthorsSpeechAugment, LogMel, SpeechAugment
PAPER_WORDS = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
SC_VERSIONS = {1: "speech_commands_v0.01", 2: "speech_commands_v0.02"}
FSDD_URL = "https://github.com/Jakobovski/free-spoken-digit-dataset/archive/refs/tags/v1.0.10.tar.gz"
FSDD_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")
# Fixed normalisation of the dB features, per dataset: mean and std (rounded) of the log-mel dB
# values of the offline training clips (Speech Commands without silence; FSDD, whose clips are
# mostly zero padding, sits lower).
DB_STATS = {"speechcommands": (-11.0, 20.0), "fsdd": (-32.0, 26.0)}


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 samples in [-1, 1] and the sample rate; an unreadable file raises naming it."""
    import soundfile

    try:
        wave, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as err:
        raise RuntimeError(f"could not read WAV file {path}: {type(err).__name__}: {err}") from err
    return wave.mean(1), int(sr)


def fix_length(wave: np.ndarray, n: int) -> np.ndarray:
    """(L,) -> (n,): zero-pad at the end, or keep the centre n samples."""
    if len(wave) >= n:
        start = (len(wave) - n) // 2
        return wave[start:start + n]
    return np.pad(wave, (0, n - len(wave)))


def fft_resample(x: Tensor, orig: int, new: int) -> Tensor:
    """Band-limited resampling of (N, L) along the last axis via the FFT (as ``scipy.signal.resample``).

    Used instead of ``torchaudio.functional.resample`` for whole batches: its (N, 1, L) conv1d took
    ~5 s for the 2,700 FSDD clips on 2 CPU cores, this takes ~0.3 s. Clips are padded to 1 s first,
    so the FFT's periodic wrap-around meets (mostly) silence.
    """
    if orig == new:
        return x
    length = x.shape[-1]
    n_out = int(round(length * new / orig))
    spec = torch.fft.rfft(x)
    if n_out > length and length % 2 == 0:
        spec[..., -1] *= 0.5  # the old Nyquist bin is shared by +/- frequencies after upsampling
    return torch.fft.irfft(spec, n=n_out) * (n_out / length)


def read_clips(paths: list[Path], seconds: float = 1.0) -> Tensor:
    """Decode WAV files into float32 (N, 16000 * seconds) at 16 kHz (resampled where needed)."""
    n_out = int(SAMPLE_RATE * seconds)
    by_rate: dict[int, list[int]] = {}
    waves: list[np.ndarray] = []
    for i, p in enumerate(paths):
        wave, sr = read_wav(p)
        waves.append(fix_length(wave, int(sr * seconds)))
        by_rate.setdefault(sr, []).append(i)
    out = torch.zeros(len(paths), n_out)
    for sr, idx in by_rate.items():
        batch = torch.from_numpy(np.stack([waves[i] for i in idx]))
        out[idx] = fft_resample(batch, sr, SAMPLE_RATE)[:, :n_out]
    return out


def _speech_data(src: Source, split: str, waves: Tensor, labels: Tensor, classes: list[str],
                 bank: Optional[Tensor], info: dict, recipe: str) -> DomainData:
    check_choice("recipe", recipe, RECIPES)
    stats = DB_STATS[src.name] if recipe == "ours" else (0.0, 1.0)  # the authors feed raw dB
    info = {**info, "recipe": recipe, "db_mean": stats[0], "db_std": stats[1]}
    aug = SpeechAugment if recipe == "ours" else AuthorsSpeechAugment
    return DomainData(src.name, "speech", split, waves, labels, classes, (1, 32, 32),
                      aug(*stats, noise_bank=bank), LogMel(*stats, recipe=recipe), info)


def _load_noise_bank(folder: Path) -> Optional[Tensor]:
    files = sorted(folder.glob("*.wav")) if folder.is_dir() else []
    if not files:
        return None
    parts = []
    for f in files:
        wave, sr = read_wav(f)
        parts.append(fft_resample(torch.from_numpy(wave), sr, SAMPLE_RATE))
    return torch.cat(parts)


# ----------------------------------------------------------------------------- Speech Commands
def _speechcommands_folder(src: Source, folder_name: str) -> Path:
    """The version's folder, downloaded (SHA-256 checked by torchaudio) if missing and allowed."""
    from torchaudio.datasets import SPEECHCOMMANDS

    folder = src.root / "SpeechCommands" / folder_name
    if not folder.is_dir():
        if not src.download:
            raise src.missing(f"Speech Commands {folder_name}", folder)
        try:
            SPEECHCOMMANDS(str(src.root), url=folder_name, download=True)
        except Exception as err:
            raise src.download_failed(folder_name, folder, err) from err
    for lst in ("validation_list.txt", "testing_list.txt"):
        if not (folder / lst).is_file():
            raise src.missing(f"split list {lst}", folder / lst)
    return folder


@register(
    "speechcommands", "speech", ("train", "val", "test"),
    {"version": 1, "classes": "paper12", "silence": None, "per_class": None, "seed": 0, "recipe": "ours"},
    "Google Speech Commands v0.01/v0.02, 1 s 16 kHz clips; paper's 12 classes (10 words, unknown, silence)",
)
def load_speechcommands(src: Source, split: str, version: int, classes: str, silence: float | None,
                        per_class: int | None, seed: int, recipe: str) -> DomainData:
    """Speech Commands under ``<root>/SpeechCommands/speech_commands_v0.0{version}/``.

    Splits exactly as torchaudio's ``SPEECHCOMMANDS`` (``validation_list.txt``, ``testing_list.txt``,
    the rest train). ``classes="paper12"``: yes, no, up, down, left, right, on, off, stop, go,
    "unknown" (every other word), "silence"; ``"all"``: every word folder, no silence.
    ``silence``: all-zero clips appended, as a fraction of the split's clips (default 0.1 for
    train, 0 for val/test, as the paper adds silence when training). ``per_class`` picks a seeded
    subset of each word class before decoding. The offline copy has 300 clips (train 205, val 44,
    test 51), so its classes are tiny and "unknown" dominates.
    """
    version = {"1": 1, "2": 2, "v0.01": 1, "v0.02": 2, "0.01": 1, "0.02": 2}.get(str(version), version)
    check_choice("version", version, (1, 2))
    check_choice("classes", classes, ("paper12", "all"))
    check_int("per_class", per_class, 1, allow_none=True)
    frac = (0.1 if split == "train" and classes == "paper12" else 0.0) if silence is None else silence
    if not 0 <= frac <= 1 or (classes == "all" and frac > 0):
        raise ValueError(f"silence must be in [0, 1] (and 0 with classes='all'), got {silence!r}")
    folder_name = SC_VERSIONS[version]
    folder = _speechcommands_folder(src, folder_name)
    from torchaudio.datasets import SPEECHCOMMANDS

    subset = {"train": "training", "val": "validation", "test": "testing"}[split]
    ds = SPEECHCOMMANDS(str(src.root.absolute()), url=folder_name, download=False, subset=subset)
    meta = [ds.get_metadata(i) for i in range(len(ds))]  # (relpath under SpeechCommands/, sr, word, ...)
    paths = [src.root.absolute() / "SpeechCommands" / m[0] for m in meta]
    words = [m[2] for m in meta]
    present = [i for i, p in enumerate(paths) if p.is_file()]
    if len(present) < len(paths):
        warnings.warn(f"speechcommands: {len(paths) - len(present)} clips named in the {split} list are "
                      f"missing under {folder}; skipped", stacklevel=3)
        paths, words = [paths[i] for i in present], [words[i] for i in present]
    if not paths:
        raise ValueError(f"speechcommands split {split!r} is empty: no clips of it found under {folder.absolute()}")
    if classes == "paper12":
        names = PAPER_WORDS + ["unknown", "silence"]
        labels = torch.tensor([PAPER_WORDS.index(w) if w in PAPER_WORDS else 10 for w in words])
    else:
        names = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("_"))
        labels = torch.tensor([names.index(w) for w in words])
    if per_class is not None:
        n_word_classes = 11 if classes == "paper12" else len(names)
        idx = per_class_indices(labels, n_word_classes, per_class, seed, "speechcommands: ")
        paths, labels = [paths[i] for i in idx.tolist()], labels[idx]
    waves = read_clips(paths)
    n_sil = int(round(frac * len(paths)))
    files = [str(p.relative_to(folder.absolute())) for p in paths] + ["<silence>"] * n_sil
    waves = torch.cat([waves, torch.zeros(n_sil, SAMPLE_RATE)])
    labels = torch.cat([labels, torch.full((n_sil,), 11, dtype=torch.long)])
    bank = _load_noise_bank(folder / "_background_noise_")
    info = {"source": str(folder), "files": files, "silence_clips": n_sil,
            "noise": "_background_noise_ files" if bank is not None else "synthetic coloured noise (no noise files)"}
    return _speech_data(src, split, waves, labels, names, bank, info, recipe)


# ----------------------------------------------------------------------------- FSDD
def _download_fsdd(src: Source, folder: Path) -> None:
    archive = fetch(src, FSDD_URL, folder.parent / "fsdd-v1.0.10.tar.gz", "FSDD archive")  # no published checksum
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if member.isfile() and len(parts) >= 2 and parts[-2] == "recordings" and FSDD_NAME.match(parts[-1]):
                data = tar.extractfile(member)
                (folder / parts[-1]).write_bytes(data.read())


@register(
    "fsdd", "speech", ("train", "test"), {"per_class": None, "seed": 0, "recipe": "ours"},
    "Free Spoken Digit Dataset: 3,000 8 kHz recordings of digits 0-9 by 6 speakers, resampled to 16 kHz",
)
def load_fsdd(src: Source, split: str, per_class: int | None, seed: int, recipe: str) -> DomainData:
    """FSDD from ``<root>/fsdd/recordings/<digit>_<speaker>_<index>.wav`` (8 kHz -> 16 kHz).

    Split (the dataset's own rule): index 0-4 of each speaker and digit -> test (300), rest train (2,700).
    """
    check_int("per_class", per_class, 1, allow_none=True)
    folder = src.root / "fsdd" / "recordings"
    if not folder.is_dir() or not any(folder.glob("*.wav")):
        if not src.download:
            raise src.missing("FSDD recordings (<digit>_<speaker>_<index>.wav)", folder)
        _download_fsdd(src, folder)
    entries = []
    for p in folder.glob("*.wav"):
        m = FSDD_NAME.match(p.name)
        if m:
            entries.append((int(m.group(1)), m.group(2), int(m.group(3)), p))
    entries.sort(key=lambda e: e[:3])
    entries = [e for e in entries if (e[2] <= 4) == (split == "test")]
    if not entries:
        raise ValueError(f"fsdd split {split!r} is empty: no matching recordings under {folder.absolute()}")
    labels = torch.tensor([e[0] for e in entries])
    if per_class is not None:
        idx = per_class_indices(labels, 10, per_class, seed, "fsdd: ")
        entries, labels = [entries[i] for i in idx.tolist()], labels[idx]
    waves = read_clips([e[3] for e in entries])
    info = {"source": str(folder), "files": [e[3].name for e in entries],
            "split_rule": "index 0-4 of each speaker+digit -> test, the rest train",
            "noise": "synthetic coloured noise (FSDD has no noise files)"}
    return _speech_data(src, split, waves, labels, [str(d) for d in range(10)], None, info, recipe)
