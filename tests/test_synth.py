"""Data set builder: determinism across worker counts, manifest schema, voice reservation, streams, levels."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from wakeword import noise as N
from wakeword import synth as S
from wakeword import text as T
from wakeword.params import SynthParams

TINY = SynthParams(n_positive=40, n_negative=40, n_confusable=20, n_background=10, espeak_variants_per_accent=3,
                   stream_val_h=0.01, stream_test_h=0.01, stream_train_h=0.01, n_heldout_positive=12, n_heldout_negative=6,
                   n_heldout_confusable=6, stream_heldout_h=0.005)
MANIFEST_KEYS = {"id", "path", "kind", "text", "engine", "voice", "group", "duration_s", "sample_rate_hz"}


def _hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _manifest(root: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (root / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("synth")
    report_a = S.synthesize_dataset(TINY, 1234, base / "a", workers=2)
    report_b = S.synthesize_dataset(TINY, 1234, base / "b", workers=1)
    return {"a": base / "a", "b": base / "b", "report": report_a, "report_b": report_b, "base": base}


def test_deterministic_across_runs_and_worker_counts(runs: dict[str, Any]) -> None:
    a, b = runs["a"], runs["b"]
    assert (a / "manifest.jsonl").read_bytes() == (b / "manifest.jsonl").read_bytes()
    ha, hb = _hashes(a), _hashes(b)
    assert ha == hb
    # clips, held-out clips of both held-out engines, 4 streams (+json), manifest
    assert len(ha) == 40 + 40 + 20 + 10 + 2 * (12 + 6 + 6) + 8 + 1
    assert not any(p.name.startswith(".") for p in runs["base"].iterdir())  # no temp dirs left behind


def test_manifest_schema(runs: dict[str, Any]) -> None:
    root = runs["a"]
    entries = _manifest(root)
    assert [e["path"] for e in entries] == sorted(e["path"] for e in entries)
    assert len({e["id"] for e in entries}) == len(entries)
    kinds = {k: 0 for k in ("positive", "negative", "hard_negative", "background", "stream")}
    held = {k: 0 for k in ("positive", "negative", "hard_negative", "stream")}
    for e in entries:
        assert MANIFEST_KEYS <= set(e), e
        if e.get("role") == "heldout":
            held[e["kind"]] += 1
        else:
            kinds[e["kind"]] += 1
        path = root / e["path"]
        assert path.is_file() and not Path(e["path"]).is_absolute() and "\\" not in e["path"]
        assert path.resolve().is_relative_to(root.resolve())
        info = sf.info(str(path))
        assert info.samplerate == e["sample_rate_hz"] == 16000 and info.channels == 1 and info.subtype == "PCM_16"
        assert abs(info.frames / 16000 - e["duration_s"]) < 1e-3
        if e["kind"] == "stream":
            assert e["role"] in ("val", "test", "heldout", "train") and e["group"] == f"stream-{e['role']}"
            assert e["engine"] == ("pico+dectalk" if e["role"] == "heldout" else "espeak")
        elif e.get("role") == "heldout":
            assert e["engine"] in ("pico", "dectalk") and e["group"] == f"{e['engine']}:{e['voice']}"
        elif e["engine"] == "espeak":
            assert e["group"] == f"espeak:{e['voice']}"
        elif e["engine"] == "piper":
            assert e["group"] == "piper:en_US-joe-medium"
        else:
            assert e["engine"] == "noise" and e["kind"] == "background"
    assert kinds == {"positive": 40, "negative": 40, "hard_negative": 20, "background": 10, "stream": 3}
    assert held == {"positive": 2 * 12, "negative": 2 * 6, "hard_negative": 2 * 6, "stream": 1}  # per engine


def test_clip_content(runs: dict[str, Any]) -> None:
    entries = [e for e in _manifest(runs["a"]) if e.get("role") != "heldout"]
    engines = {k: {e["engine"] for e in entries if e["kind"] == k} for k in ("positive", "negative", "hard_negative")}
    assert all(v == {"espeak", "piper"} for v in engines.values())
    assert sum(e["engine"] == "piper" for e in entries if e["kind"] == "positive") == round(40 * TINY.piper_fraction)
    for e in entries:
        if e["kind"] == "positive":
            assert T.contains_phrase(e["text"], "hey jarvis")
            assert 0.3 <= e["duration_s"] <= 3.0
        elif e["kind"] in ("negative", "hard_negative"):
            assert not T.contains_phrase(e["text"], "hey jarvis")
            assert T.normalize_text(e["text"]) != "hey jarvis"
        elif e["kind"] == "background":
            assert e["duration_s"] == pytest.approx(TINY.background_s)
    x, _ = sf.read(str(runs["a"] / entries[0]["path"]), dtype="float32")
    assert 0.005 < float(np.sqrt(np.mean(x**2))) and float(np.max(np.abs(x))) < 1.0


def test_stream_voices_never_render_clips(runs: dict[str, Any]) -> None:
    root = runs["a"]
    clip_groups = {e["group"] for e in _manifest(root) if e["kind"] != "stream" and e.get("role") != "heldout"}
    val = json.loads((root / "streams" / "val.json").read_text())["voices"]
    test = json.loads((root / "streams" / "test.json").read_text())["voices"]
    train = json.loads((root / "streams" / "train.json").read_text())["voices"]
    assert val and test and train and not set(val) & set(test) and not set(train) & (set(val) | set(test))
    assert not (set(val) | set(test) | set(train)) & clip_groups
    report = runs["report"]
    assert report["voice_pool"]["val"] == len(val) and report["voice_pool"]["test"] == len(test)


@pytest.mark.parametrize("role", ["val", "test", "heldout", "train"])
def test_streams_negative_only_and_continuous(runs: dict[str, Any], role: str) -> None:
    root = runs["a"]
    info = json.loads((root / "streams" / f"{role}.json").read_text())
    x, sr = sf.read(str(root / "streams" / f"{role}.wav"), dtype="int16")
    hours = {"val": TINY.stream_val_h, "test": TINY.stream_test_h, "heldout": TINY.stream_heldout_h,
             "train": TINY.stream_train_h}[role]
    assert sr == 16000 and x.size == round(hours * 3600 * 16000) == info["n_samples"]
    # no digital silence anywhere: the longest run of exact zeros is a handful of samples
    zero = np.concatenate([[0], (x == 0).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(zero))
    longest = int(np.max(edges[1::2] - edges[::2])) if edges.size else 0
    assert longest < 16
    speech = [s for s in info["segments"] if s["type"] in ("speech", "confusable")]
    assert speech, "stream has no speech"
    for s in info["segments"]:
        assert 0 <= s["start_s"] < s["end_s"] <= x.size / sr + 1e-6
        assert not T.contains_phrase(s["text"], "hey jarvis")
        assert s["type"] in {"speech", "confusable", "music", "noise", "household", "hum", "babble"}
    for prev, cur in itertools.pairwise(speech):
        assert not T.contains_phrase(f"{prev['text']} {cur['text']}", "hey jarvis")
    starts = [s["start_s"] for s in info["segments"]]
    assert starts == sorted(starts)
    # speech is louder than the bed: level of a speech segment between -40 and -10 dBFS
    s0 = speech[0]
    seg = x[int(s0["start_s"] * sr): int(s0["end_s"] * sr)].astype(np.float64) / 32768
    assert -40.0 < N.rms_dbfs(seg) < -10.0
    quiet = [s for s in info["segments"]]
    gap_start = int(quiet[0]["start_s"] * sr)
    if gap_start > 1600:
        bed = x[:gap_start].astype(np.float64) / 32768
        assert -75.0 < N.rms_dbfs(bed) < -55.0


def test_report_is_numeric(runs: dict[str, Any]) -> None:
    report = runs["report"]

    def leaves(d: Any) -> list[Any]:
        return [v for x in d.values() for v in leaves(x)] if isinstance(d, dict) else [d]

    assert all(isinstance(v, (int, float)) for v in leaves(report))
    json.dumps(report)
    assert report["counts"] == {"positive": 40, "negative": 40, "hard_negative": 20, "background": 10}
    assert report["clips_per_engine"]["piper"] == sum(round(n * TINY.piper_fraction) for n in (40, 40, 20))
    assert report["stream_hours"] == {"val": 0.01, "test": 0.01, "heldout": 0.005, "train": 0.01}
    assert report["heldout"]["counts"] == {"positive": 24, "negative": 12, "hard_negative": 12}  # per engine
    assert report["heldout"]["clips_per_engine"] == {"dectalk": 24, "pico": 24}
    assert report["heldout"]["voices"] == 2 + 9
    warped = [e for e in _manifest(runs["a"]) if "vtlp" in e]
    revoiced = [e for e in _manifest(runs["a"]) if "revoice" in e]
    n_piper = report["clips_per_engine"]["piper"]
    # vtlp_prob 0.5 of the 100 speech clips, except the revoiced Piper ones (revoicing replaces the warp)
    expect_warped = 0.5 * (100 - TINY.piper_revoice_prob * n_piper)
    assert report["formant_warped_clips"] == len(warped) and 0.5 * expect_warped < len(warped) < 1.5 * expect_warped
    assert report["revoiced_clips"] == len(revoiced) and all(e["engine"] == "piper" for e in revoiced)
    assert 0.5 * TINY.piper_revoice_prob * n_piper < len(revoiced) <= n_piper
    # the default accent list is the voice's own accent: no clip carries one
    assert TINY.piper_accents == ["en-us"] and report["piper_clips_per_accent"] == {}
    assert not any("accent" in e for e in _manifest(runs["a"]))
    assert not any("vtlp" in e for e in revoiced)
    assert all(0.88 <= e["vtlp"] <= 1.14 and e.get("role") != "heldout" for e in warped)
    assert any(T.normalize_text(e["text"]) != "hey jarvis" for e in _manifest(runs["a"]) if e["kind"] == "positive")
    assert report["voices_per_kind"]["positive"] >= 10
    assert report["wall_time_s"] > 0  # a figure, not a speed target: timed asserts flake on a busy machine


def test_failure_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(task: dict[str, Any], root: str) -> dict[str, Any]:
        raise S.SynthError("injected failure")

    monkeypatch.setattr(S, "render_background", boom)
    out = tmp_path / "data"
    with pytest.raises(S.SynthError, match="injected"):
        S.synthesize_dataset(TINY.model_copy(update={"stream_val_h": 0.001, "stream_test_h": 0.001}), 1, out,
                             workers=1)
    assert list(tmp_path.iterdir()) == []


def test_bad_configuration_is_reported(tmp_path: Path) -> None:
    with pytest.raises(S.SynthError, match="espeak_accents"):
        S.synthesize_dataset(TINY.model_copy(update={"espeak_accents": ["xx-none"]}), 1, tmp_path / "d", workers=1)
    with pytest.raises(S.SynthError, match=r"piper_accents: 'en-zz'"):
        S.synthesize_dataset(TINY.model_copy(update={"piper_accents": ["en-us", "en-zz"]}), 1, tmp_path / "d",
                             workers=1)
    with pytest.raises(S.SynthError, match="stream_voice_fraction"):
        S.synthesize_dataset(TINY.model_copy(update={"espeak_accents": ["en-us"], "espeak_variants_per_accent": 2}),
                             1, tmp_path / "d", workers=1)
    with pytest.raises(S.SynthError, match="sample_rate_hz"):
        S.synthesize_dataset(TINY, 1, tmp_path / "d", sample_rate_hz=8000)
    assert list(tmp_path.iterdir()) == []


def test_voice_pool_respects_limits() -> None:
    pool = S.build_voice_pool(TINY, 1234)
    assert len(pool) == 8 * 3 and len(set(pool)) == len(pool)
    assert all(v.variant in ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "f5", "klatt",
                             "klatt2", "klatt3", "klatt4", "klatt5", "klatt6") for v in pool)
    assert S.build_voice_pool(TINY, 1234) == pool and S.build_voice_pool(TINY, 99) != pool
    parts = S.split_voice_pool(pool, 0.2)
    assert len(parts["val"]) + len(parts["test"]) == 5 and len(parts["clips"]) == 19


# ---------------------------------------------------------------------------------------------------------
# noise.py
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("snr_db", [-5.0, 0.0, 7.3, 20.0])
def test_mix_at_snr_hits_target(snr_db: float) -> None:
    rng = np.random.default_rng(0)
    speech = np.sin(np.linspace(0, 900, 16000)) * np.hanning(16000)
    noise = N.pink_noise(5000, rng)  # shorter than the speech: gets tiled
    mix = N.mix_at_snr(speech, noise, snr_db)
    residual = mix.astype(np.float64) - speech
    measured = 10 * np.log10(np.sum(speech**2) / np.sum(residual**2))
    assert abs(measured - snr_db) < 0.1


def test_levels() -> None:
    rng = np.random.default_rng(1)
    x = N.set_level_dbfs(rng.standard_normal(16000), -30.0)
    assert abs(10 * np.log10(np.mean(x.astype(np.float64) ** 2)) + 30.0) < 0.01
    assert N.rms_dbfs(np.zeros(10)) == float("-inf")
    with pytest.raises(ValueError, match="silent"):
        N.set_level_dbfs(np.zeros(10), -20)


@pytest.mark.parametrize("kind", N.BACKGROUND_KINDS)
def test_background_generators(kind: str) -> None:
    utts = [np.sin(np.linspace(0, 500, 8000)), np.random.default_rng(2).standard_normal(4000)]
    a = N.background(kind, 32000, np.random.default_rng(5), utterances=utts)
    b = N.background(kind, 32000, np.random.default_rng(5), utterances=utts)
    assert a.dtype == np.float32 and a.shape == (32000,)
    assert np.array_equal(a, b)
    assert abs(N.rms_dbfs(a) - N.DEFAULT_DBFS) < 0.01
    assert np.all(np.isfinite(a))


def test_coloured_noise_slopes() -> None:
    rng = np.random.default_rng(3)

    def band_power(x: np.ndarray, lo: float, hi: float) -> float:
        spec = np.abs(np.fft.rfft(x)) ** 2
        f = np.fft.rfftfreq(x.size, 1 / 16000)
        return float(spec[(f >= lo) & (f < hi)].sum())

    n = 16000 * 4
    white, pink, brown = N.white_noise(n, rng), N.pink_noise(n, rng), N.brown_noise(n, rng)
    ratio = {k: band_power(x, 200, 400) / band_power(x, 3200, 6400) for k, x in
             {"white": white, "pink": pink, "brown": brown}.items()}
    assert ratio["white"] < 0.2 < ratio["pink"] < 3 < ratio["brown"]  # octave bands: 1/16, 1, 16 ideally


def test_stream_join_guard() -> None:
    assert S._joins_into_phrase("well hey", "jarvis is here", "hey jarvis")
    assert S._joins_into_phrase(None, "jarvis is here", "hey jarvis")  # unknown previous block end
    assert S._joins_into_phrase(None, "vis is here", "hey jarvis")
    assert not S._joins_into_phrase(None, "hello there", "hey jarvis")
    assert not S._joins_into_phrase("hey", "there jarvis", "hey jarvis")


def test_piper_revoice_plan_changes_only_piper_clips() -> None:
    pool = S.build_voice_pool(TINY, 1234)
    clip_voices = S.split_voice_pool(pool, TINY.stream_voice_fraction)["clips"]
    conf = S.confusables_for(TINY.phrase, 1234)
    off = S.plan_clips(TINY.model_copy(update={"piper_fraction": 0.5, "piper_revoice_prob": 0.0}), 1234, clip_voices,
                       conf)
    on = S.plan_clips(TINY.model_copy(update={"piper_fraction": 0.5, "piper_revoice_prob": 1.0}), 1234, clip_voices,
                      conf)
    piper = [i for i, t in enumerate(on) if t["engine"] == "piper"]
    assert piper and all("revoice" in on[i]["settings"] and "vtlp" not in on[i]["settings"] for i in piper)
    assert not any("revoice" in t["settings"] for t in off)
    for a, b in zip(off, on):  # every other choice is the same: texts, voices, engine settings
        assert (a["id"], a["text"], a["engine"], a["voice"]) == (b["id"], b["text"], b["engine"], b["voice"])
        if a["engine"] != "piper":
            assert a["settings"] == b["settings"]
    for i in piper:
        st, f = on[i]["settings"]["revoice"]["semitones"], on[i]["settings"]["revoice"]["formant"]
        lo, hi = TINY.piper_revoice_semitones
        assert lo <= st <= hi and f == pytest.approx(2 ** (0.25 * st / 12), rel=0.041)


def test_piper_accent_plan_is_the_last_draw() -> None:
    """Each Piper clip draws one of ``piper_accents``; the accent list changes nothing else in the plan."""
    pool = S.build_voice_pool(TINY, 1234)
    clip_voices = S.split_voice_pool(pool, TINY.stream_voice_fraction)["clips"]
    conf = S.confusables_for(TINY.phrase, 1234)
    accents = ["en-us", "en-gb-x-rp", "en-gb-scotland"]
    one = S.plan_clips(TINY.model_copy(update={"piper_fraction": 0.5, "piper_accents": ["en-us"]}), 1234,
                       clip_voices, conf)
    many = S.plan_clips(TINY.model_copy(update={"piper_fraction": 0.5, "piper_accents": accents}), 1234,
                        clip_voices, conf)
    drawn = [t["settings"]["accent"] for t in many if t["engine"] == "piper"]
    assert len(drawn) == 50 and set(drawn) == set(accents)  # 50 Piper clips: every accent is drawn
    assert not any("accent" in t["settings"] for t in one)  # the voice's own accent is not recorded
    assert not any("accent" in t["settings"] for t in many if t["engine"] != "piper")
    for a, b in zip(one, many):
        rest_a = {k: v for k, v in a["settings"].items() if k != "accent"}
        rest_b = {k: v for k, v in b["settings"].items() if k != "accent"}
        assert (a["id"], a["text"], a["engine"], a["voice"], rest_a) == (b["id"], b["text"], b["engine"], b["voice"],
                                                                         rest_b)


def test_piper_accents_reach_manifest_and_report(tmp_path: Path) -> None:
    params = TINY.model_copy(update={"n_positive": 20, "n_negative": 20, "n_confusable": 10, "n_heldout_positive": 10,
                                     "n_heldout_negative": 0, "n_heldout_confusable": 0,
                                     "piper_accents": ["en-us", "en-gb-x-rp"]})
    report = S.synthesize_dataset(params, 7, tmp_path / "d", workers=1)
    piper = [e for e in _manifest(tmp_path / "d") if e["engine"] == "piper"]
    accents = [e["accent"] for e in piper]
    assert len(piper) == 25 and set(accents) == {"en-us", "en-gb-x-rp"}
    assert report["piper_clips_per_accent"] == {a: accents.count(a) for a in ("en-gb-x-rp", "en-us")}


def _plan(params: SynthParams, seed: int = 1234) -> list[dict[str, Any]]:
    pool = S.build_voice_pool(params, seed)
    clip_voices = S.split_voice_pool(pool, params.stream_voice_fraction)["clips"]
    return S.plan_clips(params, seed, clip_voices, S.confusables_for(params.phrase, seed))


@pytest.mark.parametrize("share", [0.5, 1.0])
def test_minimal_pairs_copy_a_positives_voice_and_settings(share: float) -> None:
    """A paired confusable is voiced exactly like one positive: engine, voice, group and every setting; only the
    text differs. The share is exact, partners are distinct, and nothing else in the plan moves."""
    plain = _plan(TINY.model_copy(update={"piper_fraction": 0.5}))
    paired = _plan(TINY.model_copy(update={"piper_fraction": 0.5, "confusable_pairs": share}))
    assert not any("pair_of" in t for t in plain)
    assert [(t["id"], t["kind"], t["text"], t["path"]) for t in plain] == [
        (t["id"], t["kind"], t["text"], t["path"]) for t in paired]
    by_id = {t["id"]: t for t in paired}
    pairs = [t for t in paired if "pair_of" in t]
    assert len(pairs) == round(share * TINY.n_confusable)  # 10 or 20 of the 20 confusables
    assert len({t["pair_of"] for t in pairs}) == len(pairs)  # 40 positives: no positive is used twice
    for t in pairs:
        pos = by_id[t["pair_of"]]
        assert t["kind"] == "hard_negative" and pos["kind"] == "positive" and t["text"] != pos["text"]
        assert (t["engine"], t["voice"], t["group"]) == (pos["engine"], pos["voice"], pos["group"])
        assert t["settings"] == pos["settings"] and t["settings"] is not pos["settings"]
    engines = {t["engine"] for t in pairs}
    assert share < 1 or engines == {"espeak", "piper"}  # the positives' mix of engines carries over
    for a, b in zip(plain, paired):
        if "pair_of" not in b:  # every other clip, confusables included, is planned as without pairs
            assert a == b


def test_minimal_pairs_reuse_positives_when_confusables_outnumber_them() -> None:
    params = TINY.model_copy(update={"n_positive": 20, "n_confusable": 50, "confusable_pairs": 1.0})
    plan = _plan(params)
    partners = [t["pair_of"] for t in plan if t["kind"] == "hard_negative"]
    assert len(partners) == 50 and len(set(partners)) == 20  # every positive gets 2-3 confusable twins
    assert max(partners.count(p) for p in set(partners)) == 3


def test_minimal_pairs_reach_manifest_report_and_audio(tmp_path: Path, runs: dict[str, Any]) -> None:
    """Rendered: the pair's audio is the positive's voice saying other words (espeak is deterministic, so the
    confusable is not a copy and differs from its positive), and the manifest and report say which clips pair."""
    params = TINY.model_copy(update={"n_positive": 20, "n_negative": 20, "n_confusable": 10, "n_heldout_positive": 10,
                                     "n_heldout_negative": 0, "n_heldout_confusable": 0, "piper_fraction": 0.0,
                                     "confusable_pairs": 1.0})
    report = S.synthesize_dataset(params, 7, tmp_path / "d", workers=1)
    rows = {e["id"]: e for e in _manifest(tmp_path / "d")}
    pairs = [e for e in rows.values() if "pair_of" in e]
    assert report["minimal_pair_clips"] == len(pairs) == 10
    for e in pairs:
        pos = rows[e["pair_of"]]
        assert e["kind"] == "hard_negative" and pos["kind"] == "positive"
        assert (e["voice"], e["group"], e.get("vtlp")) == (pos["voice"], pos["group"], pos.get("vtlp"))
        a = sf.read(str(tmp_path / "d" / e["path"]))[0]
        b = sf.read(str(tmp_path / "d" / pos["path"]))[0]
        assert a.shape != b.shape or not np.allclose(a, b)
    # without pairs (the module's data set, confusable_pairs 0): no clip names a partner
    assert TINY.confusable_pairs == 0.0
    assert runs["report"]["minimal_pair_clips"] == 0 and not any("pair_of" in e for e in _manifest(runs["a"]))


def _espeak_gaps(tasks: list[dict[str, Any]]) -> dict[str, list[int]]:
    gaps: dict[str, list[int]] = {}
    for t in tasks:
        if t["engine"] == "espeak":
            gaps.setdefault(t["kind"], []).append(t["settings"]["word_gap"])
    return gaps


def test_espeak_word_gaps_do_not_depend_on_the_kind() -> None:
    """With ``uniform_kinds`` every espeak clip and stream utterance draws its pause between words from
    ``espeak_word_gap``, whatever its kind; switched off (the default until session 22) positives alone have one."""
    legacy = TINY.model_copy(update={"n_positive": 200, "n_negative": 200, "n_confusable": 200, "piper_fraction": 0.0,
                                     "uniform_kinds": False})
    clip_voices = S.split_voice_pool(S.build_voice_pool(legacy, 1234), legacy.stream_voice_fraction)["clips"]
    conf = S.confusables_for(legacy.phrase, 1234)
    old = _espeak_gaps(S.plan_clips(legacy, 1234, clip_voices, conf))
    assert set(old["positive"]) == {0, 1, 2, 3} and set(old["negative"]) == set(old["hard_negative"]) == {0}
    params = legacy.model_copy(update={"uniform_kinds": True})
    gaps = _espeak_gaps(S.plan_clips(params, 1234, clip_voices, conf))
    assert set(gaps) == {"positive", "negative", "hard_negative"}
    for kind, g in gaps.items():
        assert len(g) == 200 and set(g) == {0, 1, 2, 3}, kind  # each value of the default [0, 3] in every kind
    fixed = _espeak_gaps(S.plan_clips(params.model_copy(update={"espeak_word_gap": (2, 2)}), 1234, clip_voices, conf))
    assert all(set(g) == {2} for g in fixed.values())
    none = _espeak_gaps(S.plan_clips(params.model_copy(update={"espeak_word_gap": (0, 0)}), 1234, clip_voices, conf))
    assert all(set(g) == {0} for g in none.values())
    # streams: every espeak utterance draws from the same range; the held-out engine has no such setting
    block = S.plan_stream_blocks(params.model_copy(update={"espeak_word_gap": (1, 2)}), 1234, "val",
                                 clip_voices[:2], conf, "/unused")[0]
    rng = np.random.default_rng(0)
    assert {S._stream_speech_settings(block, rng)["word_gap"] for _ in range(100)} == {1, 2}
    block_legacy = S.plan_stream_blocks(legacy, 1234, "val", clip_voices[:2], conf, "/unused")[0]
    assert {S._stream_speech_settings(block_legacy, rng)["word_gap"] for _ in range(100)} == {0}
    pico_block = {**block, "role": "heldout"}
    assert "word_gap" not in S._stream_speech_settings(pico_block, rng)


def test_espeak_word_gap_is_a_silent_hole_in_any_clip() -> None:
    """The setting reaches the audio: with a gap, a negative's words are parted by digital silence (what the
    positives alone had before); without one they are not."""
    voice = S.split_voice_pool(S.build_voice_pool(TINY, 1234), TINY.stream_voice_fraction)["clips"][0].name
    settings = {"rate_wpm": 160, "pitch": 50, "pitch_range": 50, "seed": 7}

    def longest_silence_ms(x: np.ndarray) -> float:
        quiet = np.abs(x) < 1e-4
        run = best = 0
        for q in quiet[int(0.1 * len(x)):int(0.9 * len(x))]:  # inside the utterance, not its ends
            run = run + 1 if q else 0
            best = max(best, run)
        return 1000.0 * best / 16000

    gap = longest_silence_ms(S._render_speech("espeak", voice, "good morning", {**settings, "word_gap": 3}))
    no_gap = longest_silence_ms(S._render_speech("espeak", voice, "good morning", {**settings, "word_gap": 0}))
    assert gap >= 20.0 and no_gap < 5.0, (gap, no_gap)


def _flat(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in settings.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def test_no_synthesis_setting_depends_on_the_kind() -> None:
    """With ``uniform_kinds`` only the text tells a positive clip from a negative or confusable one: every engine
    setting (rate, pitch, pause between words, formant warp, revoicing, ...) is drawn from one distribution for
    all kinds. A setting that differs by kind is a label cue the model learns instead of the words. With the
    switch off the espeak pause is the one setting that differs (the default until session 22)."""
    from scipy.stats import ks_2samp

    params = TINY.model_copy(update={"n_positive": 400, "n_negative": 400, "n_confusable": 400, "piper_fraction": 0.5,
                                     "uniform_kinds": True})
    clip_voices = S.split_voice_pool(S.build_voice_pool(params, 1234), params.stream_voice_fraction)["clips"]
    conf = S.confusables_for(params.phrase, 1234)
    legacy = S.plan_clips(params.model_copy(update={"uniform_kinds": False}), 1234, clip_voices, conf)
    gaps = _espeak_gaps(legacy)
    assert ks_2samp(gaps["positive"], gaps["negative"]).pvalue < 1e-6  # the test sees the default's cue
    tasks = S.plan_clips(params, 1234, clip_voices, conf)
    kinds = ("positive", "negative", "hard_negative")
    for engine in ("espeak", "piper"):
        by_kind = {k: [_flat(t["settings"]) for t in tasks if t["engine"] == engine and t["kind"] == k] for k in kinds}
        assert all(len(v) >= 150 for v in by_kind.values()), engine
        keys = set().union(*(s.keys() for v in by_kind.values() for s in v)) - {"seed"}
        for key in sorted(keys):
            share = {k: np.mean([key in s for s in v]) for k, v in by_kind.items()}
            assert max(share.values()) - min(share.values()) < 0.12, (engine, key, share)
            values = {k: np.array([float(s[key]) for s in v if key in s]) for k, v in by_kind.items()}
            for k in kinds[1:]:
                if values[k].size >= 20 and values["positive"].size >= 20:
                    p = ks_2samp(values["positive"], values[k]).pvalue
                    assert p > 1e-3, (engine, key, k, p)


def _text_form(text: str, core: str) -> dict[str, bool]:
    words = T.tokens(text)
    return {"comma": "," in text, "question": text.endswith("?"), "exclaim": text.endswith("!"),
            "stop": text.endswith("."), "capital": text[:1].isupper(), "context": len(words) > len(T.tokens(core))}


def test_confusable_clips_are_spelled_and_framed_like_positives() -> None:
    """With ``uniform_kinds`` confusable clips take the positives' spellings and context words at the same rates;
    only the words differ (plain confusables beside re-spelled positives make a pause after "hey" or a question's
    intonation a label cue). No confusable text contains the phrase. Switched off they are the plain phrases."""
    params = TINY.model_copy(update={"n_positive": 600, "n_negative": 20, "n_confusable": 600, "uniform_kinds": True})
    clip_voices = S.split_voice_pool(S.build_voice_pool(params, 1234), params.stream_voice_fraction)["clips"]
    confusables = S.confusables_for(params.phrase, 1234)
    legacy = S.plan_clips(params.model_copy(update={"uniform_kinds": False}), 1234, clip_voices, confusables)
    assert [t["text"] for t in legacy if t["kind"] == "hard_negative"] == [confusables[i % len(confusables)]
                                                                             for i in range(600)]
    tasks = S.plan_clips(params, 1234, clip_voices, confusables)
    pos = [_text_form(t["text"], params.phrase) for t in tasks if t["kind"] == "positive"]
    conf_tasks = [t for t in tasks if t["kind"] == "hard_negative"]
    conf = [_text_form(t["text"], confusables[i % len(confusables)]) for i, t in enumerate(conf_tasks)]
    for key in pos[0]:
        a, b = np.mean([f[key] for f in pos]), np.mean([f[key] for f in conf])
        assert abs(a - b) < 0.07, (key, a, b)
        if key in ("comma", "question", "context"):
            assert b > 0.1, (key, b)  # each form is really there, not equal at zero
    for i, t in enumerate(conf_tasks):
        core = T.tokens(confusables[i % len(confusables)])
        words = T.tokens(t["text"])
        assert any(words[k:k + len(core)] == core for k in range(len(words))), (t["text"], core)
        assert not T.contains_phrase(t["text"], params.phrase), t["text"]


def test_spoken_text_keeps_what_the_words_are() -> None:
    """One draw for the phrase and its confusables: the phrase stays the phrase inside any frame, a confusable never
    becomes it (for "okay nova", a confusable "nova" keeps its spelling rather than take an "okay" before it)."""
    framed_phrase = framed_conf = 0
    for seed in range(300):
        a = S.spoken_text("okay nova", "okay nova", 1.0, np.random.default_rng(seed))
        b = S.spoken_text("nova", "okay nova", 1.0, np.random.default_rng(seed))
        assert T.contains_phrase(a, "okay nova"), a
        assert not T.contains_phrase(b, "okay nova") and "nova" in T.tokens(b), b
        framed_phrase += len(T.tokens(a)) > 2
        framed_conf += len(T.tokens(b)) > 1
    assert framed_phrase == 300  # context_word_prob 1: always framed
    assert 200 < framed_conf < 290  # framed, except where the frame would say "okay nova" (1 in 8 of the frames)
    plain = {S.spoken_text("hey jarvis", "hey jarvis", 0.0, np.random.default_rng(s)) for s in range(300)}
    assert plain == set(T.spelling_variants("hey jarvis"))  # no frames at 0, every spelling drawn


def test_heldout_confusables_are_spelled_like_its_positives() -> None:
    """The held-out yardstick holds no pause cue: its confusable clips take its positives' spellings and context
    words at the same rates (``heldout_uniform_kinds``, the default). Off, they are the plain phrases, as before
    session 22. The spelling has its own rng stream: every other draw of the plan is the same either way."""
    params = TINY.model_copy(update={"n_heldout_positive": 600, "n_heldout_confusable": 600})
    confusables = S.confusables_for(params.phrase, 1234)
    tasks = S.plan_heldout(params, 1234, confusables)
    plain = S.plan_heldout(params.model_copy(update={"heldout_uniform_kinds": False}), 1234, confusables)
    assert all(t["text"] in confusables for t in plain if t["kind"] == "hard_negative")
    assert [{**t, "text": ""} for t in tasks] == [{**t, "text": ""} for t in plain]  # only texts differ
    assert [t["text"] for t in tasks if t["kind"] != "hard_negative"] == [
        t["text"] for t in plain if t["kind"] != "hard_negative"]
    pos = [_text_form(t["text"], params.phrase) for t in tasks if t["kind"] == "positive"]
    pairs = [(t, p) for t, p in zip(tasks, plain, strict=True) if t["kind"] == "hard_negative"]
    conf = [_text_form(t["text"], p["text"]) for t, p in pairs]
    for key in pos[0]:
        a, b = np.mean([f[key] for f in pos]), np.mean([f[key] for f in conf])
        assert abs(a - b) < 0.07, (key, a, b)
        if key in ("comma", "question", "context"):
            assert b > 0.1, (key, b)
    for t, p in pairs:
        core, words = T.tokens(p["text"]), T.tokens(t["text"])
        assert any(words[k:k + len(core)] == core for k in range(len(words))), (t["text"], core)
        assert not T.contains_phrase(t["text"], params.phrase), t["text"]


@pytest.mark.parametrize("role", ["heldout", "val"])
def test_stream_confusables_are_spelled_like_positives(role: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Confusables spoken inside the held-out stream are spelled like its positives (``heldout_uniform_kinds``);
    inside the other streams with ``uniform_kinds``. Off, they are the plain phrases."""
    monkeypatch.setattr(S, "STREAM_P_CONFUSABLE", 0.8)  # enough confusables in 90 s of audio
    key = "heldout_uniform_kinds" if role == "heldout" else "uniform_kinds"
    params = TINY.model_copy(update={"stream_heldout_h": 90 / 3600, "stream_val_h": 90 / 3600, key: True})
    confusables = S.confusables_for(params.phrase, 1234)
    if role == "heldout":
        voices: list[Any] = [f"pico:{v}" for v in S.tts.PICO_VOICES]
        engine = "pico"
    else:
        voices = S.split_voice_pool(S.build_voice_pool(params, 1234), params.stream_voice_fraction)["val"][:3]
        engine = "espeak"

    def confusable_texts(p: SynthParams, sub: str) -> list[str]:
        (tmp_path / sub).mkdir()
        [block] = S.plan_stream_blocks(p, 1234, role, voices, confusables, str(tmp_path / sub), engine)
        segments = S.render_stream_block(block)["segments"]
        return [s["text"] for s in segments if s["type"] == "confusable"]

    spelled = confusable_texts(params, "on")
    plain = confusable_texts(params.model_copy(update={key: False}), "off")
    assert len(spelled) >= 5 and len(plain) >= 5
    assert all(t in confusables for t in plain)
    assert sum(t not in confusables for t in spelled) >= 2, spelled  # commas, '?', context words
    for t in spelled:
        assert not T.contains_phrase(t, params.phrase), t
        assert any(" ".join(T.tokens(t)).find(c) >= 0 for c in confusables), t


