"""Ingest users' own audio: scan ``data/raw``, validate every file, convert to 16 kHz mono PCM_16 and write a
manifest plus a report that accounts for every file.

Input: ``raw_dir/{positive,hard_negative,negative,background,rir,stream}/`` with any nesting. Layout written
under ``out_dir`` (built in a temporary sibling directory and renamed into place at the end, so a failure
never leaves partial outputs)::

    clips/{positive,negative,hard_negative,background,rir}/<id>.wav   16 kHz mono PCM_16
    streams/<id>.wav                                                   long negative-only recordings
    manifest.jsonl                                                     one row per clip / stream

Rules:

* Status: every entry found is exactly one of *accepted* (maybe with flags), *rejected* (with a reason)
  or *ignored* (hidden and system files, hidden directories, anything not under a kind directory,
  special files). Symlinks, to files or directories, are refused and never followed; so is anything whose
  resolved path leaves ``raw_dir``. A bad file never stops the run: it is rejected and any output it had
  produced is removed. Errors while *writing* outputs (disk full) are fatal and leave nothing behind.
* Reading: the format is detected from the content by libsndfile (WAV, FLAC, OGG/Vorbis/Opus, MP3, ...),
  never from the extension. Channels are averaged, the rate is converted with
  ``scipy.signal.resample_poly`` by the gcd-reduced ratio. Files are read in blocks of ``BLOCK_S``
  seconds and resampled with enough overlapping context that the result equals a one-shot
  ``resample_poly`` of the whole file (:class:`ChunkedResampler`), so an hour-long file is never in memory.
* Rejected: not a readable audio file, empty, no samples, truncated or corrupt data (a WAV whose ``data``
  chunk claims more than the file holds, an Ogg stream without its end page, a decoder error midway, fewer
  frames than the header claims), NaN/Inf samples, source rate outside [8 kHz, 384 kHz], shorter than
  ``data.min_clip_s`` (streams: ``data.min_stream_s``; RIRs: ``RIR_MIN_S``), longer than
  ``data.max_file_h`` (from the header, before decoding), RIRs longer than ``RIR_MAX_S``, duplicates, long
  positives in which the VAD finds no speech, and flagged files when ``data.drop_flagged`` is set.
* Flags: ``clipped`` when more than ``data.clipped_fraction`` of the source samples (all channels, before
  resampling) are at full scale; ``near_silent`` when the loudest 100 ms of the converted audio is below
  ``data.silence_dbfs`` (not for RIRs, which are peak-normalised).
* Long clips (over ``data.max_clip_s``): positive and hard_negative files are cut around the speech found
  by an energy VAD (:func:`speech_segments`; a two-pass read, the first only collects 10 ms energies);
  negative and background files are cut into consecutive pieces of ``max_clip_s`` (a last piece shorter
  than ``min_clip_s`` is dropped). RIRs are kept whole and normalised to peak 1.
* Groups (the split keeps a group in one split): ``<kind>/<dir>/.../file`` belongs to group ``own:<dir>``
  (a speaker or source); a file directly in its kind directory is its own group ``own:<kind>/<stem>``.
  Pieces of one file share its group. Streams take their role from ``stream/train/`` (hard-negative mining material), ``stream/val/`` or
  ``stream/test/``,
  otherwise from a stable hash of their group (:func:`wakeword.split.group_unit`).
* Ids come from the relative source path alone (``own-<kind>-<sha1[:12]>``, plus ``-<k>`` per piece), so
  adding or removing files never changes another file's id or bytes.
* Manifest rows: ``engine`` "own", ``voice`` = the group without ``own:``, ``role`` train/val/test for streams,
  plus ``source`` (path relative to ``raw_dir``), ``sha256`` (of the row's int16 samples), ``flags``,
  ``conversions``, ``source_format`` / ``source_sample_rate_hz`` / ``source_channels``, and ``segment`` /
  ``start_s`` for pieces cut from a longer file. Samples are scaled by 32768 (libsndfile's convention), so
  a 16-bit 16 kHz mono source passes through bit for bit.
* Duplicates: files whose converted int16 samples hash alike. Files are processed in a fixed order (kind
  order positive, hard_negative, negative, background, rir, stream, then relative path); the first is kept,
  later ones are rejected, and duplicates across kinds are listed as label conflicts. So the same audio can
  never be in two splits.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import logging
import math
import os
import shutil
import stat
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly
from tqdm import tqdm

from wakeword.manifest import Item, write_manifest
from wakeword.params import AudioParams, DataParams
from wakeword.split import group_unit

LOG = logging.getLogger(__name__)

KIND_ORDER: tuple[str, ...] = ("positive", "hard_negative", "negative", "background", "rir", "stream")
CLIP_KINDS: tuple[str, ...] = ("positive", "negative", "hard_negative", "background", "rir")
VAD_KINDS: tuple[str, ...] = ("positive", "hard_negative")
WINDOW_KINDS: tuple[str, ...] = ("negative", "background")
STREAM_ROLES: tuple[str, ...] = ("train", "val", "test")
FLAGS: tuple[str, ...] = ("clipped", "near_silent")
CONVERSIONS: tuple[str, ...] = ("downmixed", "peak_normalised", "resampled", "vad_trimmed", "windowed")
SYSTEM_FILES = frozenset({"thumbs.db", "desktop.ini", "ehthumbs.db"})

BLOCK_S = 30.0  # source seconds read at a time
MIN_SOURCE_SR = 8000
MAX_SOURCE_SR = 384000
RIR_MIN_S = 0.01
RIR_MAX_S = 5.0
FULL_SCALE = 0.999  # |x| at or above this (in the source) counts as clipped
LOUDEST_WIN_S = 0.1  # near_silent: RMS of the loudest window of this length

# Energy VAD (16 kHz): 30 ms frames every 10 ms against an adaptive floor.
VAD_FRAME = 480
VAD_HOP = 160
VAD_FLOOR_PERCENTILE = 10.0  # the noise floor is this percentile of the frame levels (dBFS)
VAD_MARGIN_DB = 12.0  # a frame is speech when it is this much above the floor (and above data.silence_dbfs)
VAD_HANGOVER_S = 0.1  # speech is held on this long after the last loud frame
VAD_MIN_GAP_S = 0.3  # pauses shorter than this do not split speech
VAD_MIN_SPEECH_S = 0.12  # loud runs shorter than this (clicks) are not speech
VAD_PAD_S = 0.2  # margin kept around each speech segment

_SCALE = 32768.0


class IngestError(ValueError):
    """Ingest cannot run at all (bad directories); single bad files are reported, never raised."""


class _Reject(Exception):
    """A file is rejected: ``code`` is a short category, ``reason`` says what is wrong with it."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


