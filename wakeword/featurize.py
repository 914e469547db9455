"""Turn split manifests into feature arrays.

* train: fixed windows of ``audio.clip_s`` (the model input). Each positive utterance gives
  ``augment.train_variants`` windows with the phrase at a random offset, optional speech context, a random
  level, background noise at a random SNR and always a noise floor (never digital zeros; FINDINGS: exact
  silence costs recall on real audio). Negatives, confusables, truncated phrases ("hey jar", label 0, so
  the model waits for the whole phrase) and background crops fill the negative side.
* val/test: clips of ``audio.eval_clip_s`` with the utterance at a random offset, scored later by sliding
  the model window over them exactly as a device would (clip score = max window score). The phrase's
  frame span is kept so calibration can label windows.
* streams: features of the long negative recordings, computed block by block.

Everything is deterministic: each example has its own RNG seeded from (seed, split, kind, index, variant).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm import tqdm

from wakeword.audio import AudioError, read_audio, rms_dbfs
from wakeword.features import log_mel_stream, log_mel_torch, num_frames
from wakeword.featureset import KIND_CODES
from wakeword.manifest import Item, read_manifest, resolve
from wakeword.noise import fit_length
from wakeword.params import AudioParams, AugmentParams, FeatureParams

log = logging.getLogger(__name__)

SPLIT_CODES = {"train": 0, "val": 1, "test": 2}
SHARD_SIZE = 2000
STREAM_BLOCK_S = 60.0


class FeaturizeError(ValueError):
    """The inputs cannot produce a usable feature set."""


@dataclass
class Pools:
    """Audio of one split, grouped by kind, loaded once."""

    positive: list[np.ndarray]
    negative: list[np.ndarray]
    hard_negative: list[np.ndarray]
    background: list[np.ndarray]


def load_pools(items: list[Item], root: Path, sample_rate_hz: int) -> Pools:
    pools: dict[str, list[np.ndarray]] = {k: [] for k in ("positive", "negative", "hard_negative", "background")}
    for item in tqdm([i for i in items if i.kind in pools], desc="load audio", unit="clip", leave=False):
        try:
            audio = read_audio(resolve(root, item), sample_rate_hz)
        except AudioError as exc:
            log.warning("skipping %s", exc)
            continue
        pools[item.kind].append(audio)
    return Pools(**pools)


def _db_to_gain(db: float) -> float:
    """Linear gain for ``db``; 1.0 when the level is undefined (a silent signal has no level to move)."""
    return float(10.0 ** (db / 20.0)) if np.isfinite(db) else 1.0


def _place(buf: np.ndarray, utt: np.ndarray, start: int) -> None:
    end = min(buf.shape[0], start + utt.shape[0])
    if end > start:
        buf[start:end] += utt[: end - start]


def _finish(
    buf: np.ndarray, speech_rms_db: float, pools: Pools, noise_prob: float, snr_db: tuple[float, float],
    floor_dbfs: tuple[float, float], rng: np.random.Generator,
) -> np.ndarray:
    """Add background noise at a random SNR (relative to the speech level) and a noise floor."""
    if pools.background and rng.random() < noise_prob:
        noise = fit_length(pools.background[int(rng.integers(len(pools.background)))], buf.shape[0], rng)
        noise_db = rms_dbfs(noise)
        if noise_db > -100:
            target = speech_rms_db - float(rng.uniform(*snr_db))
            buf = buf + noise * _db_to_gain(target - noise_db)
    floor = rng.standard_normal(buf.shape[0]).astype(np.float32) * _db_to_gain(float(rng.uniform(*floor_dbfs)))
    return np.clip(buf + floor, -1.0, 1.0).astype(np.float32)


def _context(buf: np.ndarray, start: int, end: int, pools: Pools, level_db: float, rng: np.random.Generator) -> None:
    """Put other speech before and/or after [start, end) so the phrase is not always alone."""
    if not pools.negative:
        return
    gap = lambda: int(rng.uniform(0.05, 0.3) * 16000)
    ctx_level = level_db + float(rng.uniform(-6.0, 3.0))
    if start > 0 and rng.random() < 0.7:
        ctx = pools.negative[int(rng.integers(len(pools.negative)))]
        ctx = ctx * _db_to_gain(ctx_level - rms_dbfs(ctx))
        stop = max(0, start - gap())
        piece = ctx[max(0, ctx.shape[0] - stop) :]
        _place(buf, piece, stop - piece.shape[0])
    if end < buf.shape[0] and rng.random() < 0.7:
        ctx = pools.negative[int(rng.integers(len(pools.negative)))]
        ctx = ctx * _db_to_gain(ctx_level - rms_dbfs(ctx))
        _place(buf, ctx, end + gap())


def render_window(
    utt: np.ndarray | None, length: int, pools: Pools, aug: AugmentParams, rng: np.random.Generator,
    *, margin: int = 0, context: bool = True, eval_mode: bool = False,
) -> tuple[np.ndarray, int, int]:
    """Place ``utt`` (or nothing) in ``length`` samples with level, context, noise; return (audio, start, end)."""
    buf = np.zeros(length, dtype=np.float32)
    level_db = float(rng.uniform(*aug.level_dbfs))
    start = end = -1
    if utt is not None:
        if utt.shape[0] > length - 2 * margin:
            off = (utt.shape[0] - (length - 2 * margin)) // 2
            utt = utt[off : off + length - 2 * margin]
        utt = utt * _db_to_gain(level_db - rms_dbfs(utt))
        start = int(rng.integers(margin, length - margin - utt.shape[0] + 1))
        end = start + utt.shape[0]
        _place(buf, utt, start)
        if context and rng.random() < aug.context_prob:
            _context(buf, start, end, pools, level_db, rng)
    noise_prob = aug.eval_noise_prob if eval_mode else aug.noise_prob
    snr = aug.eval_snr_db if eval_mode else aug.snr_db
    return _finish(buf, level_db, pools, noise_prob, snr, aug.noise_floor_dbfs, rng), start, end


def _background_window(pools: Pools, length: int, aug: AugmentParams, rng: np.random.Generator) -> np.ndarray:
    noise = fit_length(pools.background[int(rng.integers(len(pools.background)))], length, rng)
    level = float(rng.uniform(*aug.level_dbfs))
    noise = noise * _db_to_gain(level - rms_dbfs(noise))
    return _finish(noise.astype(np.float32), level, pools, 0.0, aug.snr_db, aug.noise_floor_dbfs, rng)


def _rng(seed: int, split: str, kind: str, index: int, variant: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, SPLIT_CODES[split], KIND_CODES[kind], index, variant])


def build_train(pools: Pools, audio: AudioParams, aug: AugmentParams, seed: int) -> tuple[list[np.ndarray], list[int]]:
    """Audio windows and kind codes for training (label = kind == positive)."""
    length = audio.clip_samples
    windows: list[np.ndarray] = []
    kinds: list[int] = []
    for i, utt in enumerate(pools.positive):
        for v in range(aug.train_variants):
            windows.append(render_window(utt, length, pools, aug, _rng(seed, "train", "positive", i, v))[0])
            kinds.append(KIND_CODES["positive"])
        rng = _rng(seed, "train", "partial", i)
        if rng.random() < 0.5:
            cut = int(utt.shape[0] * rng.uniform(0.3, 0.6))
            windows.append(render_window(utt[:cut], length, pools, aug, rng)[0])
            kinds.append(KIND_CODES["partial"])
    for kind in ("negative", "hard_negative"):
        for i, utt in enumerate(getattr(pools, kind)):
            for v in range(aug.negative_windows_per_clip):
                rng = _rng(seed, "train", kind, i, v)
                if utt.shape[0] > length:
                    start = int(rng.integers(0, utt.shape[0] - length + 1))
                    utt_piece = utt[start : start + length]
                else:
                    utt_piece = utt
                windows.append(render_window(utt_piece, length, pools, aug, rng)[0])
                kinds.append(KIND_CODES[kind])
    if pools.background:
        for i in range(aug.background_windows):
            windows.append(_background_window(pools, length, aug, _rng(seed, "train", "background", i)))
            kinds.append(KIND_CODES["background"])
    return windows, kinds


def build_eval(
    pools: Pools, audio: AudioParams, aug: AugmentParams, seed: int, split: str,
) -> tuple[list[np.ndarray], list[int], list[tuple[int, int]]]:
    """Evaluation clips, kind codes and the phrase's sample span ((-1, -1) when absent)."""
    length = audio.eval_clip_samples
    margin = int(0.1 * audio.sample_rate_hz)
    clips: list[np.ndarray] = []
    kinds: list[int] = []
    spans: list[tuple[int, int]] = []
    for kind in ("positive", "negative", "hard_negative"):
        for i, utt in enumerate(getattr(pools, kind)):
            x, s, e = render_window(utt, length, pools, aug, _rng(seed, split, kind, i), margin=margin, eval_mode=True)
            clips.append(x)
            kinds.append(KIND_CODES[kind])
            spans.append((s, e) if kind == "positive" else (-1, -1))
    for i, bg in enumerate(pools.background):
        for j in range(max(1, int(bg.shape[0] // length))):
            rng = _rng(seed, split, "background", i, j)
            clips.append(_background_window(Pools([], [], [], [bg]), length, aug, rng))
            kinds.append(KIND_CODES["background"])
            spans.append((-1, -1))
    return clips, kinds, spans


def features_of(windows: list[np.ndarray], fp: FeatureParams, desc: str, batch: int = 256) -> np.ndarray:
    """Log-mel of equal-length windows, batched through torch (equal to the numpy :func:`log_mel` the
    runtime uses to within float32 rounding; tests/test_features.py checks it)."""
    import torch

    out = []
    for i in tqdm(range(0, len(windows), batch), desc=desc, unit="batch", leave=False):
        audio = torch.from_numpy(np.stack(windows[i : i + batch]))
        out.append(log_mel_torch(audio, fp).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0, fp.n_mels), dtype=np.float32)


def stream_features(path: Path, fp: FeatureParams, sample_rate_hz: int) -> tuple[np.ndarray, float]:
    """Features of a long recording read block by block; returns (features, hours)."""
    info = sf.info(str(path))
    if info.samplerate != sample_rate_hz or info.channels != 1:
        raise FeaturizeError(f"{path}: streams must be {sample_rate_hz} Hz mono, got {info.samplerate} Hz x {info.channels}")
    block = int(STREAM_BLOCK_S * sample_rate_hz)
    blocks = sf.blocks(str(path), blocksize=block, dtype="float32")
    total = int(np.ceil(info.frames / block))
    feats = log_mel_stream(tqdm(blocks, total=total, desc=f"stream {path.name}", unit="min", leave=False), fp)
    return feats, info.frames / sample_rate_hz / 3600.0


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def featurize(
    data_root: Path, split_dir: Path, out_dir: Path, audio: AudioParams, fp: FeatureParams,
    aug: AugmentParams, seed: int,
) -> dict[str, Any]:
    """Write ``out_dir/{train,val,test}/*.npz``, ``out_dir/streams/{val,test}.npy`` and ``index.json``."""
    tmp_out = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp_out, ignore_errors=True)
    tmp_out.mkdir(parents=True)
    window_frames = num_frames(audio.clip_samples, fp)
    eval_frames = num_frames(audio.eval_clip_samples, fp)
    step_frames = max(1, round(audio.step_ms / fp.hop_ms))
    index: dict[str, Any] = {
        "window_frames": window_frames, "eval_frames": eval_frames, "step_frames": step_frames,
        "n_features": fp.n_mels, "kind_codes": KIND_CODES, "splits": {}, "streams": {},
    }
    for split in ("train", "val", "test"):
        items = read_manifest(split_dir / f"{split}.jsonl")
        pools = load_pools(items, data_root, audio.sample_rate_hz)
        if not pools.positive:
            raise FeaturizeError(f"{split_dir / (split + '.jsonl')}: no readable positive clips in split '{split}'")
        (tmp_out / split).mkdir()
        if split == "train":
            windows, kinds = build_train(pools, audio, aug, seed)
            spans: list[tuple[int, int]] = [(-1, -1)] * len(windows)
        else:
            windows, kinds, spans = build_eval(pools, audio, aug, seed, split)
        del pools
        shards = []
        for s in range(0, len(windows), SHARD_SIZE):
            x = features_of(windows[s : s + SHARD_SIZE], fp, f"{split} features")
            k = np.asarray(kinds[s : s + SHARD_SIZE], dtype=np.int8)
            sp = np.asarray(spans[s : s + SHARD_SIZE], dtype=np.int64)
            # sample span -> frame span: the phrase is inside frames [start_frame, end_frame]
            hop, win = fp.hop_samples, fp.win_samples
            start_f = np.where(sp[:, 0] >= 0, sp[:, 0] // hop, -1)
            end_f = np.where(sp[:, 1] >= 0, np.maximum(0, -((win - sp[:, 1]) // hop)), -1)  # ceil
            name = f"shard-{len(shards):03d}.npz"
            _save_npz(tmp_out / split / name, x=x.astype(np.float32), y=(k == KIND_CODES["positive"]).astype(np.int8),
                      kind=k, phrase_start_frame=start_f.astype(np.int32), phrase_end_frame=end_f.astype(np.int32))
            shards.append(f"{split}/{name}")
        counts = {kind: int(sum(1 for c in kinds if c == code)) for kind, code in KIND_CODES.items()}
        index["splits"][split] = {"shards": shards, "examples": len(windows), "per_kind": counts}
        for item in items:
            if item.kind == "stream":
                feats, hours = stream_features(resolve(data_root, item), fp, audio.sample_rate_hz)
                if feats.shape[0] < window_frames:
                    raise FeaturizeError(f"{item.path}: stream shorter than one model window")
                (tmp_out / "streams").mkdir(exist_ok=True)
                np.save(tmp_out / "streams" / f"{split}.npy", feats.astype(np.float32))
                index["streams"][split] = {"path": f"streams/{split}.npy", "hours": hours, "frames": int(feats.shape[0])}
        log.info("%s: %d examples %s", split, len(windows), counts)
    for split in ("val", "test"):
        if split not in index["streams"]:
            raise FeaturizeError(f"split '{split}' has no stream: false alarms per hour cannot be measured")
    (tmp_out / "index.json").write_text(json.dumps(index, indent=2, sort_keys=True))
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp_out, out_dir)
    return index
