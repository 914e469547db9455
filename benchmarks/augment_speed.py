"""Time each operation of :mod:`wakeword.augment` on a 1.5 s, 16 kHz utterance (one core).

Run: ``python benchmarks/augment_speed.py``. Prints the median milliseconds per call and, for reference,
the time to simulate 64 room impulse responses with the default ranges of ``AugmentParams``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from wakeword import augment as A

SR = 16000


def speech_like(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """A vowel-ish test signal: a 120 Hz pulse train through two resonators, amplitude-modulated at 4 Hz."""
    from scipy.signal import lfilter

    n = int(seconds * SR)
    src = np.zeros(n)
    src[:: SR // 120] = 1.0
    y = src
    for f, bw in ((700.0, 90.0), (1200.0, 110.0)):
        r = np.exp(-np.pi * bw / SR)
        y = lfilter([1.0], [1.0, -2.0 * r * np.cos(2 * np.pi * f / SR), r * r], y)
    y *= 0.5 + 0.5 * np.sin(2 * np.pi * 4.0 * np.arange(n) / SR) ** 2
    y += 0.01 * rng.standard_normal(n)
    return (0.1 * y / np.sqrt(np.mean(y * y))).astype(np.float32)


def timings_ms(fn: Callable[[], object], repeat: int = 30) -> tuple[float, float, float]:
    """(min wall, median wall, median process CPU) milliseconds per call. On a shared machine the wall
    median includes time spent waiting for a core; the CPU time and the minimum do not."""
    fn()
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return float(np.min(wall) * 1e3), float(np.median(wall) * 1e3), float(np.median(cpu) * 1e3)


def main() -> None:
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    x = speech_like(1.5, rng)
    t0 = time.perf_counter()
    rirs = A.simulate_rirs(64, np.random.default_rng(1), (0.15, 0.9), (3.0, 10.0))
    rir_s = time.perf_counter() - t0
    long_rir = max(rirs, key=len)
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(256, 148, 40)
    rows = [
        ("time_stretch 0.85", lambda: A.time_stretch(x, 0.85)),
        ("time_stretch 1.15", lambda: A.time_stretch(x, 1.15)),
        ("pitch_shift +2 st", lambda: A.pitch_shift(x, 2.0)),
        ("pitch_shift -1.3 st", lambda: A.pitch_shift(x, -1.3)),
        ("vtlp 0.8", lambda: A.vtlp(x, 0.8)),
        ("vtlp 1.2", lambda: A.vtlp(x, 1.2)),
        (f"apply_rir (longest rir, {len(long_rir)} taps)", lambda: A.apply_rir(x, long_rir, 0.5)),
        ("gain", lambda: A.gain(x, -6.0)),
        ("spec_augment, batch of 256 (per batch)", lambda: A.spec_augment(feats, gen, 0.5, 1, 10, 1, 5)),
    ]
    print(f"1.5 s utterance at {SR} Hz, one torch thread, 30 calls per row")
    print("ms per call: wall min / wall median / CPU median")
    for name, fn in rows:
        lo, med, cpu = timings_ms(fn)
        print(f"  {name:42s} {lo:7.2f} / {med:7.2f} / {cpu:7.2f}")
    lens = np.array([len(r) for r in rirs]) / SR
    print(f"simulate_rirs(64): {rir_s:.2f} s ({rir_s / 64 * 1e3:.1f} ms per room); "
          f"lengths {lens.min():.2f}-{lens.max():.2f} s, median {np.median(lens):.2f} s")


if __name__ == "__main__":
    main()