# ----------------------------------------------------------------------------------------------------------
# Signal helpers
# ----------------------------------------------------------------------------------------------------------


class ChunkedResampler:
    """Polyphase resampling of a signal that arrives in blocks; the concatenated output equals
    ``resample_poly(x, up, down)`` of the whole signal (same filter, same zero padding at both ends).

    Each conversion step covers input ``[a, b)`` with ``a`` and ``b`` multiples of ``down`` (so the output
    offset ``a * up / down`` is an integer) plus ``ctx`` input samples of context on both sides, wider than
    the filter's reach; the outputs that the context influences are discarded. Only the unconverted tail
    and the context are kept between calls.
    """

    def __init__(self, sr_in: int, sr_out: int) -> None:
        g = math.gcd(int(sr_in), int(sr_out))
        self.up, self.down = int(sr_out) // g, int(sr_in) // g
        half_len = 10 * max(self.up, self.down)  # resample_poly's default filter half length (up-sampled rate)
        reach = half_len // self.up + 2  # input samples the filter reaches on each side
        self.ctx = self.down * -(-reach // self.down)
        self._buf = np.zeros(0, dtype=np.float64)
        self._buf_start = 0  # input index of _buf[0]
        self._pos = 0  # next input index to convert (a multiple of down)
        self._n_in = 0
        self._done = False

    @property
    def identity(self) -> bool:
        return self.up == self.down

    def push(self, x: np.ndarray) -> np.ndarray:
        """Add input samples; return the output samples that are now final (maybe none)."""
        x = np.asarray(x, dtype=np.float64)
        if self._done:
            raise RuntimeError("ChunkedResampler: push after flush")
        if self.identity:
            self._n_in += x.size
            return x
        self._buf = np.concatenate([self._buf, x]) if self._buf.size else x
        self._n_in += x.size
        b = ((self._n_in - self.ctx) // self.down) * self.down
        if b <= self._pos:
            return np.zeros(0, dtype=np.float64)
        return self._convert(b, final=False)

    def flush(self) -> np.ndarray:
        """Return the remaining output (the signal has ended)."""
        self._done = True
        if self.identity or self._n_in <= self._pos:
            return np.zeros(0, dtype=np.float64)
        return self._convert(self._n_in, final=True)

    def _convert(self, b: int, final: bool) -> np.ndarray:
        a = self._pos
        s0 = max(0, a - self.ctx)
        s1 = self._n_in if final else b + self.ctx
        y = resample_poly(self._buf[s0 - self._buf_start:s1 - self._buf_start], self.up, self.down)
        offset = (a - s0) * self.up // self.down
        if final:
            n = -(-self._n_in * self.up // self.down) - a * self.up // self.down
        else:
            n = (b - a) * self.up // self.down
        out = y[offset:offset + n]
        keep = max(0, b - self.ctx)
        self._buf = self._buf[keep - self._buf_start:]
        self._buf_start = keep
        self._pos = b
        return out


def _quantize(y: np.ndarray) -> np.ndarray:
    """Float to little-endian int16 exactly as written (so hashes match the files' samples). The scale is
    libsndfile's 32768, so 16-bit sources at 16 kHz pass through bit for bit."""
    return np.clip(np.round(np.asarray(y, dtype=np.float64) * _SCALE), -_SCALE, _SCALE - 1).astype("<i2")


def _frame_energy(x: np.ndarray, hop: int = VAD_HOP) -> np.ndarray:
    """Sums of squares over consecutive ``hop``-sample frames; a last partial frame is included."""
    x = np.asarray(x, dtype=np.float64)
    m = x.size // hop * hop
    e = (x[:m] ** 2).reshape(-1, hop).sum(axis=1)
    return np.append(e, float(np.sum(x[m:] ** 2))) if x.size > m else e


def _loudest_dbfs(e10: np.ndarray, n_samples: int, sr: int) -> float:
    """RMS level of the loudest ``LOUDEST_WIN_S`` window (10 ms steps), dBFS; ``-inf`` for all zeros."""
    k = max(1, round(LOUDEST_WIN_S * sr / VAD_HOP))
    if e10.size == 0 or n_samples == 0:
        return float("-inf")
    if e10.size <= k:
        ms = float(e10.sum()) / n_samples
    else:
        c = np.concatenate([[0.0], np.cumsum(e10)])
        ms = float(np.max(c[k:] - c[:-k])) / (k * VAD_HOP)
    return 10.0 * math.log10(ms) if ms > 0 else float("-inf")


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` index ranges where ``mask`` is true."""
    d = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist(), strict=True))


def speech_segments(e10: np.ndarray, n_samples: int, *, max_len: int, min_len: int, silence_dbfs: float,
                    sr: int = 16000) -> list[tuple[int, int]]:
    """Energy VAD over 10 ms frame energies ``e10`` of a 16 kHz signal; returns ``[start, end)`` sample ranges.

    Frames of 30 ms every 10 ms are speech when their RMS is ``VAD_MARGIN_DB`` above the noise floor (the
    ``VAD_FLOOR_PERCENTILE`` percentile of all frame levels) and above ``silence_dbfs``. Speech is held on
    for ``VAD_HANGOVER_S``, pauses shorter than ``VAD_MIN_GAP_S`` are bridged, runs shorter than
    ``VAD_MIN_SPEECH_S`` dropped; each run gets ``VAD_PAD_S`` of margin (overlapping ones merge). A segment
    longer than ``max_len`` samples is cut to ``max_len`` centred on its energy centroid; segments shorter
    than ``min_len`` are dropped. Deterministic, numpy only.
    """
    e10 = np.asarray(e10, dtype=np.float64)
    if e10.size == 0 or n_samples <= 0:
        return []
    per = VAD_FRAME // VAD_HOP
    if e10.size >= per:
        e30 = sum(e10[i:e10.size - per + 1 + i] for i in range(per))
    else:
        e30 = np.array([e10.sum()])
    db = 10.0 * np.log10(e30 / VAD_FRAME + 1e-20)
    floor = float(np.percentile(db, VAD_FLOOR_PERCENTILE))
    active = db >= max(floor + VAD_MARGIN_DB, silence_dbfs)
    hop_s = VAD_HOP / sr
    hang, gap = round(VAD_HANGOVER_S / hop_s), round(VAD_MIN_GAP_S / hop_s)
    runs: list[list[int]] = []
    for s, e in _runs(active):
        e = min(e + hang, active.size)
        if runs and s - runs[-1][1] < gap:
            runs[-1][1] = max(runs[-1][1], e)
        else:
            runs.append([s, e])
    min_frames = round(VAD_MIN_SPEECH_S / hop_s)
    pad = round(VAD_PAD_S * sr)
    segs: list[list[int]] = []
    for s, e in runs:
        if e - s < min_frames:
            continue
        a = max(0, s * VAD_HOP - pad)
        b = min(n_samples, (e - 1) * VAD_HOP + VAD_FRAME + pad)
        if segs and a <= segs[-1][1]:
            segs[-1][1] = max(segs[-1][1], b)
        else:
            segs.append([a, b])
    out: list[tuple[int, int]] = []
    for a, b in segs:
        if b - a > max_len:
            fa, fb = a // VAD_HOP, -(-b // VAD_HOP)
            w = e10[fa:fb]
            centre = (float(np.sum((np.arange(fa, fb) + 0.5) * VAD_HOP * w) / w.sum()) if w.sum() > 0
                      else (a + b) / 2.0)
            a = int(min(max(a, round(centre - max_len / 2)), b - max_len))
            b = a + max_len
        if b - a >= min_len:
            out.append((a, b))
    return out


# ----------------------------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------------------------


def _libsndfile_message(exc: BaseException) -> str:
    msg = getattr(exc, "error_string", None) or str(exc) or ""
    msg = msg.strip().rstrip(".")
    code = getattr(exc, "code", None)
    return msg or (f"libsndfile error {code}" if code is not None else type(exc).__name__)


def _wav_claimed_frames(head: bytes) -> int | None:
    """Frames a RIFF/WAVE header's ``data`` chunk claims (``None``: not a plain WAV or a streaming size)."""
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, block_align = 12, 0
    while pos + 8 <= len(head):
        cid, size = head[pos:pos + 4], int.from_bytes(head[pos + 4:pos + 8], "little")
        if cid == b"fmt " and size >= 14 and pos + 22 <= len(head):
            block_align = int.from_bytes(head[pos + 20:pos + 22], "little")
        elif cid == b"data":
            if size in (0, 0xFFFFFFFF) or block_align <= 0:
                return None
            return size // block_align
        pos += 8 + size + (size & 1)
    return None


def _ogg_problem(fd: int, size: int) -> str | None:
    """Why an Ogg file looks cut short (its last page incomplete or without the end-of-stream flag)."""
    n = min(size, 65307 + 64 * 1024)
    tail = os.pread(fd, n, size - n)
    i = tail.rfind(b"OggS")
    while i >= 0:
        if i + 27 <= len(tail) and tail[i + 4] == 0:
            nseg = tail[i + 26]
            if i + 27 + nseg > len(tail):
                return "the last Ogg page is incomplete"
            end = i + 27 + nseg + sum(tail[i + 27:i + 27 + nseg])
            if end > len(tail):
                return "the last Ogg page is incomplete"
            if not tail[i + 5] & 0x04:
                return "the Ogg stream has no end-of-stream page"
            return None
        i = tail.rfind(b"OggS", 0, i)
    return None


@dataclass
class _SourceStats:
    n_read: int = 0
    n_clipped: int = 0
    n_nan: int = 0
    n_inf: int = 0


class _Source:
    """One audio file opened without following symlinks and read block by block: 16 kHz mono float64
    blocks, with the source-level checks (decoding errors, truncation, NaN/Inf, clipping) along the way."""

    def __init__(self, path: Path, sr_out: int, max_s: float) -> None:
        self.path = path
        self.sr_out = sr_out
        self.max_s = max_s
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            self._fd = os.open(path, flags)
        except OSError as exc:
            raise _Reject("unreadable", f"cannot open: {exc.strerror or exc}") from None
        self._sf: sf.SoundFile | None = None
        try:
            st = os.fstat(self._fd)
            if not stat.S_ISREG(st.st_mode):
                raise _Reject("unreadable", "not a regular file")
            self.size = st.st_size
            if self.size == 0:
                raise _Reject("empty", "empty file (0 bytes)")
            head = os.pread(self._fd, 64 * 1024, 0)
            try:
                self._sf = sf.SoundFile(self._fd, closefd=False)
            except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as exc:
                raise _Reject("unreadable", f"not a readable audio file: {_libsndfile_message(exc)}") from None
            self.frames = int(self._sf.frames)
            self.sr = int(self._sf.samplerate)
            self.channels = int(self._sf.channels)
            self.format = f"{self._sf.format}/{self._sf.subtype}"
            claimed = _wav_claimed_frames(head) if self._sf.format in ("WAV", "WAVEX") else None
            if claimed is not None and claimed > self.frames:
                raise _Reject("truncated", f"truncated: the WAV header claims {claimed} frames but the file "
                                           f"holds only {self.frames}")
            if self._sf.format == "OGG":
                problem = _ogg_problem(self._fd, self.size)
                if problem:
                    raise _Reject("truncated", f"truncated: {problem} ({self.frames} frames readable)")
        except OSError as exc:
            self.close()
            raise _Reject("unreadable", f"cannot read: {exc.strerror or exc}") from None
        except BaseException:
            self.close()
            raise
        bits = {"PCM_S8": 8, "PCM_U8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32}.get(self._sf.subtype)
        self.full_scale = min(FULL_SCALE, (2 ** (bits - 1) - 1) / 2 ** (bits - 1)) if bits else FULL_SCALE
        self.stats = _SourceStats()

    @property
    def duration_s(self) -> float:
        return self.frames / self.sr if self.sr > 0 else 0.0

    def close(self) -> None:
        if self._sf is not None:
            self._sf.close()
            self._sf = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def blocks(self) -> Iterator[np.ndarray]:
        """Yield the converted signal (float64, 16 kHz mono); raise :class:`_Reject` at the end (after all
        blocks) for NaN/Inf samples or fewer frames than the header claims, or midway for decoding errors."""
        assert self._sf is not None
        block = max(1, round(BLOCK_S * self.sr))
        limit = round(self.max_s * self.sr)
        rs = ChunkedResampler(self.sr, self.sr_out)
        st = self.stats
        while True:
            try:
                x = self._sf.read(block, dtype="float32", always_2d=True)
            except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as exc:
                raise _Reject("corrupt", f"truncated or corrupt data: decoding failed after {st.n_read} of "
                                         f"{self.frames} frames ({_libsndfile_message(exc)})") from None
            if x.shape[0] == 0:
                break
            st.n_read += x.shape[0]
            if st.n_read > limit:
                raise _Reject("too_long", f"longer than {self.max_s / 3600:g} h (data.max_file_h) when decoded")
            finite = np.isfinite(x)
            if not finite.all():
                st.n_nan += int(np.isnan(x).sum())
                st.n_inf += int(np.isinf(x).sum())
                x = np.where(finite, x, np.float32(0.0))
            st.n_clipped += int(np.count_nonzero(np.abs(x) >= self.full_scale))
            mono = x.mean(axis=1, dtype=np.float64) if x.shape[1] > 1 else x[:, 0].astype(np.float64)
            y = rs.push(mono)
            if y.size:
                yield y
        y = rs.flush()
        if y.size:
            yield y
        if st.n_read < self.frames:
            raise _Reject("truncated", f"truncated: the header claims {self.frames} frames but only {st.n_read} "
                                       "could be decoded")
        if st.n_nan or st.n_inf:
            raise _Reject("non_finite", f"{st.n_nan + st.n_inf} non-finite samples ({st.n_nan} NaN, "
                                        f"{st.n_inf} Inf) of {st.n_read * self.channels}")


class _Accumulator:
    """File-level facts of the converted signal, gathered block by block: length, hash, 10 ms energies."""

    def __init__(self) -> None:
        self.n = 0
        self._sha = hashlib.sha256()
        self._energy: list[np.ndarray] = []
        self._rest = np.zeros(0, dtype=np.float64)

    def feed(self, y: np.ndarray) -> np.ndarray:
        q = _quantize(y)
        self._sha.update(q.tobytes())
        self.n += q.size
        z = np.concatenate([self._rest, q / _SCALE])
        m = z.size // VAD_HOP * VAD_HOP
        self._energy.append(_frame_energy(z[:m]))
        self._rest = z[m:]
        return q

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    def e10(self) -> np.ndarray:
        e = np.concatenate(self._energy) if self._energy else np.zeros(0)
        return np.append(e, float(np.sum(self._rest ** 2))) if self._rest.size else e


# ----------------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------------


@dataclass
class _Piece:
    path: Path
    start: int
    n: int
    sha256: str
    segment: int | None


def _write_error(path: Path, exc: BaseException) -> OSError:
    """Writing outputs must not fail per file (a full disk would reject everything): it is fatal."""
    return OSError(f"cannot write {path}: {_libsndfile_message(exc)}")


def _write_clip(path: Path, q: np.ndarray, sr: int) -> None:
    try:
        sf.write(str(path), q, sr, subtype="PCM_16", format="WAV")
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise _write_error(path, exc) from exc


class _StreamFile:
    """A 16 kHz PCM_16 WAV written block by block; write errors are fatal (``OSError``)."""

    def __init__(self, path: Path, sr: int) -> None:
        self.path = path
        try:
            self._f = sf.SoundFile(str(path), "w", sr, 1, subtype="PCM_16", format="WAV")
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise _write_error(path, exc) from exc

    def write(self, q: np.ndarray) -> None:
        try:
            self._f.write(q)
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise _write_error(self.path, exc) from exc

    def close(self) -> None:
        try:
            self._f.close()
        except (sf.LibsndfileError, RuntimeError) as exc:
            raise _write_error(self.path, exc) from exc


class _PieceWriter:
    """Writes pieces ``[start, end)`` (sample ranges of the converted signal, sorted, not overlapping) of a
    signal that arrives in int16 blocks. ``window`` > 0 instead cuts consecutive pieces of that length (a
    last piece shorter than ``min_len`` is dropped)."""

    def __init__(self, out_dir: Path, base_id: str, sr: int, written: list[Path], *,
                 segments: list[tuple[int, int]] | None = None, window: int = 0, min_len: int = 0) -> None:
        self.out_dir, self.base_id, self.sr = out_dir, base_id, sr
        self.written = written  # every path is registered before it is written, for clean-up
        self.segments = list(segments or [])
        self.window, self.min_len = window, min_len
        self.pieces: list[_Piece] = []
        self._buf = np.zeros(0, dtype="<i2")
        self._buf_start = 0  # sample index of _buf[0]
        self._next = 0  # next segment index

    def _segment(self, k: int) -> tuple[int, int] | None:
        if self.window:
            return (k * self.window, (k + 1) * self.window)
        return self.segments[k] if k < len(self.segments) else None

    def _emit(self, a: int, b: int) -> None:
        q = self._buf[a - self._buf_start:b - self._buf_start]
        k = self._next
        path = self.out_dir / f"{self.base_id}-{k}.wav"
        self.pieces.append(_Piece(path, a, q.size, hashlib.sha256(q.tobytes()).hexdigest(), k))
        self.written.append(path)
        _write_clip(path, q, self.sr)

    def feed(self, q: np.ndarray) -> None:
        self._buf = np.concatenate([self._buf, q]) if self._buf.size else q
        end = self._buf_start + self._buf.size
        while (seg := self._segment(self._next)) is not None and seg[1] <= end:
            self._emit(*seg)
            self._next += 1
        seg = self._segment(self._next)
        keep = end if seg is None else min(max(seg[0], self._buf_start), end)
        self._buf = self._buf[keep - self._buf_start:]
        self._buf_start = keep

    def finish(self, n_total: int) -> None:
        seg = self._segment(self._next)
        if seg is not None and seg[0] < n_total:
            a, b = seg[0], min(seg[1], n_total)
            if b - a >= max(1, self.min_len):
                self._emit(a, b)
        self._buf = np.zeros(0, dtype="<i2")


# ----------------------------------------------------------------------------------------------------------
# Scanning
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Candidate:
    rel: str  # POSIX path relative to raw_dir
    kind: str


@dataclass
class _Outcome:
    status: str  # accepted | rejected | ignored
    path: str
    reason: str = ""
    code: str = ""
    kind: str = ""
    flags: tuple[str, ...] = ()


@dataclass
class _Scan:
    candidates: list[_Candidate] = field(default_factory=list)
    outcomes: list[_Outcome] = field(default_factory=list)


def _hidden(name: str) -> bool:
    return name.startswith(".") or name.lower() in SYSTEM_FILES


def _symlink_reason(full: str, root: str) -> str:
    target = os.path.realpath(full)
    if not os.path.exists(full):
        return "broken symlink (refused: symlinks are never followed)"
    if os.path.commonpath([target, root]) != root:
        return "symlink to a path outside raw_dir (refused: symlinks are never followed)"
    return "symlink (refused: symlinks are never followed; copy the file instead)"


def _scan(root: Path) -> _Scan:
    """Find every entry under ``root`` (already resolved) without following symlinks."""
    scan = _Scan()
    root_s = str(root)
    if not root.is_dir():
        return scan

    def rel_of(full: str) -> str:
        return PurePosixPath(*Path(os.path.relpath(full, root_s)).parts).as_posix()

    def ignore(full: str, reason: str) -> None:
        scan.outcomes.append(_Outcome("ignored", rel_of(full), reason))

    def refuse(full: str, reason: str, code: str) -> None:
        scan.outcomes.append(_Outcome("rejected", rel_of(full), reason, code))

    with os.scandir(root_s) as it:
        top = sorted(it, key=lambda e: e.name)
    for entry in top:
        if entry.is_symlink():
            refuse(entry.path, _symlink_reason(entry.path, root_s), "symlink")
        elif _hidden(entry.name):
            ignore(entry.path, "hidden or system " + ("directory (not scanned)" if entry.is_dir() else "file"))
        elif entry.is_dir() and entry.name in KIND_ORDER:
            _scan_kind(Path(entry.path), entry.name, root_s, scan, rel_of)
        elif entry.is_dir():
            hint = difflib.get_close_matches(entry.name.lower(), KIND_ORDER, n=1, cutoff=0.6)
            ignore(entry.path, f"directory is not a known kind ({', '.join(KIND_ORDER)}); not scanned"
                   + (f"; did you mean {hint[0]!r}?" if hint else ""))
        else:
            ignore(entry.path, f"not under a kind directory ({', '.join(KIND_ORDER)})")
    return scan


def _scan_kind(kind_dir: Path, kind: str, root_s: str, scan: _Scan, rel_of: Callable[[str], str]) -> None:
    """Walk one kind directory: symlinks refused, hidden entries and special files ignored."""
    def unlistable(exc: OSError) -> None:
        where = rel_of(exc.filename) if exc.filename else kind
        scan.outcomes.append(_Outcome("rejected", where, f"cannot list directory: {exc.strerror}", "unreadable"))

    for dirpath, dirnames, filenames in os.walk(kind_dir, onerror=unlistable, followlinks=False):
        dirnames.sort()
        for d in list(dirnames):
            full = os.path.join(dirpath, d)
            if os.path.islink(full):
                scan.outcomes.append(_Outcome("rejected", rel_of(full), _symlink_reason(full, root_s), "symlink"))
                dirnames.remove(d)
            elif _hidden(d):
                scan.outcomes.append(_Outcome("ignored", rel_of(full), "hidden or system directory (not scanned)"))
                dirnames.remove(d)
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            try:
                st = os.lstat(full)
            except OSError as exc:
                scan.outcomes.append(_Outcome("rejected", rel_of(full), f"cannot stat: {exc.strerror}",
                                              "unreadable"))
                continue
            if stat.S_ISLNK(st.st_mode):
                scan.outcomes.append(_Outcome("rejected", rel_of(full), _symlink_reason(full, root_s), "symlink"))
            elif _hidden(name):
                scan.outcomes.append(_Outcome("ignored", rel_of(full), "hidden or system file"))
            elif not stat.S_ISREG(st.st_mode):
                scan.outcomes.append(_Outcome("ignored", rel_of(full), "not a regular file"))
            elif os.path.commonpath([os.path.realpath(full), root_s]) != root_s:
                scan.outcomes.append(_Outcome("rejected", rel_of(full), "resolves to a path outside raw_dir",
                                              "outside_root"))
            else:
                scan.candidates.append(_Candidate(rel_of(full), kind))


# ----------------------------------------------------------------------------------------------------------
# Per-file processing
# ----------------------------------------------------------------------------------------------------------


def group_of(rel: str) -> tuple[str, str]:
    """(group, stream role dir or "") for a path relative to raw_dir: ``positive/alice/x.wav`` -> ``own:alice``,
    ``positive/x.wav`` -> ``own:positive/x``, ``stream/val/x.wav`` -> ``own:stream/val/x`` with role val."""
    parts = PurePosixPath(rel).parts
    kind, rest = parts[0], list(parts[1:])
    role = ""
    prefix = kind
    if kind == "stream" and len(rest) > 1 and rest[0] in STREAM_ROLES:
        role = rest.pop(0)
        prefix = f"stream/{role}"
    if len(rest) > 1:
        return f"own:{rest[0]}", role
    return f"own:{prefix}/{PurePosixPath(rest[0]).stem}", role


def item_id(rel: str, kind: str) -> str:
    """Stable id from the relative source path alone."""
    return f"own-{kind}-{hashlib.sha1(rel.encode('utf-8'), usedforsecurity=False).hexdigest()[:12]}"


@dataclass
class _Accepted:
    items: list[Item]
    sha256: str
    flags: tuple[str, ...]
    conversions: tuple[str, ...]


class _Ingest:
    """The state of one run: the temporary output tree, the hashes kept so far, label conflicts."""

    def __init__(self, raw: Path, tmp: Path, data: DataParams, audio: AudioParams, seed: int) -> None:
        self.raw, self.tmp, self.data, self.seed = raw, tmp, data, seed
        self.sr = int(audio.sample_rate_hz)
        self.seen: dict[str, tuple[str, str]] = {}  # sha256 -> (rel, kind) of the kept file
        self.conflicts: list[dict[str, str]] = []
        self.written: list[Path] = []

    # -- helpers ------------------------------------------------------------------------------------------

    def _open(self, c: _Candidate) -> _Source:
        return _Source(self.raw / c.rel, self.sr, self.data.max_file_h * 3600.0)

    def _cleanup(self) -> None:
        for p in self.written:
            p.unlink(missing_ok=True)
        self.written.clear()

    def process(self, c: _Candidate) -> _Outcome | _Accepted:
        """Convert one file; any rejection removes what it wrote."""
        self.written.clear()
        try:
            return self._process(c)
        except _Reject as r:
            self._cleanup()
            return _Outcome("rejected", c.rel, r.reason, r.code, c.kind)
        except (sf.LibsndfileError, RuntimeError, ValueError, MemoryError) as exc:
            self._cleanup()
            return _Outcome("rejected", c.rel, f"could not be processed: {type(exc).__name__}: "
                                               f"{_libsndfile_message(exc)}", "error", c.kind)
        except BaseException:
            self._cleanup()
            raise

    def _check_header(self, c: _Candidate, src: _Source) -> None:
        d = self.data
        if src.frames <= 0:
            hint = " (the file may be truncated)" if src.size > 4096 else ""
            raise _Reject("no_samples", f"no audio samples (0 frames){hint}")
        if src.duration_s > d.max_file_h * 3600.0:
            raise _Reject("too_long", f"too long: {src.duration_s / 3600:.2f} h > data.max_file_h "
                                      f"{d.max_file_h:g} h")
        if not MIN_SOURCE_SR <= src.sr <= MAX_SOURCE_SR:
            raise _Reject("sample_rate", f"sample rate {src.sr} Hz is outside {MIN_SOURCE_SR}-{MAX_SOURCE_SR} Hz")
        self._check_length(c.kind, src.duration_s)

    def _check_length(self, kind: str, dur: float) -> None:
        d = self.data
        if kind == "stream" and dur < d.min_stream_s:
            raise _Reject("too_short", f"too short for a stream: {dur:.2f} s < data.min_stream_s {d.min_stream_s:g} s")
        if kind == "rir":
            if dur < RIR_MIN_S:
                raise _Reject("too_short", f"too short for a room impulse response: {dur:.3f} s < {RIR_MIN_S:g} s")
            if dur > RIR_MAX_S:
                raise _Reject("too_long", f"too long for a room impulse response: {dur:.2f} s > {RIR_MAX_S:g} s")
        elif kind != "stream" and dur < d.min_clip_s:
            raise _Reject("too_short", f"too short: {dur:.3f} s < data.min_clip_s {d.min_clip_s:g} s")

    def _flags(self, kind: str, src: _Source, acc: _Accumulator) -> tuple[list[str], list[str]]:
        d = self.data
        flags, details = [], []
        total = max(1, src.stats.n_read * src.channels)
        share = src.stats.n_clipped / total
        if share > d.clipped_fraction:
            flags.append("clipped")
            details.append(f"clipped: {share:.2%} of samples at full scale > data.clipped_fraction "
                           f"{d.clipped_fraction:g}")
        if kind != "rir":
            loud = _loudest_dbfs(acc.e10(), acc.n, self.sr)
            if loud < d.silence_dbfs:
                flags.append("near_silent")
                details.append(f"near_silent: loudest 100 ms at {loud:.1f} dBFS < data.silence_dbfs "
                               f"{d.silence_dbfs:g}")
        return flags, details

    # -- the pipeline per file ----------------------------------------------------------------------------

    def _process(self, c: _Candidate) -> _Outcome | _Accepted:
        """Pass 1 converts block by block (streams and windowed files are written as they go), then the
        file-level checks (length, duplicate, flags) run; long VAD files are cut in a second pass."""
        d = self.data
        max_len = round(d.max_clip_s * self.sr)
        min_len = round(d.min_clip_s * self.sr)
        base = item_id(c.rel, c.kind)
        out_sub = self.tmp / ("streams" if c.kind == "stream" else f"clips/{c.kind}")
        src = self._open(c)
        collected: list[np.ndarray] = []
        writer: _PieceWriter | None = None
        stream_file: _StreamFile | None = None
        acc = _Accumulator()
        try:
            self._check_header(c, src)
            long_file = src.duration_s > d.max_clip_s
            collect = c.kind == "rir" or not long_file  # long VAD files are read twice instead
            if c.kind == "stream":
                path = out_sub / f"{base}.wav"
                self.written.append(path)
                stream_file = _StreamFile(path, self.sr)
            elif c.kind in WINDOW_KINDS and long_file:
                writer = _PieceWriter(out_sub, base, self.sr, self.written, window=max_len, min_len=min_len)
            for y in src.blocks():
                q = acc.feed(y)
                if stream_file is not None:
                    stream_file.write(q)
                elif writer is not None:
                    writer.feed(q)
                elif collect:
                    collected.append(y)
            if stream_file is not None:
                stream_file.close()
                stream_file = None
            if writer is not None:
                writer.finish(acc.n)
        finally:
            if stream_file is not None:  # only when an error is on its way: do not mask it
                with contextlib.suppress(OSError):
                    stream_file.close()
            src.close()
        dur = acc.n / self.sr
        self._check_length(c.kind, dur)
        if acc.sha256 in self.seen:
            first, first_kind = self.seen[acc.sha256]
            if first_kind != c.kind:
                self.conflicts.append({"path": c.rel, "kind": c.kind, "duplicate_of": first,
                                       "duplicate_of_kind": first_kind})
            raise _Reject("duplicate", f"duplicate of {first}")
        flags, details = self._flags(c.kind, src, acc)
        if flags and d.drop_flagged:
            raise _Reject("flagged", "; ".join(details) + " (data.drop_flagged is true)")
        conversions = []
        if src.sr != self.sr:
            conversions.append("resampled")
        if src.channels > 1:
            conversions.append("downmixed")

        pieces: list[_Piece]
        if c.kind == "stream":
            pieces = [_Piece(out_sub / f"{base}.wav", 0, acc.n, acc.sha256, None)]
        elif writer is not None or (c.kind in WINDOW_KINDS and acc.n > max_len):
            if writer is None:  # the header under-stated the length: cut what was collected
                writer = _PieceWriter(out_sub, base, self.sr, self.written, window=max_len, min_len=min_len)
                writer.feed(_quantize(np.concatenate(collected)))
                writer.finish(acc.n)
            pieces = writer.pieces
            conversions.append("windowed")
        elif c.kind in VAD_KINDS and acc.n > max_len:
            segs = speech_segments(acc.e10(), acc.n, max_len=max_len, min_len=min_len,
                                   silence_dbfs=d.silence_dbfs, sr=self.sr)
            if not segs:
                raise _Reject("no_speech", "no speech found by VAD")
            writer = _PieceWriter(out_sub, base, self.sr, self.written, segments=segs)
            if collected:
                writer.feed(_quantize(np.concatenate(collected)))
            else:  # second pass: the file is read again, only the segments are kept
                again = _Accumulator()
                src2 = self._open(c)
                try:
                    for y in src2.blocks():
                        writer.feed(again.feed(y))
                finally:
                    src2.close()
                if again.sha256 != acc.sha256:
                    raise _Reject("changed", "the file changed while it was being read")
            writer.finish(acc.n)
            pieces = writer.pieces
            conversions.append("vad_trimmed")
        else:
            y = np.concatenate(collected) if collected else np.zeros(0)
            if c.kind == "rir":
                peak = float(np.max(np.abs(y))) if y.size else 0.0
                if peak <= 0.0 or not np.any(_quantize(y)):
                    raise _Reject("no_samples", "all samples are zero (cannot normalise a room impulse response)")
                y = y * ((_SCALE - 1) / _SCALE / peak)  # the peak becomes +-32767
                conversions.append("peak_normalised")
            q = _quantize(y)
            path = out_sub / f"{base}.wav"
            self.written.append(path)
            _write_clip(path, q, self.sr)
            pieces = [_Piece(path, 0, q.size, hashlib.sha256(q.tobytes()).hexdigest(), None)]
        if not pieces:
            raise _Reject("too_short", f"no piece of at least data.min_clip_s {d.min_clip_s:g} s")

        group, role_dir = group_of(c.rel)
        role = ""
        if c.kind == "stream":
            role = role_dir or ("val" if group_unit(self.seed, group) < 0.5 else "test")
        items = []
        for p in pieces:
            extra: dict[str, Any] = {"source": c.rel, "sha256": p.sha256, "flags": sorted(flags),
                                     "conversions": sorted(conversions), "source_format": src.format,
                                     "source_sample_rate_hz": src.sr, "source_channels": src.channels}
            if p.segment is not None:
                extra["segment"] = p.segment
                extra["start_s"] = round(p.start / self.sr, 6)
            items.append(Item(
                id=p.path.stem, path=p.path.relative_to(self.tmp).as_posix(), kind=c.kind, group=group,
                duration_s=round(p.n / self.sr, 6), engine="own", voice=group.removeprefix("own:"), role=role,
                extra=extra,
            ))
        self.seen[acc.sha256] = (c.rel, c.kind)
        self.written.clear()
        return _Accepted(items, acc.sha256, tuple(sorted(flags)), tuple(sorted(conversions)))


# ----------------------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------------------


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _replace_dir(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``, replacing an old ``dst`` with two renames (never a half-written state)."""
    old = dst.parent / f".{dst.name}.old-{os.getpid()}"
    _remove(old)
    if dst.exists() or dst.is_symlink():
        dst.rename(old)
    src.rename(dst)
    _remove(old)


def _check_dirs(raw_dir: Path, out_dir: Path) -> tuple[Path, Path]:
    raw = raw_dir.resolve()
    out = out_dir.resolve()
    if raw_dir.exists() and not raw.is_dir():
        raise IngestError(f"raw_dir {raw_dir} is not a directory")
    if out == raw or out.is_relative_to(raw):
        raise IngestError(f"out_dir {out_dir} is inside raw_dir {raw_dir}: outputs would be ingested as inputs")
    if raw.is_relative_to(out):
        raise IngestError(f"raw_dir {raw_dir} is inside out_dir {out_dir}: replacing out_dir would delete it")
    return raw, out


def _report(outcomes: list[_Outcome], items: list[Item], conversions: Counter[str],
            conflicts: list[dict[str, str]]) -> dict[str, Any]:
    by_status = Counter(o.status for o in outcomes)
    counts = {k: 0 for k in sorted(KIND_ORDER)}
    hours = {k: 0.0 for k in sorted(KIND_ORDER)}
    groups: dict[str, set[str]] = {k: set() for k in KIND_ORDER}
    for it in items:
        counts[it.kind] += 1
        hours[it.kind] += it.duration_s / 3600.0
        groups[it.kind].add(it.group)
    flagged = Counter(f for o in outcomes if o.status == "accepted" for f in o.flags)
    rejected = sorted((o for o in outcomes if o.status == "rejected"), key=lambda o: o.path)
    return {
        "files_seen": len(outcomes),
        "accepted": by_status["accepted"],
        "rejected": by_status["rejected"],
        "ignored": by_status["ignored"],
        "counts": counts,
        "hours": {k: round(v, 6) for k, v in hours.items()},
        "groups": {k: len(groups[k]) for k in sorted(KIND_ORDER)},
        "flagged": {f: flagged[f] for f in FLAGS},
        "conversions": {c: conversions[c] for c in CONVERSIONS},
        "rejected_by_reason": dict(sorted(Counter(o.code for o in rejected).items())),
        "rejected_files": [{"path": o.path, "reason": o.reason} for o in rejected],
        "flagged_files": [{"path": o.path, "flags": list(o.flags)}
                          for o in sorted(outcomes, key=lambda o: o.path) if o.status == "accepted" and o.flags],
        "ignored_files": [{"path": o.path, "reason": o.reason}
                          for o in sorted(outcomes, key=lambda o: o.path) if o.status == "ignored"],
        "label_conflicts": sorted(conflicts, key=lambda c: c["path"]),
    }


def ingest_raw(raw_dir: Path, out_dir: Path, data: DataParams, audio: AudioParams, seed: int) -> dict[str, Any]:
    """Convert and validate everything under ``raw_dir`` into ``out_dir`` (replaced atomically); return the
    report (JSON-serialisable, deterministic; see the module docstring for the rules).

    Report: ``files_seen`` = ``accepted`` + ``rejected`` + ``ignored`` (entries: files, plus one per
    symlinked, hidden or unknown directory), ``counts`` / ``hours`` / ``groups`` per kind (clips after
    cutting), ``flagged`` per flag (files), ``conversions`` (files), ``rejected_by_reason`` (codes),
    ``rejected_files`` / ``ignored_files`` ``[{path, reason}]``, ``flagged_files`` ``[{path, flags}]``,
    ``label_conflicts`` ``[{path, kind, duplicate_of, duplicate_of_kind}]``; paths relative to ``raw_dir``.
    A missing or empty ``raw_dir`` gives an empty manifest. Raises :class:`IngestError` for unusable
    directories; errors writing the outputs propagate and leave ``out_dir`` as it was.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    raw, out = _check_dirs(raw_dir, out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        for k in CLIP_KINDS:
            (tmp / "clips" / k).mkdir(parents=True, exist_ok=True)
        (tmp / "streams").mkdir(parents=True, exist_ok=True)
        scan = _scan(raw)
        outcomes = list(scan.outcomes)
        order = {k: i for i, k in enumerate(KIND_ORDER)}
        candidates = sorted(scan.candidates, key=lambda c: (order[c.kind], c.rel))
        job = _Ingest(raw, tmp, data, audio, seed)
        items: list[Item] = []
        conversions: Counter[str] = Counter()
        for c in tqdm(candidates, desc="ingest", unit="file", disable=None, leave=False):
            res = job.process(c)
            if isinstance(res, _Accepted):
                items.extend(res.items)
                conversions.update(res.conversions)
                outcomes.append(_Outcome("accepted", c.rel, kind=c.kind, flags=res.flags))
                if res.flags:
                    LOG.info("%s: accepted with flags %s", c.rel, ", ".join(res.flags))
            else:
                outcomes.append(res)
                LOG.warning("%s: rejected: %s", c.rel, res.reason)
        write_manifest(tmp / "manifest.jsonl", items)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report = _report(outcomes, items, conversions, job.conflicts)
    LOG.info("ingest: %d files seen, %d accepted, %d rejected, %d ignored; %d clips", report["files_seen"],
             report["accepted"], report["rejected"], report["ignored"], len(items))
    return report
