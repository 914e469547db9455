"""Benchmark: feature extraction speed per ``features.type``, in hours of audio per minute of wall time
(prints numbers; no targets asserted).

Paths measured, as the featurize stage runs them:

* pipeline: :func:`compute_features_batch` on a batch of 256 windows of 1.5 s (torch for log_mel/mfcc, one
  fresh TFLite-Micro front end per window for micro);
* stream: :func:`compute_features_stream` over a 10-minute signal given in 60 s blocks.

References, measured in the same run on the same audio:

* a plain numpy loop: one ``np.fft.rfft`` per frame, then power, mel filters, log (and the DCT for mfcc);
  its output is checked against ours so the comparison is between equal results. There is no numpy version
  of the micro front end: for micro the loop computes the 40-bin log-mel (the closest plain equivalent).
* ``librosa.feature.melspectrogram`` (+ log, + DCT for mfcc) when librosa happens to be importable (it is
  not a dependency).

Ratios are ours / reference throughput (> 1: ours is faster). Best of ``--repeat`` rounds, the
implementations taking turns within each round.
Run: python -m benchmarks.featurize_speed [--repeat 3] [--threads N]
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable

import numpy as np

from wakeword.features import (
    compute_features,
    compute_features_batch,
    compute_features_stream,
    dct_matrix,
    hann_window,
    mel_filterbank,
)
from wakeword.params import FeatureParams

SR = 16000
WINDOW_S, BATCH = 1.5, 256
STREAM_S, BLOCK_S = 600.0, 60.0
TYPES = {
    "log_mel": FeatureParams(),
    "mfcc": FeatureParams(type="mfcc"),
    "micro": FeatureParams(type="micro", win_ms=30.0),
}


def _signal(n: int, seed: int) -> np.ndarray:
    """Noise with amplitude-modulated tones: a stand-in for speech over background (speed does not depend on it
    for log_mel/mfcc; micro's fixed-point front end does the same work per 10 ms whatever the input)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64) / SR
    x = 0.02 * rng.standard_normal(n)
    x += 0.2 * np.sin(2 * np.pi * 440.0 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.7 * t))
    x += 0.1 * np.sin(2 * np.pi * 1900.0 * t) * (np.sin(2 * np.pi * 0.3 * t) > 0)
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def _reference_loop(audio: np.ndarray, fp: FeatureParams) -> np.ndarray:
    """Textbook per-frame numpy: frame, window, one rfft, power, mel, log (DCT for mfcc)."""
    if fp.type == "micro":
        fp = FeatureParams()  # no numpy micro front end: the 40-bin log-mel stands in
    win, hop = fp.win_samples, fp.hop_samples
    hann = hann_window(win)
    fb = mel_filterbank(fp)
    dct = dct_matrix(fp.n_mels, fp.n_mfcc) if fp.type == "mfcc" else None
    rows = []
    for start in range(0, audio.shape[0] - win + 1, hop):
        spec = np.fft.rfft(audio[start : start + win] * hann, n=fp.n_fft)
        power = (spec.real**2 + spec.imag**2).astype(np.float32)
        row = np.log(np.maximum(fb @ power, fp.log_floor))
        rows.append(row @ dct if dct is not None else row)
    return np.asarray(rows, dtype=np.float32)


def _librosa() -> Callable[[np.ndarray, FeatureParams], np.ndarray] | None:
    try:
        import librosa
    except ImportError:
        return None

    def features(audio: np.ndarray, fp: FeatureParams) -> np.ndarray:
        if fp.type == "micro":
            fp = FeatureParams()
        mel = librosa.feature.melspectrogram(
            y=audio, sr=SR, n_fft=fp.n_fft, hop_length=fp.hop_samples, win_length=fp.win_samples, window="hann",
            center=False, power=2.0, n_mels=fp.n_mels, fmin=fp.f_min_hz, fmax=fp.f_max_hz, htk=True, norm=None,
        )
        out = np.log(np.maximum(np.swapaxes(mel, -1, -2), fp.log_floor))
        return out @ dct_matrix(fp.n_mels, fp.n_mfcc) if fp.type == "mfcc" else out

    return features


def _interleaved(fns: list[Callable[[], object]], repeat: int) -> list[tuple[float, object]]:
    """Best time of each function over ``repeat`` rounds, the functions taking turns within a round (so a
    change of load on a shared machine hits them alike); one untimed warm-up call each first."""
    outs = [fn() for fn in fns]
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            outs[i] = fn()
            best[i] = min(best[i], time.perf_counter() - t0)
    return list(zip(best, outs, strict=True))


def _h_per_min(audio_s: float, wall_s: float) -> float:
    return (audio_s / 3600.0) / (wall_s / 60.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    lib = _librosa()
    win_n = int(WINDOW_S * SR)
    windows = np.stack([_signal(win_n, s) for s in range(BATCH)])
    stream = _signal(int(STREAM_S * SR), 1000)
    block_n = int(BLOCK_S * SR)
    blocks = [stream[i : i + block_n] for i in range(0, stream.shape[0], block_n)]
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__} with {torch.get_num_threads()} "
          f"thread(s), numpy {np.__version__}; librosa: {'yes' if lib else 'not importable (skipped)'}; "
          f"best of {args.repeat}")
    print(f"pipeline: {BATCH} windows x {WINDOW_S} s ({BATCH * WINDOW_S:.0f} s of audio); "
          f"stream: {STREAM_S / 60:.0f} min in {BLOCK_S:.0f} s blocks. Throughput in hours of audio per minute.\n")
    head = f"{'type':8} {'path':9} {'ours':>9} {'np loop':>9} {'ours/loop':>10}"
    if lib:
        head += f" {'librosa':>9} {'ours/librosa':>13}"
    print(head)
    print("-" * len(head))
    for name, fp in TYPES.items():
        for path in ("pipeline", "stream"):
            if path == "pipeline":
                audio_s = BATCH * WINDOW_S
                fns = [lambda fp=fp: compute_features_batch(windows, fp),
                       lambda fp=fp: np.stack([_reference_loop(w, fp) for w in windows])]
                fns += [lambda fp=fp: lib(windows, fp)] if lib else []
            else:
                audio_s = STREAM_S
                fns = [lambda fp=fp: compute_features_stream(iter(blocks), fp), lambda fp=fp: _reference_loop(stream, fp)]
                fns += [lambda fp=fp: lib(stream, fp)] if lib else []
            timed = _interleaved(fns, args.repeat)
            (t_ours, ours), (t_ref, ref) = timed[0], timed[1]
            t_lib = timed[2][0] if lib else None
            assert isinstance(ours, np.ndarray) and isinstance(ref, np.ndarray)
            if fp.type != "micro":  # equal results, or the comparison means nothing
                np.testing.assert_allclose(ours, ref, atol=5e-3)
            elif path == "stream":  # blocks do not change micro features either
                assert np.array_equal(ours, compute_features(stream, fp))
            ours_r, ref_r = _h_per_min(audio_s, t_ours), _h_per_min(audio_s, t_ref)
            line = f"{name:8} {path:9} {ours_r:9.2f} {ref_r:9.2f} {ours_r / ref_r:10.2f}"
            if lib and t_lib is not None:
                lib_r = _h_per_min(audio_s, t_lib)
                line += f" {lib_r:9.2f} {ours_r / lib_r:13.2f}"
            print(line)
    print("\nmicro's reference columns are the numpy log-mel loop (no numpy TFLite-Micro front end exists).")


if __name__ == "__main__":
    main()
