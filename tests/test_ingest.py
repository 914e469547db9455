"""Own-audio ingest: a raw directory of broken and awkward files is converted or reported, never fatal."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from scipy.signal import resample_poly

from wakeword import ingest as I
from wakeword.manifest import read_manifest
from wakeword.params import AudioParams, DataParams
from wakeword.split import group_unit

SEED = 1234
DATA = DataParams(min_clip_s=0.2, max_clip_s=2.0, min_stream_s=60.0, max_file_h=2.0)
AUDIO = AudioParams()


# ----------------------------------------------------------------------------------------------------------
# Signal and file helpers
# ----------------------------------------------------------------------------------------------------------


def _noise(n: int, dbfs: float, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n) * 10 ** (dbfs / 20)


def _speechlike(n: int, sr: int, f0: float = 140.0, peak: float = 0.5) -> np.ndarray:
    """A harmonic tone with 4 Hz syllable-rate amplitude modulation and soft edges."""
    t = np.arange(n) / sr
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 9) if k * f0 < sr / 2)
    x = x * (0.55 + 0.45 * np.sin(2 * np.pi * 4.0 * t))
    ramp = min(n // 4, int(0.03 * sr))
    env = np.ones(n)
    env[:ramp] = np.linspace(0, 1, ramp)
    env[n - ramp:] = np.linspace(1, 0, ramp)
    x = x * env
    return peak * x / np.max(np.abs(x))


def _with_bursts(dur: float, bursts: list[tuple[float, float]], sr: int = 16000, seed: int = 0) -> np.ndarray:
    x = _noise(round(dur * sr), -60.0, seed)
    for a, b in bursts:
        ia, ib = round(a * sr), round(b * sr)
        x[ia:ib] += _speechlike(ib - ia, sr)
    return x


def _write(path: Path, x: np.ndarray, sr: int = 16000, subtype: str = "PCM_16", fmt: str = "WAV") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, sr, subtype=subtype, format=fmt)
    return path


def _cut(path: Path, frac: float) -> None:
    b = path.read_bytes()
    path.write_bytes(b[:int(len(b) * frac)])


def _hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# Expected status per entry: (status, reason substring or "")
EXPECTED: dict[str, tuple[str, str]] = {}


def _build_raw(raw: Path, outside: Path) -> None:
    """The messy raw directory (see EXPECTED for what should happen to each entry)."""
    def exp(rel: str, status: str, reason: str = "") -> Path:
        EXPECTED[rel] = (status, reason)
        return raw / rel

    take1 = np.round(_speechlike(16000, 16000) * 32767).astype(np.int16)  # same samples in WAV and FLAC
    _write(exp("positive/alice/take1.wav", "accepted"), take1)
    _write(exp("positive/alice/take1_copy.flac", "rejected", "duplicate of positive/alice/take1.wav"), take1,
           subtype="PCM_16", fmt="FLAC")
    _write(exp("hard_negative/cross.wav", "rejected", "duplicate of positive/alice/take1.wav"), take1)
    _write(exp("positive/alice/r44k.wav", "accepted"), _speechlike(52920, 44100, 150.0), 44100)
    _write(exp("positive/bob/r22k.flac", "accepted"), _speechlike(22050, 22050, 160.0), 22050, fmt="FLAC")
    _write(exp("positive/bob/r8k.wav", "accepted"), _speechlike(12000, 8000, 120.0), 8000)
    st = np.stack([_speechlike(48000, 48000, 130.0), _speechlike(48000, 48000, 170.0)], axis=1)
    _write(exp("positive/bob/stereo48k.wav", "accepted"), st, 48000)
    six = np.stack([_speechlike(16000, 16000, 100.0 + 20 * k) for k in range(6)], axis=1)
    _write(exp("positive/carol/six.wav", "accepted"), six)
    _write(exp("positive/carol/u8.wav", "accepted"), _speechlike(8000, 16000, 110.0), subtype="PCM_U8")
    _write(exp("positive/carol/s24.wav", "accepted"), _speechlike(44100, 44100, 115.0), 44100, subtype="PCM_24")
    _write(exp("positive/carol/s32.wav", "accepted"), _speechlike(16000, 16000, 125.0), subtype="PCM_32")
    _write(exp("positive/carol/f32.wav", "accepted"), _speechlike(16000, 16000, 135.0), subtype="FLOAT")
    _write(exp("positive/dave/good.mp3", "accepted"), _speechlike(22050, 22050, 145.0), 22050,
           subtype="MPEG_LAYER_III", fmt="MP3")
    _write(exp("positive/dave/good.ogg", "accepted"), _speechlike(22050, 22050, 155.0), 22050,
           subtype="VORBIS", fmt="OGG")
    _write(exp("positive/direct.wav", "accepted"), _speechlike(20000, 16000, 165.0))
    # long positives: VAD
    _write(exp("positive/erin/one_burst.wav", "accepted"), _with_bursts(6.0, [(2.0, 2.8)], seed=1))
    _write(exp("positive/erin/two_bursts.wav", "accepted"), _with_bursts(8.0, [(1.0, 1.6), (5.0, 5.7)], seed=2))
    _write(exp("positive/erin/long_speech.wav", "accepted"), _with_bursts(7.0, [(2.0, 5.0)], seed=3))
    _write(exp("positive/erin/noise_only.wav", "rejected", "no speech found by VAD"), _noise(5 * 16000, -40, 4))
    # flags
    clipped = np.clip(3.0 * _speechlike(16000, 16000, 175.0), -1.0, 1.0)
    _write(exp("positive/frank/clipped.wav", "accepted"), clipped)
    _write(exp("positive/frank/quiet.wav", "accepted"), 1e-4 * _speechlike(16000, 16000, 180.0))
    # bad files
    _write(exp("positive/bad/short.wav", "rejected", "too short"), _speechlike(1600, 16000))
    nan = _speechlike(16000, 16000, 185.0).astype(np.float32)
    nan[[10, 500, 900]] = np.nan
    nan[[1000, 2000]] = np.inf
    _write(exp("positive/bad/nan.wav", "rejected", "5 non-finite samples (3 NaN, 2 Inf)"), nan, subtype="FLOAT")
    good = _write(raw / "positive/bad/corrupt.wav", _speechlike(16000, 16000, 190.0))
    good.write_bytes(good.read_bytes()[:12] + np.random.default_rng(5).bytes(4000))
    EXPECTED["positive/bad/corrupt.wav"] = ("rejected", "not a readable audio file")
    exp("positive/bad/text.wav", "rejected", "not a readable audio file: Format not recognised").write_text(
        "this is not audio\n" * 20)
    exp("positive/bad/empty.wav", "rejected", "empty file (0 bytes)").write_bytes(b"")
    _write(exp("positive/bad/zero.wav", "rejected", "no audio samples"), np.zeros(0))
    _write(exp("positive/bad/trunc.wav", "rejected", "truncated: the WAV header claims 16000 frames"),
           _speechlike(16000, 16000, 195.0))
    _cut(raw / "positive/bad/trunc.wav", 0.6)
    _write(exp("positive/bad/trunc.flac", "rejected", "truncated or corrupt data"),
           _with_bursts(3.0, [(0.2, 2.8)], seed=6), fmt="FLAC")
    _cut(raw / "positive/bad/trunc.flac", 0.5)
    _write(exp("positive/bad/trunc.ogg", "rejected", "truncated"), _speechlike(5 * 22050, 22050), 22050,
           subtype="VORBIS", fmt="OGG")
    _cut(raw / "positive/bad/trunc.ogg", 0.9)
    _write(exp("positive/bad/trunc.mp3", "rejected", "truncated: the header claims"),
           _speechlike(5 * 22050, 22050), 22050, subtype="MPEG_LAYER_III", fmt="MP3")
    _cut(raw / "positive/bad/trunc.mp3", 0.6)
    _write(exp("positive/bad/three_hours.wav", "rejected", "too long: 3.00 h > data.max_file_h 2 h"),
           np.zeros(3 * 3600, dtype=np.int16), 1)
    _write(exp("positive/bad/r4k.wav", "rejected", "sample rate 4000 Hz"), _speechlike(4000, 4000, 100.0), 4000)
    # links, hidden, outside
    os.symlink(raw / "positive/alice/take1.wav", exp("positive/link_good.wav", "rejected", "symlink (refused"))
    target = _write(outside / "secret.wav", _speechlike(16000, 16000, 200.0))
    os.symlink(target, exp("positive/link_out.wav", "rejected", "outside raw_dir"))
    (raw / "negative").mkdir(parents=True, exist_ok=True)
    os.symlink(outside, exp("negative/linkdir", "rejected", "symlink"))
    exp("positive/.DS_Store", "ignored", "hidden").write_bytes(b"\0\1\2")
    _write(exp("negative/.cache", "ignored", "hidden or system directory") / "x.wav", _noise(16000, -30, 7))
    exp("README.txt", "ignored", "not under a kind directory").write_text("my data\n")
    _write(exp("Positive", "ignored", "did you mean 'positive'") / "x.wav", _noise(16000, -30, 8))
    # other kinds
    _write(exp("hard_negative/eve/conf1.wav", "accepted"), _speechlike(16000, 16000, 210.0))
    _write(exp("negative/n1.wav", "accepted"), _noise(24000, -30, 9))
    _write(exp("negative/gina/long22k.wav", "accepted"), _noise(round(8.1 * 22050), -30, 10), 22050)
    _write(exp("background/bg48k.wav", "accepted"), _noise(3 * 48000, -25, 11), 48000)
    t = np.arange(8000) / 16000
    rir = 0.3 * np.exp(-t / 0.05) * _noise(8000, 0, 12)
    _write(exp("rir/room1.wav", "accepted"), rir)
    _write(exp("rir/too_long.wav", "rejected", "too long for a room impulse response"), _noise(6 * 16000, -30, 13))
    _write(exp("stream/test/rec.flac", "accepted"), _noise(61 * 16000, -30, 14), fmt="FLAC")
    _write(exp("stream/short.wav", "rejected", "too short for a stream"), _noise(30 * 8000, -30, 15), 8000)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("ingest")
    raw, out = base / "raw", base / "out"
    _build_raw(raw, base / "elsewhere")
    report = I.ingest_raw(raw, out, DATA, AUDIO, SEED)
    items = read_manifest(out / "manifest.jsonl")
    return {"base": base, "raw": raw, "out": out, "report": report, "items": items}


def _by_source(items: list[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for it in items:
        out.setdefault(it.extra["source"], []).append(it)
    return out


# ----------------------------------------------------------------------------------------------------------
# Every file accounted for
# ----------------------------------------------------------------------------------------------------------


def test_every_entry_once_with_expected_status(run: dict[str, Any]) -> None:
    report, items = run["report"], run["items"]
    accepted = set(_by_source(items))
    rejected = {r["path"]: r["reason"] for r in report["rejected_files"]}
    ignored = {r["path"]: r["reason"] for r in report["ignored_files"]}
    listed = [*accepted, *rejected, *ignored]
    assert len(listed) == len(set(listed)), "an entry has two statuses"
    assert set(listed) == set(EXPECTED)
    for rel, (status, reason) in EXPECTED.items():
        got = "accepted" if rel in accepted else "rejected" if rel in rejected else "ignored"
        assert got == status, (rel, got, rejected.get(rel) or ignored.get(rel))
        if reason:
            assert reason in (rejected.get(rel) or ignored.get(rel) or ""), (rel, rejected.get(rel))
    n_acc = sum(1 for s, _ in EXPECTED.values() if s == "accepted")
    n_rej = sum(1 for s, _ in EXPECTED.values() if s == "rejected")
    n_ign = sum(1 for s, _ in EXPECTED.values() if s == "ignored")
    assert (report["accepted"], report["rejected"], report["ignored"]) == (n_acc, n_rej, n_ign)
    assert report["files_seen"] == n_acc + n_rej + n_ign == len(EXPECTED)
    assert report["rejected_by_reason"]["duplicate"] == 2
    assert report["rejected_by_reason"]["symlink"] == 3
    assert report["rejected_files"] == sorted(report["rejected_files"], key=lambda r: r["path"])
    json.dumps(report)  # serialisable


def test_specific_reasons(run: dict[str, Any]) -> None:
    rejected = {r["path"]: r["reason"] for r in run["report"]["rejected_files"]}
    assert rejected["positive/bad/trunc.flac"].startswith("truncated or corrupt data: decoding failed after")
    assert "Ogg" in rejected["positive/bad/trunc.ogg"]
    assert rejected["positive/bad/trunc.wav"] == ("truncated: the WAV header claims 16000 frames but the file holds "
                                                  f"only {(int(32044 * 0.6) - 44) // 2}")
    assert rejected["positive/link_good.wav"].startswith("symlink (refused")
    assert rejected["positive/bad/short.wav"] == "too short: 0.100 s < data.min_clip_s 0.2 s"
    assert "No 'data' chunk" in rejected["positive/bad/corrupt.wav"]
    assert rejected["stream/short.wav"] == "too short for a stream: 30.00 s < data.min_stream_s 60 s"


def test_duplicates_and_label_conflicts(run: dict[str, Any]) -> None:
    assert run["report"]["label_conflicts"] == [{
        "path": "hard_negative/cross.wav", "kind": "hard_negative", "duplicate_of": "positive/alice/take1.wav",
        "duplicate_of_kind": "positive"}]
    hashes = [it.extra["sha256"] for it in run["items"]]
    assert len(hashes) == len(set(hashes))


# ----------------------------------------------------------------------------------------------------------
# Outputs
# ----------------------------------------------------------------------------------------------------------


def test_outputs_are_16k_mono_int16_with_right_durations(run: dict[str, Any]) -> None:
    out, items = run["out"], run["items"]
    files = {p.relative_to(out).as_posix() for p in out.rglob("*.wav")}
    assert files == {it.path for it in items}, "an output without a manifest row or the reverse"
    for it in items:
        info = sf.info(str(out / it.path))
        assert (info.samplerate, info.channels, info.subtype, info.format) == (16000, 1, "PCM_16", "WAV")
        assert math.isclose(info.frames / 16000, it.duration_s, abs_tol=1e-6)
        q, _ = sf.read(str(out / it.path), dtype="int16")
        assert it.extra["sha256"] == hashlib.sha256(q.astype("<i2").tobytes()).hexdigest()
        assert it.path == f"{'streams' if it.kind == 'stream' else 'clips/' + it.kind}/{it.id}.wav"
        assert it.engine == "own" and it.voice == it.group.removeprefix("own:")
    src = _by_source(items)
    expect_s = {"positive/alice/r44k.wav": 1.2, "positive/bob/r22k.flac": 1.0, "positive/bob/r8k.wav": 1.5,
                "positive/bob/stereo48k.wav": 1.0, "positive/carol/six.wav": 1.0, "positive/carol/u8.wav": 0.5,
                "positive/carol/s24.wav": 1.0, "positive/dave/good.mp3": 1.0, "positive/dave/good.ogg": 1.0,
                "rir/room1.wav": 0.5, "stream/test/rec.flac": 61.0, "negative/n1.wav": 1.5}
    for rel, dur in expect_s.items():
        (it,) = src[rel]
        assert abs(it.duration_s - dur) < 1.5e-4, (rel, it.duration_s)
    assert src["positive/alice/r44k.wav"][0].extra["conversions"] == ["resampled"]
    assert src["positive/bob/stereo48k.wav"][0].extra["conversions"] == ["downmixed", "resampled"]
    assert src["positive/carol/six.wav"][0].extra["source_channels"] == 6
    conv = run["report"]["conversions"]
    # resampled: r44k r22k r8k stereo48k s24 mp3 ogg + long22k bg48k
    assert conv == {"downmixed": 2, "peak_normalised": 1, "resampled": 9, "vad_trimmed": 3, "windowed": 2}


def test_resampled_file_equals_one_shot(run: dict[str, Any]) -> None:
    (it,) = _by_source(run["items"])["positive/alice/r44k.wav"]
    x, sr = sf.read(str(run["raw"] / "positive/alice/r44k.wav"), dtype="float64")
    ref = np.clip(np.round(resample_poly(x, 160, 441) * 32768), -32768, 32767)
    got, _ = sf.read(str(run["out"] / it.path), dtype="int16")
    assert sr == 44100 and got.size == ref.size == 19200
    assert np.array_equal(got, ref)


def test_groups_roles_and_ids(run: dict[str, Any]) -> None:
    src = _by_source(run["items"])
    assert src["positive/alice/take1.wav"][0].group == "own:alice"
    assert src["positive/direct.wav"][0].group == "own:positive/direct"
    assert src["negative/n1.wav"][0].group == "own:negative/n1"
    (stream,) = src["stream/test/rec.flac"]
    assert (stream.kind, stream.role, stream.group) == ("stream", "test", "own:stream/test/rec")
    assert stream.path.startswith("streams/")
    assert all(it.role == "" for it in run["items"] if it.kind != "stream")
    rel = "positive/alice/take1.wav"
    assert src[rel][0].id == "own-positive-" + hashlib.sha1(rel.encode()).hexdigest()[:12]
    assert I.group_of("stream/x.wav") == ("own:stream/x", "")
    assert I.group_of("stream/val/spk/x.wav") == ("own:spk", "val")
    # role by hash for streams outside val/ and test/
    report = run["report"]
    assert report["groups"]["positive"] == len({it.group for it in run["items"] if it.kind == "positive"})
    assert 0.0 <= group_unit(SEED, "own:stream/x") < 1.0


def test_vad_cuts_around_speech(run: dict[str, Any]) -> None:
    src = _by_source(run["items"])
    (one,) = src["positive/erin/one_burst.wav"]
    start, end = one.extra["start_s"], one.extra["start_s"] + one.duration_s
    assert 1.6 <= start <= 2.0 and 2.8 <= end <= 3.3, (start, end)
    assert one.extra["segment"] == 0 and one.id.endswith("-0")
    two = src["positive/erin/two_bursts.wav"]
    assert len(two) == 2
    assert 0.6 <= two[0].extra["start_s"] <= 1.0 and 4.6 <= two[1].extra["start_s"] <= 5.0
    assert two[0].group == two[1].group == "own:erin"
    (long_,) = src["positive/erin/long_speech.wav"]
    assert long_.duration_s == 2.0
    assert 2.3 <= long_.extra["start_s"] <= 2.7  # 2 s of a 3 s burst, centred on its energy


def test_windows_flags_and_rir(run: dict[str, Any]) -> None:
    src = _by_source(run["items"])
    neg = src["negative/gina/long22k.wav"]  # 8.1 s -> 4 x 2 s, the 0.1 s rest dropped
    assert [it.duration_s for it in neg] == [2.0] * 4
    assert [it.extra["start_s"] for it in neg] == [0.0, 2.0, 4.0, 6.0]
    assert [it.duration_s for it in src["background/bg48k.wav"]] == [2.0, 1.0]
    assert src["positive/frank/clipped.wav"][0].extra["flags"] == ["clipped"]
    assert src["positive/frank/quiet.wav"][0].extra["flags"] == ["near_silent"]
    assert src["positive/alice/take1.wav"][0].extra["flags"] == []
    report = run["report"]
    assert report["flagged"] == {"clipped": 1, "near_silent": 1}
    assert report["flagged_files"] == [{"path": "positive/frank/clipped.wav", "flags": ["clipped"]},
                                       {"path": "positive/frank/quiet.wav", "flags": ["near_silent"]}]
    q, _ = sf.read(str(run["out"] / src["rir/room1.wav"][0].path), dtype="int16")
    assert int(np.max(np.abs(q.astype(np.int32)))) == 32767
    assert report["counts"]["negative"] == 5 and report["counts"]["background"] == 2
    assert report["counts"]["stream"] == 1 and math.isclose(report["hours"]["stream"], 61 / 3600, abs_tol=1e-6)


def test_drop_flagged(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    _write(raw / "positive/a.wav", np.clip(3.0 * _speechlike(16000, 16000), -1, 1))
    _write(raw / "positive/b.wav", 1e-4 * _speechlike(16000, 16000))
    _write(raw / "positive/c.wav", _speechlike(16000, 16000, 200.0))
    data = DataParams(drop_flagged=True)
    report = I.ingest_raw(raw, tmp_path / "out", data, AUDIO, SEED)
    reasons = {r["path"]: r["reason"] for r in report["rejected_files"]}
    assert reasons["positive/a.wav"].startswith("clipped: ")
    assert reasons["positive/b.wav"].startswith("near_silent: loudest 100 ms at -9")
    assert reasons["positive/b.wav"].endswith("dBFS < data.silence_dbfs -60 (data.drop_flagged is true)")
    assert report["accepted"] == 1 and report["rejected_by_reason"] == {"flagged": 2}
    assert sorted(p.name for p in (tmp_path / "out/clips/positive").iterdir()) == [
        I.item_id("positive/c.wav", "positive") + ".wav"]


# ----------------------------------------------------------------------------------------------------------
# Stability, determinism, atomicity
# ----------------------------------------------------------------------------------------------------------


def test_ids_and_outputs_stable_when_files_are_added(run: dict[str, Any]) -> None:
    raw, base = run["raw"], run["base"]
    added = _write(raw / "positive/zed/new.wav", _speechlike(16000, 16000, 222.0))
    try:
        out_b = base / "out_b"
        report_b = I.ingest_raw(raw, out_b, DATA, AUDIO, SEED)
    finally:
        added.unlink()
        added.parent.rmdir()
    a, b = _hashes(run["out"]), _hashes(out_b)
    a_wavs = {k: v for k, v in a.items() if k.endswith(".wav")}
    assert all(b.get(k) == v for k, v in a_wavs.items())
    assert len(b) == len(a) + 1
    rows_a = (run["out"] / "manifest.jsonl").read_text().splitlines()
    rows_b = (out_b / "manifest.jsonl").read_text().splitlines()
    assert set(rows_a) < set(rows_b) and len(rows_b) == len(rows_a) + 1
    assert report_b["accepted"] == run["report"]["accepted"] + 1
    # same inputs again: byte-identical outputs and report, replacing the old out_dir in place
    report_c = I.ingest_raw(raw, out_b, DATA, AUDIO, SEED)
    assert _hashes(out_b) == a and report_c == run["report"]
    assert sorted(p.name for p in base.iterdir() if p.name.startswith(".")) == []


def test_forced_failure_leaves_no_partial_outputs(run: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    for k in range(4):
        _write(raw / f"positive/p{k}.wav", _speechlike(16000, 16000, 120.0 + 10 * k))
    out = tmp_path / "data" / "own"
    I.ingest_raw(raw, out, DATA, AUDIO, SEED)
    before = _hashes(out)
    _write(raw / "positive/p9.wav", _speechlike(16000, 16000, 300.0))
    calls = {"n": 0}
    real = I._write_clip

    def failing(path: Path, q: np.ndarray, sr: int) -> None:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        real(path, q, sr)

    monkeypatch.setattr(I, "_write_clip", failing)
    with pytest.raises(OSError, match="No space left"):
        I.ingest_raw(raw, out, DATA, AUDIO, SEED)
    assert _hashes(out) == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["own"]
    # a fresh target: nothing at all is left
    with pytest.raises(OSError):
        calls["n"] = 0
        I.ingest_raw(raw, tmp_path / "fresh" / "own", DATA, AUDIO, SEED)
    assert list((tmp_path / "fresh").iterdir()) == []


def test_per_file_failure_midway_removes_that_files_outputs(monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    _write(raw / "negative/a_long.wav", _noise(7 * 16000, -30, 1))
    _write(raw / "negative/b_long.wav", _noise(7 * 16000, -30, 2))
    real = I._PieceWriter._emit

    def emit(self: Any, a: int, b: int) -> None:
        if self.base_id == I.item_id("negative/a_long.wav", "negative") and self._next == 2:
            raise MemoryError("simulated")
        real(self, a, b)

    monkeypatch.setattr(I._PieceWriter, "_emit", emit)
    report = I.ingest_raw(raw, tmp_path / "out", DATA, AUDIO, SEED)
    assert report["rejected_files"] == [{"path": "negative/a_long.wav",
                                         "reason": "could not be processed: MemoryError: simulated"}]
    names = sorted(p.name for p in (tmp_path / "out/clips/negative").iterdir())
    base_b = I.item_id("negative/b_long.wav", "negative")
    assert names == [f"{base_b}-{k}.wav" for k in range(4)]  # 7 s -> 2+2+2+1


def test_empty_and_missing_raw_dir(tmp_path: Path) -> None:
    for raw in (tmp_path / "missing", tmp_path / "empty"):
        if raw.name == "empty":
            raw.mkdir()
        report = I.ingest_raw(raw, tmp_path / f"out_{raw.name}", DATA, AUDIO, SEED)
        assert (report["files_seen"], report["accepted"], report["rejected"], report["ignored"]) == (0, 0, 0, 0)
        assert report["counts"] == {k: 0 for k in sorted(I.KIND_ORDER)}
        assert (tmp_path / f"out_{raw.name}/manifest.jsonl").read_text() == ""
        assert (tmp_path / f"out_{raw.name}/clips/positive").is_dir()


def test_bad_directories_raise(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    with pytest.raises(I.IngestError, match="inside raw_dir"):
        I.ingest_raw(raw, raw / "out", DATA, AUDIO, SEED)
    with pytest.raises(I.IngestError, match="inside out_dir"):
        I.ingest_raw(raw, tmp_path, DATA, AUDIO, SEED)
    assert isinstance(I.IngestError("x"), ValueError)


# ----------------------------------------------------------------------------------------------------------
# Chunked conversion
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sr", [8000, 11025, 22050, 44100, 48000, 96000])
def test_chunked_resampling_equals_one_shot(sr: int) -> None:
    rng = np.random.default_rng(sr)
    x = rng.standard_normal(sr * 2 + 37) * 0.3
    g = math.gcd(sr, 16000)
    ref = resample_poly(x, 16000 // g, sr // g)
    rs = I.ChunkedResampler(sr, 16000)
    parts, i = [], 0
    while i < x.size:
        k = int(rng.integers(1, sr // 2))
        parts.append(rs.push(x[i:i + k]))
        i += k
    parts.append(rs.flush())
    y = np.concatenate(parts)
    assert y.size == ref.size == math.ceil(x.size * 16000 / sr)
    assert np.max(np.abs(y - ref)) < 1e-9


def test_long_stream_is_converted_chunk_by_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    raw = tmp_path / "raw"
    sr, minutes = 8000, 10
    rng = np.random.default_rng(3)
    x = (rng.standard_normal(sr * 60 * minutes) * 0.05).astype(np.float32)
    _write(raw / "stream/val/long8k.wav", x, sr)
    requested: list[int] = []
    real_read = sf.SoundFile.read

    def read(self: sf.SoundFile, frames: int = -1, *args: Any, **kwargs: Any) -> Any:
        requested.append(frames)
        return real_read(self, frames, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", read)
    tracemalloc.start()
    try:
        report = I.ingest_raw(raw, tmp_path / "out", DATA, AUDIO, SEED)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    block = round(I.BLOCK_S * sr)
    assert requested and max(requested) == block and min(requested) > 0  # never "read everything" (-1)
    assert len(requested) == math.ceil(x.size / block) + 1
    whole_out = sr * 60 * minutes * 2 * 8  # the converted stream as float64 (77 MB; loading it whole needs more)
    assert peak < whole_out / 2, f"peak {peak / 1e6:.1f} MB"  # measured: ~23 MB, a few 30 s blocks
    (item,) = read_manifest(tmp_path / "out/manifest.jsonl")
    assert (item.kind, item.role, item.duration_s) == ("stream", "val", 600.0)
    assert report["hours"]["stream"] == round(600 / 3600, 6)
    y, out_sr = sf.read(str(tmp_path / "out" / item.path), dtype="int16", frames=16000 * 60)
    src, _ = sf.read(str(raw / "stream/val/long8k.wav"), dtype="float64", frames=sr * 70)
    ref = np.clip(np.round(resample_poly(src, 2, 1) * 32768), -32768, 32767)[:16000 * 60]
    assert out_sr == 16000 and np.array_equal(y, ref)  # chunk boundaries at 30 s and 60 s included


def test_stream_role_by_hash(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    for name in ("a", "b", "c", "d"):
        _write(raw / f"stream/{name}.wav", _noise(60 * 8000, -30, ord(name)), 8000)
    I.ingest_raw(raw, tmp_path / "out", DATA, AUDIO, SEED)
    items = read_manifest(tmp_path / "out/manifest.jsonl")
    assert len(items) == 4
    for it in items:
        expected = "val" if group_unit(SEED, it.group) < 0.5 else "test"
        assert it.role == expected


def test_speech_segments_unit() -> None:
    x = _with_bursts(6.0, [(1.0, 1.5), (1.7, 2.1), (4.0, 4.4)], seed=9)
    e10 = I._frame_energy(x)
    segs = I.speech_segments(e10, x.size, max_len=32000, min_len=3200, silence_dbfs=-60.0)
    # the 0.2 s pause is bridged (< VAD_MIN_GAP_S), the 1.9 s gap is not
    assert len(segs) == 2
    assert 0.7 * 16000 <= segs[0][0] <= 1.0 * 16000 and 2.1 * 16000 <= segs[0][1] <= 2.5 * 16000
    assert 3.7 * 16000 <= segs[1][0] <= 4.0 * 16000
    assert I.speech_segments(I._frame_energy(_noise(48000, -40, 1)), 48000, max_len=32000, min_len=3200,
                             silence_dbfs=-60.0) == []


def test_stage_exits_zero_and_accounts_for_every_file(tmp_path: Path) -> None:
    """The ingest stage itself (as dvc runs it) on the broken directory: exit code 0, every entry in the
    report or the manifest, the report written as metrics JSON."""
    import subprocess
    import sys

    import yaml

    raw, out, report = tmp_path / "raw", tmp_path / "own", tmp_path / "metrics" / "data_report.json"
    _build_raw(raw, tmp_path / "elsewhere")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"seed": SEED, "data": DATA.model_dump()}))
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, "-m", "stages.ingest", str(raw), str(out), str(report), "--params",
                           str(tmp_path / "params.yaml")], cwd=root, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(report.read_text())
    assert data["files_seen"] == data["accepted"] + data["rejected"] + data["ignored"] == len(EXPECTED)
    listed = {r["path"] for r in data["rejected_files"] + data["ignored_files"]}
    sources = {i.extra["source"] for i in read_manifest(out / "manifest.jsonl")}
    assert listed | sources == set(EXPECTED) and not listed & sources
    assert data["accepted"] == sum(1 for status, _ in EXPECTED.values() if status == "accepted")
