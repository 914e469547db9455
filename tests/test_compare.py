"""wakeword.compare and `wakeword compare`: checkpoints (and their ensemble) scored on one split of a feature
store, against figures worked out by hand on a hand-made store."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from wakeword.checkpoint import save_checkpoint
from wakeword.cli import main
from wakeword.cmvn import CMVN, save_cmvn
from wakeword.compare import (
    CompareError,
    Comparison,
    checkpoint_logit_fn,
    compare_models,
    markdown_table,
    mean_probability_logits,
)
from wakeword.featureset import KIND_CODES
from wakeword.models import build_model
from wakeword.params import DetectorParams, ModelParams

WINDOW, STEP, N_FEATURES, CLIP_FRAMES, STREAM_FRAMES = 10, 5, 2, 30, 400
BASE = math.log(0.0025 / 0.9975)  # logit of the background everywhere else
POSITIVES = (0.985, 0.905, 0.805, 0.605)
SPIKES = {50: 0.955, 150: 0.855, 250: 0.755}  # stream frame -> probability; the first one is a confusable phrase
DET = DetectorParams(hysteresis=0.0, vote_window=1, vote_threshold=1, lockout_ms=0)
GRID = np.round(np.arange(1, 100) * 0.01, 10)


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _store(root: Path, confusables: tuple[float, ...] = ()) -> Path:
    """Clips of 30 frames (4 positives whose strongest frame has the probabilities above, 2 negatives, and a
    confusable clip peaking at each of ``confusables``) and a 400-frame stream with three spikes, booked as
    2 h + 1 s: one false alarm is just under 0.5 FA/h, also without the 0.5 s confusable segment (whose time
    comes off the hours)."""
    x = np.full((6 + len(confusables), CLIP_FRAMES, N_FEATURES), BASE, np.float32)
    for i, p in enumerate(POSITIVES + confusables):
        x[i if i < 4 else i + 2, 15, 0] = _logit(p)
    kind = np.array([KIND_CODES["positive"]] * 4 + [KIND_CODES["negative"]] * 2
                    + [KIND_CODES["hard_negative"]] * len(confusables), np.int8)
    (root / "heldout").mkdir(parents=True)
    np.savez(root / "heldout" / "0.npz", x=x, y=(kind == KIND_CODES["positive"]).astype(np.int8), kind=kind,
             phrase_start_frame=np.where(kind == KIND_CODES["positive"], 10, -1).astype(np.int32),
             phrase_end_frame=np.where(kind == KIND_CODES["positive"], 20, -1).astype(np.int32))
    stream = np.full((STREAM_FRAMES, N_FEATURES), BASE, np.float32)
    for f, p in SPIKES.items():
        stream[f, 0] = _logit(p)
    (root / "streams").mkdir()
    np.save(root / "streams" / "heldout.npy", stream)
    table = {"frames": STREAM_FRAMES, "hop_s": 0.01, "recordings": [
        {"path": "streams/heldout.wav", "root": "synth", "frame_offset": 0, "frames": STREAM_FRAMES,
         "duration_s": STREAM_FRAMES * 0.01, "segments_from": "heldout.json",
         "segments": [{"start_s": 0.3, "end_s": 0.8, "type": "confusable", "text": "hey jorvis"},
                      {"start_s": 1.3, "end_s": 1.8, "type": "speech"}]}]}
    (root / "streams" / "heldout.segments.json").write_text(json.dumps(table))
    index = {"window_frames": WINDOW, "step_frames": STEP, "n_features": N_FEATURES,
             "splits": {"heldout": {"shards": ["heldout/0.npz"]}},
             "streams": {"heldout": {"path": "streams/heldout.npy", "hours": 2.0 + 1.0 / 3600, "frames": STREAM_FRAMES,
                                     "segments": "streams/heldout.segments.json", "hop_s": 0.01}}}
    (root / "index.json").write_text(json.dumps(index))
    return root


def _max_logit(w: np.ndarray) -> np.ndarray:
    """A stand-in model: the window's largest feature-0 value is the wake logit."""
    z = w[:, :, 0].max(axis=1)
    return np.stack([np.zeros_like(z), z], axis=1).astype(np.float32)


def test_recall_at_fah_with_and_without_confusables_by_hand(tmp_path: Path) -> None:
    store = _store(tmp_path / "features")
    (row,) = compare_models([("max", _max_logit)], store, "heldout", DET, 50, GRID, 1.0)
    # <= 1 event in ~2 h: only the 0.955 spike may fire -> threshold in (0.855, 0.955]: positives 0.985, 0.905
    # <= 2 events: threshold in (0.755, ...]: three positives; <= 4 events: every spike may fire, all four
    assert row.recall == {0.5: 0.5, 1.0: 0.75, 2.0: 1.0}
    # without the confusable spike the strongest false alarm is 0.855: three positives at <= 1 event
    assert row.recall_without_confusables == {0.5: 0.75, 1.0: 1.0, 2.0: 1.0}
    assert row.eer == 0.0  # every positive clip outscores both negatives
    assert row.confusable_false_accepts is None  # the store has no confusable clips


