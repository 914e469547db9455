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

Every window and clip keeps the row of its source clip in the split's manifest (``clip``; -1 for background
mixes), so training and evaluation can look up what was said and by which voice.

Everything is deterministic: each example has its own RNG seeded from (seed, split, kind, index, variant).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm import tqdm

from wakeword import augment as A
from wakeword.audio import AudioError, read_audio, rms_dbfs
from wakeword.features import compute_features_batch, compute_features_stream, feature_dim, frames_for
from wakeword.featureset import KIND_CODES
from wakeword.manifest import Item, read_manifest, resolve
from wakeword.noise import fit_length
from wakeword.params import AudioParams, AugmentParams, FeatureParams

log = logging.getLogger(__name__)

SPLIT_CODES = {"train": 0, "val": 1, "test": 2, "heldout": 3}
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
    rir: list[np.ndarray] = field(default_factory=list)
    #: per kind, the manifest row of each loaded clip (pools built by hand may leave it empty: rows -1)
    rows: dict[str, list[int]] = field(default_factory=dict)

    def row(self, kind: str, i: int) -> int:
        """The manifest row of clip ``i`` of ``kind``, -1 when unknown."""
        rows = self.rows.get(kind)
        return rows[i] if rows is not None and i < len(rows) else -1


Roots = dict[str, Path]


def item_root(roots: Roots, item: Item) -> Path:
    """The data root an item's path is relative to (``extra["root"]``, set by the split stage)."""
    source = str(item.extra.get("root", "synth"))
    if source not in roots:
        raise FeaturizeError(f"{item.path}: data source {source!r} has no root (known: {', '.join(sorted(roots))})")
    return roots[source]


def load_pools(items: list[Item], roots: Roots, sample_rate_hz: int) -> Pools:
    pools: dict[str, list[np.ndarray]] = {k: [] for k in ("positive", "negative", "hard_negative", "background", "rir")}
    rows: dict[str, list[int]] = {k: [] for k in pools}
    wanted = [(r, i) for r, i in enumerate(items) if i.kind in pools]
    for row, item in tqdm(wanted, desc="load audio", unit="clip", leave=False):
        try:
            audio = read_audio(resolve(item_root(roots, item), item), sample_rate_hz)
        except AudioError as exc:
            log.warning("skipping %s", exc)
            continue
        pools[item.kind].append(audio)
        rows[item.kind].append(row)
    return Pools(**pools, rows=rows)


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
    *, margin: int = 0, context: bool = True, eval_mode: bool = False, trace: dict[str, Any] | None = None,
) -> tuple[np.ndarray, int, int]:
    """Place ``utt`` (or nothing) in ``length`` samples with level, context, noise; return (audio, start, end).

    Training windows (``eval_mode=False``) also get the utterance time-stretched / pitch-shifted and the
    speech reverberated with a room impulse response from ``pools.rir``, each with its probability in
    ``aug``; evaluation clips never do (they measure the model, not the augmentation). ``trace``, when
    given, receives what was applied (for the listening aid, ``wakeword augment-preview``).
    """
    trace = {} if trace is None else trace
    buf = np.zeros(length, dtype=np.float32)
    if utt is not None and not eval_mode:
        utt, done = A.augment_utterance(utt, aug, rng)
        trace.update(done)
    level_db = float(rng.uniform(*aug.level_dbfs))
    trace["level_dbfs"] = round(level_db, 2)
    start = end = -1
    if utt is not None:
        if utt.shape[0] > length - 2 * margin:
            off = (utt.shape[0] - (length - 2 * margin)) // 2
            utt = utt[off : off + length - 2 * margin]
        utt = utt * _db_to_gain(level_db - rms_dbfs(utt))
        start = int(rng.integers(margin, length - margin - utt.shape[0] + 1))
        end = start + utt.shape[0]
        _place(buf, utt, start)
        trace["context"] = bool(context and rng.random() < aug.context_prob)
        if trace["context"]:
            _context(buf, start, end, pools, level_db, rng)
    if not eval_mode and pools.rir:
        buf, done = A.reverberate(buf, pools.rir, aug, rng)
        buf = buf.astype(np.float32)
        trace.update(done)
    trace["start_s"], trace["end_s"] = round(start / 16000, 3), round(end / 16000, 3)
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


