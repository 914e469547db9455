"""CLI refusals that need no trained model (the integration test runs the CLI on a real model dir)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from wakeword.cli import main


def test_model_dir_without_manifest_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.wav").write_bytes(b"")
    result = CliRunner().invoke(main, ["score", str(tmp_path), str(tmp_path / "a.wav")])
    assert result.exit_code == 1
    assert "wakeword.json" in result.output and "not a usable model manifest" in result.output


def test_manifest_pointing_at_a_missing_model_is_refused(tmp_path: Path) -> None:
    manifest = {"features": {}, "window_frames": 148, "step_frames": 10, "temperature": 1.0,
                "detector": {"threshold_on": 0.5, "threshold_off": 0.4, "vote_window": 5, "vote_threshold": 3,
                             "lockout_ms": 1500, "step_ms": 100}, "model": "model.tflite"}
    (tmp_path / "wakeword.json").write_text(json.dumps(manifest))
    result = CliRunner().invoke(main, ["detect", str(tmp_path), "x.wav"])
    assert result.exit_code == 1 and "model.tflite" in result.output


def test_bad_detector_settings_in_manifest_are_refused(tmp_path: Path) -> None:
    manifest = {"features": {}, "window_frames": 148, "step_frames": 10, "temperature": 1.0,
                "detector": {"threshold_on": 0.5}, "model": "model.tflite"}
    (tmp_path / "wakeword.json").write_text(json.dumps(manifest))
    result = CliRunner().invoke(main, ["detect", str(tmp_path), "x.wav"])
    assert result.exit_code == 1 and "missing keys" in result.output


def test_help_lists_commands() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0 and "score" in result.output and "detect" in result.output
