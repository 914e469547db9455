"""Accuracy, not speed: how a finished run's float model scores positives moved up or down in frequency.

Session 23 found that Pico's voices sit on a steep slope: shifted down 3 semitones (pitch and formants
together) most of their positives pass the threshold, shifted up 3 almost none do, while the training voices
pass either way. This probe re-measures that for any run. Each positive clip of the chosen groups is scaled
to -20 dBFS RMS and centred in 3 s of a -65 dBFS noise floor; its best window (sliding by
``audio.step_ms``) is scored with the float model and the calibration's temperature, and the share of clips
at or over the threshold is printed per group and shift. Two ways of shifting: ``feature`` scales each
log-mel frame along frequency (:func:`wakeword.features.frequency_warp_maps`, what ``augment.warp_prob``
does in training) and ``audio`` shifts the waveform (:func:`wakeword.augment.pitch_shift`, what
``augment.pitch_prob`` does; slower). A group is ``SPLIT:VALUE``, VALUE matching a manifest row's voice,
engine or group (``heldout:en-US``, ``train:piper``, ``test:espeak``).

Run after `dvc repro`:  python -m benchmarks.spectral_probe [REPO_DIR] [--groups G,G] [--semitones -3,0,3]
[--threshold T] [--audio] [--per-group N] [--json OUT]
REPO_DIR needs params.yaml, data/split, data/synth (or own data/raw clips), models/model.pt,
models/cmvn.json and metrics/calibration.json.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

PAD_S = 3.0
LEVEL_DBFS = -20.0
FLOOR_DBFS = -65.0
DEFAULT_GROUPS = "heldout:en-US,heldout:en-GB,train:piper,train:espeak,test:espeak"


def parse_groups(text: str) -> list[tuple[str, str]]:
    """``"heldout:en-US,train:piper"`` -> ``[("heldout", "en-US"), ("train", "piper")]``."""
    out = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        split, sep, value = part.partition(":")
        if not sep or not split or not value:
            raise ValueError(f"--groups: {part!r} is not SPLIT:VALUE (e.g. heldout:en-US)")
        out.append((split, value))
    if not out:
        raise ValueError("--groups: no group given")
    return out


def select_positives(rows: Sequence[dict[str, Any]], value: str, limit: int) -> list[dict[str, Any]]:
    """The first ``limit`` positive rows whose voice, engine or group equals ``value``."""
    hits = [r for r in rows if r.get("kind") == "positive"
            and value in (r.get("voice"), r.get("engine"), r.get("group"))]
    return hits[:limit]


def place_in_floor(x: np.ndarray, rng: np.random.Generator, sr: int = 16000, pad_s: float = PAD_S,
                   level_dbfs: float = LEVEL_DBFS, floor_dbfs: float = FLOOR_DBFS) -> np.ndarray:
    """``x`` at ``level_dbfs`` RMS, centred in ``pad_s`` seconds of Gaussian noise at ``floor_dbfs`` RMS (cut
    to that length if longer)."""
    n = round(pad_s * sr)
    x = np.asarray(x, dtype=np.float64)[:n]
    rms = float(np.sqrt(np.mean(x ** 2))) if x.size else 0.0
    out = rng.normal(0.0, 10 ** (floor_dbfs / 20), n)
    if rms > 0:
        start = (n - x.size) // 2
        out[start:start + x.size] += x / rms * 10 ** (level_dbfs / 20)
    return out.astype(np.float32)


def best_score(feats: np.ndarray, logit_fn: Callable[[np.ndarray], np.ndarray], window: int, step: int,
               temperature: float) -> float:
    """Highest calibrated probability of any window of ``feats`` (:func:`wakeword.scoring.probabilities`)."""
    from wakeword.scoring import probabilities, sliding_windows

    w = sliding_windows(feats, window, step)
    if w.shape[0] == 0:
        raise ValueError(f"{feats.shape[0]} frames are fewer than the model's window ({window})")
    return float(np.max(probabilities(logit_fn(np.ascontiguousarray(w)), temperature)))


def measure(repo: Path, groups: Sequence[tuple[str, str]], semitones: Sequence[float], threshold: float | None,
            audio: bool, per_group: int) -> dict[str, Any]:
    import soundfile as sf
    from tqdm import tqdm

    from wakeword.augment import pitch_shift
    from wakeword.checkpoint import load_checkpoint
    from wakeword.cmvn import load_cmvn
    from wakeword.evaluation import load_calibration
    from wakeword.features import compute_features, frequency_warp_maps
    from wakeword.params import load_params
    from wakeword.train import torch_logit_fn

    p = load_params(repo / "params.yaml")
    model, _ = load_checkpoint(repo / "models/model.pt")
    fn = torch_logit_fn(model, load_cmvn(repo / "models/cmvn.json"))
    cal = load_calibration(repo / "metrics/calibration.json")
    thr = float(cal["threshold"]) if threshold is None else threshold
    window = int(model.window_frames)  # type: ignore[arg-type]
    step = max(1, round(p.audio.step_ms / p.features.hop_ms))
    maps = {s: frequency_warp_maps(p.features, np.array([2.0 ** (s / 12.0)]))[0] for s in semitones}
    out: dict[str, Any] = {"repo": str(repo), "threshold": thr, "semitones": list(semitones), "groups": {}}
    for split, value in groups:
        manifest = repo / "data/split" / f"{split}.jsonl"
        if not manifest.is_file():
            raise SystemExit(f"{manifest}: no such split manifest")
        rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
        chosen = select_positives(rows, value, per_group)
        if not chosen:
            print(f"{split}:{value}: no positive clip matches; skipped")
            continue
        clips = []
        for r in chosen:
            root = repo / "data" / str(r.get("root", "synth"))
            x, sr = sf.read(root / r["path"], dtype="float32")
            if sr != 16000 or x.ndim != 1:
                raise SystemExit(f"{root / r['path']}: expected 16 kHz mono, got {sr} Hz, shape {x.shape}")
            clips.append(x)
        # clip i always lies in the same noise (seed i), whatever the shift: only the shift differs
        base = [compute_features(place_in_floor(x, np.random.default_rng(i)), p.features) for i, x in enumerate(clips)]
        res: dict[str, Any] = {"clips": len(clips)}
        for how in ("feature", "audio") if audio else ("feature",):
            shares = {}
            for s in tqdm(semitones, desc=f"{split}:{value} {how}", leave=False):
                scores = []
                for i, x in enumerate(clips):
                    if how == "audio" and s != 0:
                        f = compute_features(place_in_floor(pitch_shift(x, s), np.random.default_rng(i)), p.features)
                    else:
                        f = base[i] @ maps[s] if how == "feature" else base[i]
                    scores.append(best_score(f, fn, window, step, float(cal["temperature"])))
                shares[f"{s:+g}"] = float(np.mean(np.asarray(scores) >= thr))
            res[how] = shares
        out["groups"][f"{split}:{value}"] = res
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("repo", nargs="?", type=Path, default=Path("."))
    ap.add_argument("--groups", default=DEFAULT_GROUPS, help=f"SPLIT:VALUE,... (default {DEFAULT_GROUPS})")
    ap.add_argument("--semitones", default="-3,-1,0,1,3", help="shifts, semitones (default -3,-1,0,1,3)")
    ap.add_argument("--threshold", type=float, help="score threshold (default: the run's calibrated threshold)")
    ap.add_argument("--audio", action="store_true", help="also shift the waveform (pitch_shift; slower)")
    ap.add_argument("--per-group", type=int, default=40, help="positive clips per group (default 40)")
    ap.add_argument("--json", type=Path, help="write the figures here as JSON")
    args = ap.parse_args(argv)
    try:
        groups = parse_groups(args.groups)
        semis = [float(s) for s in args.semitones.split(",") if s.strip()]
    except ValueError as exc:
        ap.error(str(exc))
    r = measure(args.repo, groups, semis, args.threshold, args.audio, args.per_group)
    print(f"{args.repo}: share of positives scoring >= {r['threshold']:.2f}, shifted by (semitones)")
    print(f"  {'group':<18} {'how':<8} " + " ".join(f"{s:>+6g}" for s in semis))
    for g, v in r["groups"].items():
        for how in ("feature", "audio"):
            if how in v:
                print(f"  {g:<18} {how:<8} " + " ".join(f"{v[how][f'{s:+g}']:>6.2f}" for s in semis)
                      + f"   ({v['clips']} clips)")
    if args.json:
        args.json.write_text(json.dumps(r, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