def test_confusable_clips_accepted_at_the_without_confusables_points_by_hand(tmp_path: Path) -> None:
    store = _store(tmp_path / "features", confusables=(0.875, 0.705))
    (row,) = compare_models([("max", _max_logit)], store, "heldout", DET, 50, GRID, 1.0)
    assert row.recall_without_confusables == {0.5: 0.75, 1.0: 1.0, 2.0: 1.0}
    # 0.5 FA/h: threshold in (0.755, 0.805], over 0.705 -> only the 0.875 clip is accepted; 1 and 2 FA/h need
    # every positive, threshold <= 0.605 -> both confusable clips
    assert row.confusable_false_accepts == {0.5: 0.5, 1.0: 1.0, 2.0: 1.0}
    (row,) = compare_models([("max", _max_logit)], store, "heldout", DET, 50, np.array([0.5]), 1.0)
    assert row.recall_without_confusables == {0.5: None, 1.0: 1.0, 2.0: 1.0}  # 0.5 fires both spikes left
    assert row.confusable_false_accepts == {0.5: None, 1.0: 1.0, 2.0: 1.0}  # none where recall is none


def test_per_engine_rows_split_the_clips_at_the_whole_streams_thresholds(tmp_path: Path) -> None:
    store = _store(tmp_path / "features", confusables=(0.875, 0.705))
    shard = store / "heldout" / "0.npz"
    with np.load(shard) as z:
        arrays = dict(z)
    np.savez(shard, **arrays, clip=np.arange(8, dtype=np.int32))  # clip i is manifest row i
    # engine a: positives 0.985 and 0.805, confusable 0.875; engine b: positives 0.905 and 0.605, confusable 0.705
    groups = ["a:x", "b:y", "a:z", "b:y", "a:x", "b:y", "a:x", "b:y"]
    (row,) = compare_models([("max", _max_logit)], store, "heldout", DET, 50, GRID, 1.0, manifest_groups=groups)
    # 0.5 FA/h with the confusable spike: threshold in (0.855, 0.955] -> a finds 0.985, b 0.905: half each.
    # Without it: threshold in (0.755, 0.805] -> a both, b one; a's 0.875 confusable accepted, b's 0.705 not
    assert row.by_engine == {
        "a": {"positive_clips": 2.0, "recall_at_0p5_fah": 0.5, "recall_at_0p5_fah_without_confusables": 1.0,
              "confusable_false_accepts_without_confusables": 1.0},
        "b": {"positive_clips": 2.0, "recall_at_0p5_fah": 0.5, "recall_at_0p5_fah_without_confusables": 0.5,
              "confusable_false_accepts_without_confusables": 0.0}}
    assert row.recall_without_confusables[0.5] == 0.75 and row.confusable_false_accepts[0.5] == 0.5  # pooled
    table = markdown_table([row], "heldout")
    assert "| max | a | 2 | 0.50 | 1.00 | 100.0% |" in table and "| max | b | 2 | 0.50 | 0.50 | 0.0% |" in table
    assert compare_models([("max", _max_logit)], store, "heldout", DET, 50, GRID, 1.0)[0].by_engine is None


def test_ensemble_row_reuses_the_members_scores(tmp_path: Path) -> None:
    store = _store(tmp_path / "features")
    calls = []

    def counted(w: np.ndarray) -> np.ndarray:
        calls.append(w.shape[0])
        return _max_logit(w)

    rows = compare_models([("a", counted), ("b", _max_logit)], store, "heldout", DET, 50, GRID, 1.0,
                          ensemble="both")
    assert [r.name for r in rows] == ["a", "b", "both"]
    assert rows[2] == Comparison("both", rows[0].recall, rows[0].recall_without_confusables, rows[0].eer)
    n_calls = len(calls)
    compare_models([("a", counted)], store, "heldout", DET, 50, GRID, 1.0)
    assert len(calls) == 2 * n_calls  # the ensemble row did not run member "a" a second time


def test_a_target_no_threshold_meets_is_none(tmp_path: Path) -> None:
    store = _store(tmp_path / "features")
    (row,) = compare_models([("max", _max_logit)], store, "heldout", DET, 50, np.array([0.5]), 1.0)
    # at 0.5 all three spikes fire (1.5 FA/h) and all four positives are found
    assert row.recall == {0.5: None, 1.0: None, 2.0: 1.0}


def test_ensemble_is_the_log_of_mean_probabilities() -> None:
    a = lambda w: np.array([[0.0, 2.0], [1.0, -1.0]], np.float32)
    b = lambda w: np.array([[0.0, -1.0], [3.0, 0.0]], np.float32)
    got = np.exp(mean_probability_logits([a(None), b(None)]))
    sig = lambda z: 1.0 / (1.0 + math.exp(-z))
    want_wake = [(sig(2.0) + sig(-1.0)) / 2, (sig(-2.0) + sig(-3.0)) / 2]
    np.testing.assert_allclose(got[:, 1], want_wake, rtol=1e-6)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-6)
    with pytest.raises(CompareError, match="at least one"):
        mean_probability_logits([])