def test_a_second_held_out_engine_adds_clips_and_leaves_picos_unchanged() -> None:
    """Each held-out engine gets the n_heldout_* counts with its voices in turn; Pico's clips (ids, texts,
    settings) are the same with or without DECtalk beside it, so the Pico yardstick stays comparable."""
    params = TINY.model_copy(update={"n_heldout_positive": 30, "n_heldout_negative": 9, "n_heldout_confusable": 18})
    confusables = S.confusables_for(params.phrase, 1234)
    both = S.plan_heldout(params, 1234, confusables)
    pico = S.plan_heldout(params.model_copy(update={"heldout_engines": ["pico"]}), 1234, confusables)
    assert [t for t in both if t["engine"] == "pico"] == pico
    dec = [t for t in both if t["engine"] == "dectalk"]
    assert Counter(t["kind"] for t in dec) == {"positive": 30, "negative": 9, "hard_negative": 18}
    assert len({t["id"] for t in both}) == len(both) and all(t["id"].startswith("heldout-dectalk-") for t in dec)
    # 30 positives over 9 voices in turn: the first three voices speak 4, the other six 3
    assert Counter(t["voice"] for t in dec if t["kind"] == "positive") == (
        dict.fromkeys(S.tts.DECTALK_VOICES, 3) | dict.fromkeys(S.tts.DECTALK_VOICES[:3], 4))
    assert all(t["group"] == f"dectalk:{t['voice']}" and t["role"] == "heldout" for t in dec)
    for t in dec:
        assert 80 <= t["settings"]["rate"] <= 130 and 75 <= t["settings"]["pitch"] <= 135  # heldout_rate/_pitch
        assert T.contains_phrase(t["text"], params.phrase) == (t["kind"] == "positive")
    # its own texts, not Pico's again
    assert [t["text"] for t in dec if t["kind"] == "negative"] != [t["text"] for t in pico if t["kind"] == "negative"]
    dec_only = S.plan_heldout(params.model_copy(update={"heldout_engines": ["dectalk"]}), 1234, confusables)
    assert dec_only == dec


def test_held_out_stream_speaks_with_every_held_out_engine(tmp_path: Path) -> None:
    params = TINY.model_copy(update={"stream_heldout_h": 120 / 3600})
    confusables = S.confusables_for(params.phrase, 1234)
    voices = {}
    for engines in (["pico"], ["pico", "dectalk"]):
        qualified = [f"{e}:{v}" for e in engines for v in S.heldout_voices(e)]
        work = tmp_path / "+".join(engines)
        work.mkdir()
        [block] = S.plan_stream_blocks(params, 1234, "heldout", qualified, confusables, str(work), "+".join(engines))
        segs = S.render_stream_block(block)["segments"]
        voices["+".join(engines)] = {s["voice"] for s in segs if s["type"] in ("speech", "confusable")}
    assert voices["pico"] and all(v in ("pico:en-US", "pico:en-GB") for v in voices["pico"])
    engines_heard = {v.partition(":")[0] for v in voices["pico+dectalk"]}
    assert engines_heard == {"pico", "dectalk"}, voices
    assert all(v.partition(":")[2] in S.heldout_voices(v.partition(":")[0]) for v in voices["pico+dectalk"])
