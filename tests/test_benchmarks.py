"""The benchmark's pure helpers (benchmarks/suite.py): stage order, target checks, table, featurized hours.
No timing is asserted."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from benchmarks.suite import Measure, featurized_hours, format_table, format_value, stage_order, target_met

ROOT = Path(__file__).resolve().parents[1]


def test_stage_order_of_the_pipeline_respects_every_dependency() -> None:
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    order = stage_order(spec)
    assert sorted(order) == sorted(spec["stages"])
    assert order[0] == "synth"
    pos = {s: i for i, s in enumerate(order)}
    for a, b in (("synth", "split"), ("ingest", "split"), ("split", "featurize"), ("featurize", "cmvn"),
                 ("cmvn", "train"), ("train", "mine"), ("mine", "finetune"), ("finetune", "calibrate"),
                 ("calibrate", "evaluate"), ("evaluate", "tflite"), ("tflite", "report"), ("tflite", "card")):
        assert pos[a] < pos[b], (a, b, order)


def test_stage_order_follows_outputs_inside_directories_and_keeps_file_order() -> None:
    spec = {"stages": {
        "late": {"deps": ["out/a/file.txt"], "outs": ["z"]},
        "free": {"deps": ["src"], "outs": ["y"]},
        "make": {"deps": ["src"], "outs": ["out/a"], "metrics": [{"m.json": {"cache": False}}]},
        "uses_metric": {"deps": ["m.json"]},
    }}
    assert stage_order(spec) == ["free", "make", "late", "uses_metric"]


def test_stage_order_rejects_a_cycle() -> None:
    spec = {"stages": {"a": {"deps": ["y"], "outs": ["x"]}, "b": {"deps": ["x"], "outs": ["y"]}}}
    with pytest.raises(ValueError, match="cycle"):
        stage_order(spec)


def test_target_met() -> None:
    assert target_met(2.0, ("<", 3.0)) is True
    assert target_met(3.0, ("<", 3.0)) is False
    assert target_met(61.0, (">", 60.0)) is True
    assert target_met(None, ("<", 3.0)) is None
    assert target_met(math.nan, ("<", 3.0)) is None
    assert target_met(1.0, None) is None
    with pytest.raises(ValueError):
        target_met(1.0, ("<=", 1.0))


def test_table_lists_value_target_and_met() -> None:
    rows = [Measure("no-op dvc repro", 1.234, "s", ("<", 3.0)),
            Measure("int8 RTF", 0.0031, "", ("<", 0.002), "one core"),
            Measure("MACs per second", 8428800.0, "MAC/s"),
            Measure("not run", None, "s", ("<", 900.0))]
    text = format_table(rows)
    lines = text.splitlines()
    assert lines[0].split()[:5] == ["measure", "value", "unit", "target", "met"]
    assert "1.234" in lines[2] and "< 3" in lines[2] and "yes" in lines[2]
    assert "NO" in lines[3] and "one core" in lines[3]
    assert "8,428,800" in lines[4] and lines[4].split()[-1] == "-"
    assert rows[3].to_dict()["met"] is None and rows[0].to_dict()["target"] == ["<", 3.0]
    assert format_value(0.00042) == "4.200e-04"


def test_featurized_hours_counts_windows_clips_and_streams() -> None:
    index = {"splits": {"train": {"examples": 2400}, "val": {"examples": 600}, "test": {"examples": 600}},
             "streams": {"val": {"hours": 1.0}, "test": {"hours": 0.5}}}
    h = featurized_hours(index, 1.5, 3.0)
    assert h["train_windows_h"] == pytest.approx(1.0)
    assert h["eval_clips_h"] == pytest.approx(1.0)
    assert h["streams_h"] == pytest.approx(1.5)
    assert h["total_h"] == pytest.approx(3.5)


def test_run_measured_reports_exit_code_and_the_peak_memory_of_the_child(tmp_path: Path) -> None:
    import sys

    from benchmarks.suite import run_measured

    code = "import numpy as np; a = np.ones(200 * 2**20 // 8); raise SystemExit(3)"
    r = run_measured([sys.executable, "-c", code], tmp_path, tmp_path / "log.txt")
    assert r.rc == 3
    assert r.peak_rss_mb > 150  # the child's 200 MB array, not this process
    assert r.wall_s > 0 and r.cpu_s >= 0


def test_run_measured_does_not_charge_the_child_with_this_process_memory(tmp_path: Path) -> None:
    import sys

    import numpy as np

    from benchmarks.suite import run_measured

    big = np.ones(300 * 2**20 // 8)  # this process: > 300 MB resident while the child runs
    r = run_measured([sys.executable, "-c", "pass"], tmp_path)
    assert r.rc == 0
    assert r.peak_rss_mb < 100, r
    assert big[-1] == 1.0


def test_heldout_spelling_forms_and_groups() -> None:
    from benchmarks.heldout_spelling import clip_groups, spelling_form

    assert [spelling_form(t) for t in ("hey jarvis", "Hey Jarvis!", "Hey jarvis?")] == ["plain"] * 3
    assert [spelling_form(t) for t in ("hey, jarvis", "Hey, Jarvis.")] == ["comma", "comma"]
    assert [spelling_form(t) for t in ("Ok hey jarvis please", "hey jarvis now?", "Well, hey jarvis")] == ["context"] * 3
    assert spelling_form("computer", "computer") == "plain" and spelling_form("ok computer", "computer") == "context"
    rows = [{"kind": "positive", "voice": "en-US", "text": "Hey, Jarvis!"},
            {"kind": "hard_negative", "voice": "en-GB", "text": "hey, starvis"},
            {"kind": "positive", "voice": "en-GB", "text": "so hey jarvis"},
            {"kind": "stream", "voice": "mixed", "text": ""}]
    assert clip_groups(rows, "hey jarvis") == ["en-US:comma", "en-GB:other", "en-GB:context", "mixed:other"]


def test_spectral_probe_helpers() -> None:
    import numpy as np

    from benchmarks.spectral_probe import best_score, parse_groups, place_in_floor, select_positives

    assert parse_groups("heldout:en-US, train:piper") == [("heldout", "en-US"), ("train", "piper")]
    for bad in ("heldout", ":x", "train:", " , "):
        with pytest.raises(ValueError, match="--groups"):
            parse_groups(bad)
    rows = [{"kind": "positive", "voice": "en-US", "engine": "pico"}, {"kind": "hard_negative", "voice": "en-US"},
            {"kind": "positive", "voice": "x", "engine": "piper"}, {"kind": "positive", "voice": "en-US"}]
    assert select_positives(rows, "en-US", 5) == [rows[0], rows[3]]
    assert select_positives(rows, "piper", 5) == [rows[2]] and select_positives(rows, "en-US", 1) == [rows[0]]

    x = np.sin(np.linspace(0, 200, 8000))
    out = place_in_floor(x, np.random.default_rng(0), pad_s=1.0)
    assert out.shape == (16000,) and out.dtype == np.float32
    mid = out[4000:12000]
    assert abs(20 * np.log10(np.sqrt(np.mean(mid ** 2))) + 20.0) < 0.01  # -20 dBFS, the floor 45 dB under it
    assert abs(20 * np.log10(np.sqrt(np.mean(out[:4000] ** 2))) + 65.0) < 0.5

    # two logits per window; class 1 wins by (window index) in the third frame's first value
    feats = np.zeros((12, 3), dtype=np.float32)
    feats[:, 0] = np.arange(12)

    def fn(w: np.ndarray) -> np.ndarray:
        return np.stack([np.zeros(len(w)), w[:, 2, 0]], axis=1)

    # windows of 4 frames every 2: starts 0, 2, 4, 6, 8 -> third frames 2, 4, 6, 8, 10; best logit gap 10
    assert best_score(feats, fn, 4, 2, 1.0) == pytest.approx(1 / (1 + np.exp(-10.0)))
    assert best_score(feats, fn, 4, 2, 5.0) == pytest.approx(1 / (1 + np.exp(-2.0)))
    with pytest.raises(ValueError, match="fewer than the model's window"):
        best_score(feats, fn, 13, 1, 1.0)