def add_simulated_rirs(pools: Pools, audio: AudioParams, aug: AugmentParams, seed: int) -> None:
    """Append ``aug.n_rirs`` simulated room impulse responses (the same ones for a given seed) to the own ones."""
    if aug.rir_prob > 0:
        pools.rir += A.simulate_rirs(aug.n_rirs, np.random.default_rng([seed, 77]), aug.rir_rt60_s, aug.rir_room_m,
                                     audio.sample_rate_hz)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``'s training windows in on-the-fly mode; epoch 0 is the featurized set."""
    if epoch == 0:
        return seed
    return int(np.random.SeedSequence([seed, 7919, epoch]).generate_state(1)[0] & 0x7FFFFFFF)


class OnTheFlyWindows:
    """``augment.mode: on_the_fly``: fresh training windows every epoch, rendered with the same code and
    params as the featurize stage (so epoch 0 equals the featurized training set) from a different seed per
    epoch (:func:`epoch_seed`): every epoch sees new placements, levels, noise, stretch, pitch and rooms.
    The training audio is loaded once; each call renders and featurizes one epoch, ``(x, y, kind, clip)``
    (``clip``: each window's source row in ``train.jsonl``, as in the feature store)."""

    def __init__(self, roots: Roots, split_dir: Path, audio: AudioParams, fp: FeatureParams, aug: AugmentParams,
                 seed: int) -> None:
        self.pools = load_pools(read_manifest(split_dir / "train.jsonl"), roots, audio.sample_rate_hz)
        if not self.pools.positive:
            raise FeaturizeError(f"{split_dir / 'train.jsonl'}: no readable positive clips for on-the-fly training")
        add_simulated_rirs(self.pools, audio, aug, seed)
        self.audio, self.fp, self.aug, self.seed = audio, fp, aug, seed

    def __call__(self, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        rows = iter_train(self.pools, self.audio, self.aug, epoch_seed(self.seed, epoch))
        xs, kinds, clips = [], [], []
        while chunk := list(itertools.islice(rows, SHARD_SIZE)):  # audio of one shard in memory at a time
            xs.append(features_of([w for w, _, _ in chunk], self.fp, f"epoch {epoch + 1} windows"))
            kinds += [k for _, k, _ in chunk]
            clips += [c for _, _, c in chunk]
        kind = np.asarray(kinds, dtype=np.int8)
        return (np.concatenate(xs), (kind == KIND_CODES["positive"]).astype(np.int8), kind,
                np.asarray(clips, dtype=np.int32))


def iter_train(
    pools: Pools, audio: AudioParams, aug: AugmentParams, seed: int,
) -> Iterator[tuple[np.ndarray, int, int]]:
    """Training windows with their kind codes (label = kind == positive) and source clip rows
    (:meth:`Pools.row`; -1 for background mixes), one at a time: featurize turns them into features shard by
    shard, so memory holds one shard of audio, not the whole training set."""
    length = audio.clip_samples
    for i, utt in enumerate(pools.positive):
        row = pools.row("positive", i)
        for v in range(aug.train_variants):
            yield (render_window(utt, length, pools, aug, _rng(seed, "train", "positive", i, v))[0],
                   KIND_CODES["positive"], row)
        rng = _rng(seed, "train", "partial", i)
        if rng.random() < 0.5:
            cut = int(utt.shape[0] * rng.uniform(0.3, 0.6))
            yield render_window(utt[:cut], length, pools, aug, rng)[0], KIND_CODES["partial"], row
    for kind in ("negative", "hard_negative"):
        for i, utt in enumerate(getattr(pools, kind)):
            for v in range(aug.negative_windows_per_clip):
                rng = _rng(seed, "train", kind, i, v)
                if utt.shape[0] > length:
                    start = int(rng.integers(0, utt.shape[0] - length + 1))
                    utt_piece = utt[start : start + length]
                else:
                    utt_piece = utt
                yield render_window(utt_piece, length, pools, aug, rng)[0], KIND_CODES[kind], pools.row(kind, i)
    if pools.background:
        for i in range(aug.background_windows):
            yield (_background_window(pools, length, aug, _rng(seed, "train", "background", i)),
                   KIND_CODES["background"], -1)


def build_train(pools: Pools, audio: AudioParams, aug: AugmentParams, seed: int) -> tuple[list[np.ndarray], list[int]]:
    """All training windows and kind codes as lists (:func:`iter_train`)."""
    rows = list(iter_train(pools, audio, aug, seed))
    return [r[0] for r in rows], [r[1] for r in rows]


def iter_eval(
    pools: Pools, audio: AudioParams, aug: AugmentParams, seed: int, split: str,
) -> Iterator[tuple[np.ndarray, int, tuple[int, int], int]]:
    """Evaluation clips, kind codes, the phrase's sample span ((-1, -1) when absent) and the source clip's
    manifest row (:meth:`Pools.row`), one at a time."""
    length = audio.eval_clip_samples
    margin = int(0.1 * audio.sample_rate_hz)
    for kind in ("positive", "negative", "hard_negative"):
        for i, utt in enumerate(getattr(pools, kind)):
            x, s, e = render_window(utt, length, pools, aug, _rng(seed, split, kind, i), margin=margin, eval_mode=True)
            yield x, KIND_CODES[kind], ((s, e) if kind == "positive" else (-1, -1)), pools.row(kind, i)
    for i, bg in enumerate(pools.background):
        for j in range(max(1, int(bg.shape[0] // length))):
            rng = _rng(seed, split, "background", i, j)
            yield (_background_window(Pools([], [], [], [bg]), length, aug, rng), KIND_CODES["background"], (-1, -1),
                   pools.row("background", i))


def build_eval(
    pools: Pools, audio: AudioParams, aug: AugmentParams, seed: int, split: str,
) -> tuple[list[np.ndarray], list[int], list[tuple[int, int]]]:
    """All evaluation clips, kind codes and spans as lists (:func:`iter_eval`)."""
    rows = list(iter_eval(pools, audio, aug, seed, split))
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def features_of(windows: list[np.ndarray], fp: FeatureParams, desc: str, batch: int = 256) -> np.ndarray:
    """Features (``features.type``) of equal-length windows, ``(N, frames, feature_dim)`` float32, through
    :func:`compute_features_batch` (torch batches for log_mel/mfcc, equal to the numpy
    :func:`compute_features` the runtime uses to within float32 rounding; a fresh front end per window for
    micro). tests/test_features.py and tests/test_feature_types.py check both."""
    out = []
    for i in tqdm(range(0, len(windows), batch), desc=desc, unit="batch", leave=False):
        out.append(compute_features_batch(np.stack(windows[i : i + batch]), fp))
    return np.concatenate(out) if out else np.zeros((0, 0, feature_dim(fp)), dtype=np.float32)


def stream_features(path: Path, fp: FeatureParams, sample_rate_hz: int) -> tuple[np.ndarray, float]:
    """Features of a long recording read block by block; returns (features, hours). Block boundaries do not
    change the result; for micro one front end runs through the whole recording, as on a device."""
    info = sf.info(str(path))
    if info.samplerate != sample_rate_hz or info.channels != 1:
        raise FeaturizeError(f"{path}: streams must be {sample_rate_hz} Hz mono, got {info.samplerate} Hz x {info.channels}")
    block = int(STREAM_BLOCK_S * sample_rate_hz)
    blocks = sf.blocks(str(path), blocksize=block, dtype="float32")
    total = int(np.ceil(info.frames / block))
    feats = compute_features_stream(tqdm(blocks, total=total, desc=f"stream {path.name}", unit="min", leave=False), fp)
    return feats, info.frames / sample_rate_hz / 3600.0


#: Segment types a stream's JSON may name (the demo streams' ``segments[].type``; "unknown" for audio whose
#: content is not known). The time no segment covers is the noise bed, type "background".
SEGMENT_TYPES = ("speech", "confusable", "music", "noise", "household", "hum", "babble", "unknown")
#: Optional strings of a segment kept in the table (cut to SEGMENT_LABEL_CHARS): evaluation names them with
#: the strongest false alarms.
SEGMENT_LABELS = ("text", "voice")
SEGMENT_LABEL_CHARS = 120
_SEGMENT_OVERLAP_S = 1e-3  # segment times are rounded (0.1 ms); overlaps up to this are rounding, not errors


def stream_segments(wav: Path, duration_s: float, sample_rate_hz: int) -> tuple[list[dict[str, Any]], str | None]:
    """What plays when in a negative recording: ``([{start_s, end_s, type[, text, voice]}, ...], json_name)``.

    A demo stream has a JSON beside its wav (``streams/test.wav`` -> ``streams/test.json``) whose ``segments``
    list the inserted speech, confusables, music, noise, household sounds, hum and babble; they are checked
    (finite, 0 <= start < end, inside the recording, no overlaps beyond rounding, types from
    :data:`SEGMENT_TYPES`, the optional :data:`SEGMENT_LABELS` strings), sorted and clipped to the recording.
    A recording without such a JSON (own streams) is one segment of type "unknown" covering all of it. Times not covered by a segment are the
    noise bed ("background"); evaluation attributes each false alarm on the stream to a type with this table.
    """
    js = wav.with_suffix(".json")
    if not js.exists():
        return [{"start_s": 0.0, "end_s": float(duration_s), "type": "unknown"}], None
    try:
        meta = json.loads(js.read_text(encoding="utf-8"))
        raw = meta["segments"]
        if not isinstance(raw, list):
            raise TypeError("'segments' is not a list")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise FeaturizeError(f"{js}: not a usable stream segment file ({exc})") from None
    n_samples = meta.get("n_samples") if isinstance(meta, dict) else None
    if isinstance(n_samples, (int, float)) and abs(n_samples - duration_s * sample_rate_hz) > 1:
        raise FeaturizeError(f"{js}: describes {n_samples} samples but {wav.name} has "
                             f"{round(duration_s * sample_rate_hz)}; the JSON belongs to another recording")
    segs: list[dict[str, Any]] = []
    for i, seg in enumerate(raw):
        try:
            start, end, kind = float(seg["start_s"]), float(seg["end_s"]), seg["type"]
        except (KeyError, TypeError, ValueError) as exc:
            raise FeaturizeError(f"{js}: segment {i} needs numeric start_s, end_s and a type ({exc!r})") from None
        if not (np.isfinite(start) and np.isfinite(end) and 0.0 <= start < end):
            raise FeaturizeError(f"{js}: segment {i} has start_s={start}, end_s={end}; need 0 <= start_s < end_s")
        if kind not in SEGMENT_TYPES:
            raise FeaturizeError(f"{js}: segment {i} has type {kind!r}; allowed: {', '.join(SEGMENT_TYPES)}")
        if start >= duration_s or end > duration_s + 0.01:
            raise FeaturizeError(f"{js}: segment {i} ({start}-{end} s) lies past the end of {wav.name} "
                                 f"({duration_s:.3f} s)")
        rec = {"start_s": start, "end_s": min(end, float(duration_s)), "type": kind}
        for key in SEGMENT_LABELS:  # what was said and by whom: names the audio behind a false alarm
            if key in seg:
                if not isinstance(seg[key], str):
                    raise FeaturizeError(f"{js}: segment {i} has {key}={seg[key]!r}; it must be a string")
                rec[key] = seg[key][:SEGMENT_LABEL_CHARS]
        segs.append(rec)
    segs.sort(key=lambda s: s["start_s"])
    for i in range(1, len(segs)):
        prev, cur = segs[i - 1], segs[i]
        if cur["start_s"] < prev["end_s"] - _SEGMENT_OVERLAP_S:
            raise FeaturizeError(f"{js}: segments at {prev['start_s']} s and {cur['start_s']} s overlap")
        cur["start_s"] = max(cur["start_s"], prev["end_s"])
    return [s for s in segs if s["end_s"] > s["start_s"]], js.name


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def featurize(
    roots: Roots, split_dir: Path, out_dir: Path, audio: AudioParams, fp: FeatureParams,
    aug: AugmentParams, seed: int,
) -> dict[str, Any]:
    """Write ``out_dir/<split>/*.npz``, ``out_dir/streams/<split>.npy`` and ``index.json``.

    Splits: train, val, test, and heldout when the split stage wrote one (clips and stream of engines
    that no other split contains). ``roots`` maps each data source (``synth``, ``own``) to its directory.
    Several streams in one split (demo and own recordings) are featurized one by one and concatenated;
    ``out_dir/streams/<split>.segments.json`` records each recording's frame offset in the concatenation and
    what plays when in it (:func:`stream_segments`), so false alarms can be counted per kind of audio.
    """
    tmp_out = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp_out, ignore_errors=True)
    tmp_out.mkdir(parents=True)
    window_frames = frames_for(audio.clip_samples, fp)
    eval_frames = frames_for(audio.eval_clip_samples, fp)
    step_frames = max(1, round(audio.step_ms / fp.hop_ms))
    index: dict[str, Any] = {
        "window_frames": window_frames, "eval_frames": eval_frames, "step_frames": step_frames,
        "n_features": feature_dim(fp), "kind_codes": KIND_CODES, "splits": {}, "streams": {},
    }
    splits = ["train", "val", "test"] + (["heldout"] if (split_dir / "heldout.jsonl").exists() else [])
    for split in splits:
        items = read_manifest(split_dir / f"{split}.jsonl")
        pools = load_pools(items, roots, audio.sample_rate_hz)
        if not pools.positive:
            raise FeaturizeError(f"{split_dir / (split + '.jsonl')}: no readable positive clips in split '{split}'")
        (tmp_out / split).mkdir()
        rows: Iterator[tuple[np.ndarray, int, tuple[int, int], int]]
        if split == "train":
            n_own = len(pools.rir)
            add_simulated_rirs(pools, audio, aug, seed)
            index["rirs"] = {"own": n_own, "simulated": len(pools.rir) - n_own}
            rows = ((w, k, (-1, -1), c) for w, k, c in iter_train(pools, audio, aug, seed))
        else:
            rows = iter_eval(pools, audio, aug, seed, split)
        rows = iter(tqdm(rows, desc=f"{split} windows", unit="win", leave=False))
        shards: list[str] = []
        kinds: list[int] = []
        while chunk := list(itertools.islice(rows, SHARD_SIZE)):
            x = features_of([r[0] for r in chunk], fp, f"{split} features {len(shards) + 1}")
            k = np.asarray([r[1] for r in chunk], dtype=np.int8)
            sp = np.asarray([r[2] for r in chunk], dtype=np.int64).reshape(-1, 2)
            clip = np.asarray([r[3] for r in chunk], dtype=np.int32)
            kinds += k.tolist()
            del chunk
            # sample span -> frame span: the phrase is inside frames [start_frame, end_frame]
            hop, win = fp.hop_samples, fp.win_samples
            start_f = np.where(sp[:, 0] >= 0, sp[:, 0] // hop, -1)
            end_f = np.where(sp[:, 1] >= 0, np.maximum(0, -((win - sp[:, 1]) // hop)), -1)  # ceil
            name = f"shard-{len(shards):03d}.npz"
            _save_npz(tmp_out / split / name, x=x.astype(np.float32), y=(k == KIND_CODES["positive"]).astype(np.int8),
                      kind=k, phrase_start_frame=start_f.astype(np.int32), phrase_end_frame=end_f.astype(np.int32),
                      clip=clip)
            shards.append(f"{split}/{name}")
        del pools
        counts = {kind: int(sum(1 for c in kinds if c == code)) for kind, code in KIND_CODES.items()}
        index["splits"][split] = {"shards": shards, "examples": len(kinds), "per_kind": counts}
        parts, stream_hours, sources, recordings, frame_offset = [], 0.0, [], [], 0
        for item in items:
            if item.kind == "stream":
                wav = resolve(item_root(roots, item), item)
                duration_s = sf.info(str(wav)).frames / audio.sample_rate_hz
                segments, segments_from = stream_segments(wav, duration_s, audio.sample_rate_hz)  # before the work
                feats, hours = stream_features(wav, fp, audio.sample_rate_hz)
                if feats.shape[0] < window_frames:
                    raise FeaturizeError(f"{item.path}: stream shorter than one model window")
                parts.append(feats.astype(np.float32))
                stream_hours += hours
                sources.append(item.path)
                recordings.append({
                    "path": item.path, "root": str(item.extra.get("root", "synth")), "frame_offset": frame_offset,
                    "frames": int(feats.shape[0]), "duration_s": hours * 3600.0, "segments_from": segments_from,
                    "segments": segments,
                })
                frame_offset += int(feats.shape[0])
        if parts:
            (tmp_out / "streams").mkdir(exist_ok=True)
            feats = np.concatenate(parts)
            np.save(tmp_out / "streams" / f"{split}.npy", feats)
            hop_s = fp.hop_ms / 1000.0
            table = {"hop_s": hop_s, "frames": int(feats.shape[0]), "recordings": recordings}
            (tmp_out / "streams" / f"{split}.segments.json").write_text(json.dumps(table, indent=1) + "\n")
            index["streams"][split] = {"path": f"streams/{split}.npy", "hours": stream_hours,
                                       "frames": int(feats.shape[0]), "recordings": sources,
                                       "segments": f"streams/{split}.segments.json", "hop_s": hop_s}
        log.info("%s: %d examples %s", split, len(kinds), counts)
    for split in splits[1:]:
        if split not in index["streams"]:
            raise FeaturizeError(f"split '{split}' has no stream: false alarms per hour cannot be measured")
    (tmp_out / "index.json").write_text(json.dumps(index, indent=2, sort_keys=True))
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp_out, out_dir)
    return index


def augment_preview(
    roots: Roots, split_dir: Path, out_dir: Path, audio: AudioParams, aug: AugmentParams, seed: int, n: int = 8,
    kind: str = "positive",
) -> list[dict[str, Any]]:
    """A listening aid: ``n`` training windows of ``kind`` rendered exactly as featurize renders them (same
    augmentation code and params), written as WAVs next to the dry utterance, plus ``preview.json`` saying
    what was applied to each. Uses a sample of the train split (all of it is not needed to listen)."""
    items = read_manifest(split_dir / "train.jsonl")
    wanted = {kind: n, "negative": 60, "background": 30, "rir": 10_000}
    pick: list[Item] = []
    for k, limit in wanted.items():
        of_kind = [i for i in items if i.kind == k]
        order = np.random.default_rng([seed, 99, KIND_CODES.get(k, 9)]).permutation(len(of_kind))
        pick += [of_kind[int(j)] for j in order[:limit]]
    pools = load_pools(pick, roots, audio.sample_rate_hz)
    chosen = getattr(pools, kind)
    if not chosen:
        raise FeaturizeError(f"{split_dir / 'train.jsonl'}: no readable {kind} clips in the train split")
    if aug.rir_prob > 0:
        pools.rir += A.simulate_rirs(aug.n_rirs, np.random.default_rng([seed, 77]), aug.rir_rt60_s, aug.rir_room_m,
                                     audio.sample_rate_hz)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for k in range(n):
        utt = chosen[k % len(chosen)]
        trace: dict[str, Any] = {}
        x = render_window(utt, audio.clip_samples, pools, aug, np.random.default_rng([seed, 98, k]), trace=trace)[0]
        name = f"{kind}-{k:02d}"
        sf.write(str(out_dir / f"{name}.wav"), x, audio.sample_rate_hz, subtype="PCM_16")
        sf.write(str(out_dir / f"{name}-dry.wav"), np.clip(utt, -1, 1), audio.sample_rate_hz, subtype="PCM_16")
        rows.append({"file": f"{name}.wav", "dry": f"{name}-dry.wav", **trace})
    (out_dir / "preview.json").write_text(json.dumps(rows, indent=2) + "\n")
    return rows