def _checkpoint(path: Path, cmvn: CMVN | None, window: int = WINDOW, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    p = ModelParams(arch="tcn", tcn={"channels": 4, "levels": 1})
    model = build_model(p, N_FEATURES, window)
    model.train()(torch.randn(8, window, N_FEATURES))  # non-trivial batch-norm statistics
    meta = {"model": p.model_dump(), "n_features": N_FEATURES, "window_frames": window, "step_frames": STEP}
    if cmvn is not None:
        meta["cmvn"] = cmvn.to_dict()
    save_checkpoint(path, model, meta)
    return model.eval()


OWN = CMVN(np.array([-3.0, 1.0], np.float32), np.array([2.0, 0.5], np.float32), "log_mel", 100)


def test_checkpoint_is_scored_through_its_own_cmvn(tmp_path: Path) -> None:
    model = _checkpoint(tmp_path / "a.pt", OWN)
    raw = np.random.default_rng(0).normal(-4, 2, (3, WINDOW, N_FEATURES)).astype(np.float32)
    got = checkpoint_logit_fn(tmp_path / "a.pt", N_FEATURES, WINDOW)(raw)
    with torch.no_grad():
        want = model(torch.from_numpy((raw - OWN.mean) / (OWN.std + 1e-5))).numpy()
        plain = model(torch.from_numpy(raw)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)
    assert not np.allclose(got, plain, atol=1e-3)  # the normalisation matters here


def test_unusable_checkpoints_are_named(tmp_path: Path) -> None:
    _checkpoint(tmp_path / "nocmvn.pt", None)
    _checkpoint(tmp_path / "long.pt", OWN, window=20)
    (tmp_path / "junk.pt").write_bytes(b"not torch")
    _checkpoint(tmp_path / "micro.pt", CMVN(OWN.mean, OWN.std, "micro", 100))
    for name, match in (("nocmvn.pt", "stores no CMVN"), ("long.pt", r"\(20, 2\)"), ("junk.pt", "not a usable"),
                        ("micro.pt", "trained on micro features, the feature store holds log_mel")):
        with pytest.raises(CompareError, match=match) as err:
            checkpoint_logit_fn(tmp_path / name, N_FEATURES, WINDOW, "log_mel")
        assert name in str(err.value)
    checkpoint_logit_fn(tmp_path / "micro.pt", N_FEATURES, WINDOW)  # no store type given: not checked


def test_cli_table_json_and_errors(tmp_path: Path) -> None:
    store = _store(tmp_path / "features")
    _checkpoint(tmp_path / "a.pt", OWN, seed=1)
    _checkpoint(tmp_path / "b.pt", OWN, seed=2)
    params = Path(__file__).resolve().parents[1] / "params.yaml"
    save_cmvn(tmp_path / "cmvn.json", OWN)
    args = ["compare", str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), "--features-dir", str(store),
            "--params", str(params), "--cmvn", str(tmp_path / "cmvn.json")]
    res = CliRunner().invoke(main, [*args, "--ensemble"])
    assert res.exit_code == 0, res.output
    lines = res.output.strip().splitlines()
    assert lines[0].startswith("| model | heldout: recall at 0.5 / 1 / 2 FA/h |") and len(lines) == 5
    assert "| confusable clips accepted there |" in lines[0] and lines[2].count("|") == lines[0].count("|")
    assert "a.pt" in lines[2] and "b.pt" in lines[3] and "ensemble of 2" in lines[4]
    res = CliRunner().invoke(main, [*args, "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert [r["model"] for r in rows] == [str(tmp_path / "a.pt"), str(tmp_path / "b.pt")]
    assert set(rows[0]["recall_at_fah"]) == {"0.5", "1", "2"} and rows[0]["recall_at_fah_without_confusables"]
    assert rows[0]["confusable_false_accepts_without_confusables"] is None  # the store has no confusable clips
    res = CliRunner().invoke(main, ["compare", str(tmp_path / "missing.pt"), *args[3:]])
    assert res.exit_code == 1 and "missing.pt" in res.output
    res = CliRunner().invoke(main, [*args, "--split", "val"])
    assert res.exit_code == 1 and "no split 'val'" in res.output
    res = CliRunner().invoke(main, [*args[:-1], str(tmp_path / "nothere.json")])
    assert res.exit_code == 1 and "nothere.json" in res.output


def test_python_dash_m_knows_every_command() -> None:
    """`python -m wakeword.cli` registers the commands defined after the tune command too (the
    ``__main__`` guard once sat between them, so `compare` and `lr-find` were missing there)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "wakeword.cli", "--help"], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parents[1]).stdout
    assert "compare" in out and "lr-find" in out and "tune" in out
