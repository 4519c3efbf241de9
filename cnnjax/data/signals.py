"""Procedural ECG-like 1D signals (`signals`): the data set of the 1D CNN configuration.

Each record is `image` uint8 (length, channels) and `label` in
`CLASS_NAMES` = normal, bradycardia, tachycardia, afib, pvc. Beats are sums of Gaussian
waves (P, Q, R, S, T; the ECGSYN model of McSharry et al. 2003), sampled at `SAMPLE_RATE` Hz:

- normal: 60-100 beats/min, RR jitter of 1-4 %;
- bradycardia: 38-55 beats/min; tachycardia: 110-170 beats/min;
- afib: 70-150 beats/min with irregular RR (coefficient of variation 15-30 %), no P wave,
  small 4-8 Hz fibrillatory baseline waves;
- pvc: a normal rhythm where 1-3 beats come early (60-75 % of RR) with a wide QRS, no P wave
  and an inverted T wave, each followed by a compensatory pause.

Every record gets a random amplitude, baseline wander (0.1-0.5 Hz), Gaussian noise and a
per-lead gain and sign. Values v (millivolt-like units) are stored as
uint8 = clip(round((v + 1.5) * 255 / 4), 0, 255), i.e. v in [-1.5, 2.5].
Like `shapes`, a record depends only on (seed, split, index): nothing is stored.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from cnnjax.checks import check_int
from cnnjax.data.info import DataInfo, check_split

CLASS_NAMES: tuple[str, ...] = ("normal", "bradycardia", "tachycardia", "afib", "pvc")
SAMPLE_RATE = 100.0
DEFAULT_LENGTH = 1024
SPLITS: tuple[str, ...] = ("train", "val", "test")
DEFAULT_NUM_EXAMPLES = {"train": 5_000, "val": 500, "test": 500}
_SPLIT_CODE = {"train": 0, "val": 1, "test": 2}

# (amplitude, offset from R in seconds, width in seconds) of P, Q, R, S, T.
_NORMAL_WAVES = ((0.15, -0.2, 0.025), (-0.12, -0.035, 0.01), (1.0, 0.0, 0.012),
                 (-0.25, 0.035, 0.01), (0.3, 0.25, 0.05))
_PVC_WAVES = ((-0.2, -0.05, 0.03), (1.3, 0.0, 0.035), (-0.45, 0.09, 0.04),
              (-0.35, 0.32, 0.07))


def _rr_series(rng: np.random.Generator, cls: int, duration: float) -> list[tuple[float, bool]]:
    """(time of R peak in seconds, is_pvc) for every beat covering [0, duration]."""
    rate = {1: (38, 55), 2: (110, 170), 3: (70, 150)}.get(cls, (60, 100))
    rr = 60.0 / rng.uniform(*rate)
    jitter = rng.uniform(0.15, 0.3) if cls == 3 else rng.uniform(0.01, 0.04)
    beats: list[tuple[float, bool]] = []
    t = -rng.uniform(0.0, rr)
    while t < duration + 1.0:
        beats.append((t, False))
        t += max(0.25, rr * (1.0 + jitter * rng.standard_normal()))
    if cls == 4:
        inner = [i for i, (time, _) in enumerate(beats) if 0.5 < time < duration - 0.5]
        count = min(len(inner) - 1, int(rng.integers(1, 4)))
        for i in rng.choice(inner[1:], size=max(count, 1), replace=False):
            previous = beats[i - 1][0]
            early = previous + rr * rng.uniform(0.6, 0.75)
            beats[i] = (early, True)
            # compensatory pause: the next beat keeps its place (two RR after the previous one)
    return beats


def _waves(times: np.ndarray, centre: float, waves: tuple, rr_scale: float) -> np.ndarray:
    out = np.zeros_like(times)
    for amplitude, offset, width in waves:
        shift = offset * rr_scale if offset > 0.1 else offset
        out += amplitude * np.exp(-0.5 * ((times - centre - shift) / width) ** 2)
    return out


def synthesize(rng: np.random.Generator, cls: int, length: int, channels: int) -> np.ndarray:
    """Float signal (length, channels) of class `cls` (index into `CLASS_NAMES`)."""
    t = np.arange(length) / SAMPLE_RATE
    duration = length / SAMPLE_RATE
    beats = _rr_series(rng, cls, duration)
    rr_mean = float(np.median(np.diff([b[0] for b in beats]))) if len(beats) > 1 else 1.0
    rr_scale = float(np.sqrt(rr_mean))
    base = np.zeros(length)
    normal_waves = _NORMAL_WAVES[1:] if cls == 3 else _NORMAL_WAVES
    for time, is_pvc in beats:
        if -1.0 < time < duration + 1.0:
            base += _waves(t, time, _PVC_WAVES if is_pvc else normal_waves, rr_scale)
    if cls == 3:
        frequency = rng.uniform(4.0, 8.0)
        base += rng.uniform(0.03, 0.08) * np.sin(2 * np.pi * frequency * t + rng.uniform(0, 6.3))
    base *= rng.uniform(0.7, 1.3)
    wander = rng.uniform(0.0, 0.3) * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t
                                             + rng.uniform(0, 6.3))
    gains = rng.uniform(0.5, 1.2, channels) * np.where(rng.random(channels) < 0.8, 1.0, -0.6)
    signal = base[:, None] * gains[None, :] + wander[:, None]
    return signal + rng.normal(0.0, rng.uniform(0.01, 0.06), signal.shape)


def quantize(signal: np.ndarray) -> np.ndarray:
    """Map values in [-1.5, 2.5] onto uint8 0..255 (clipping outside)."""
    return np.clip(np.rint((signal + 1.5) * (255.0 / 4.0)), 0, 255).astype(np.uint8)


class SignalsSource:
    """Random-access source of ECG-like signals; see the module docstring.

    Args:
      split: "train", "val" or "test" (independent streams of one distribution).
      num_examples: number of records (defaults 5000 / 500 / 500).
      length: samples per record (>= 256, at `SAMPLE_RATE` Hz).
      channels: number of leads.
      seed: the data set's seed.
    """

    def __init__(
        self,
        split: str = "train",
        *,
        num_examples: int | None = None,
        length: int = DEFAULT_LENGTH,
        channels: int = 1,
        seed: int = 0,
    ) -> None:
        check_split("signals", split, SPLITS)
        self.num_examples = check_int(
            DEFAULT_NUM_EXAMPLES[split] if num_examples is None else num_examples, "num_examples"
        )
        self.length = check_int(length, "length", minimum=256)
        self.channels = check_int(channels, "channels")
        self.seed = check_int(seed, "seed", minimum=0)
        self.split = split

    @property
    def info(self) -> DataInfo:
        return signals_info(self.length, self.channels)

    def __len__(self) -> int:
        return self.num_examples

    def label(self, index: int) -> int:
        """The class of record `index`."""
        return int(self._rng(index).integers(len(CLASS_NAMES)))

    @property
    def labels(self) -> np.ndarray:
        """int64 (N,) classes of every record, without synthesising the signals."""
        return np.array([self.label(i) for i in range(len(self))], np.int64)

    def _rng(self, index: int) -> np.random.Generator:
        if not 0 <= index < self.num_examples:
            raise IndexError(f"index={index}: expected 0 <= index < {self.num_examples}")
        return np.random.default_rng([self.seed, _SPLIT_CODE[self.split], int(index)])

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = self._rng(int(index))
        cls = int(rng.integers(len(CLASS_NAMES)))
        signal = synthesize(rng, cls, self.length, self.channels)
        return {"image": quantize(signal), "label": np.int64(cls)}


@functools.lru_cache(maxsize=16)
def _stats(length: int, channels: int) -> tuple[tuple, tuple]:
    source = SignalsSource("train", num_examples=64, length=length, channels=channels, seed=12345)
    values = np.stack([source[i]["image"] for i in range(64)]).astype(np.float64) / 255.0
    mean = values.mean(axis=(0, 1))
    std = values.std(axis=(0, 1))
    return tuple(round(float(m), 4) for m in mean), tuple(round(float(s), 4) for s in std)


def signals_info(length: int = DEFAULT_LENGTH, channels: int = 1) -> DataInfo:
    """Metadata of `signals` with the given length and number of leads."""
    mean, std = _stats(length, channels)
    return DataInfo(
        name="signals",
        task="classification",
        num_classes=len(CLASS_NAMES),
        class_names=CLASS_NAMES,
        image_shape=(length, channels),
        mean=mean,
        std=std,
        splits=SPLITS,
        description="Procedural ECG-like rhythms (ECGSYN-style beats) at 100 Hz.",
    )
