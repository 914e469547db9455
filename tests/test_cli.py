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


def _tiny_train_split(root: Path) -> Path:
    """A train split of tone 'utterances', noise backgrounds and one own room impulse response."""
    import numpy as np
    import soundfile as sf

    from wakeword.manifest import Item, write_manifest

    rng = np.random.default_rng(0)
    items = []
    for k in range(3):
        t = np.arange(int(0.6 * 16000)) / 16000
        for kind, hz in (("positive", 440 + 50 * k), ("negative", 300 + 40 * k)):
            path = f"clips/{kind}/{k}.wav"
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            sf.write(root / path, (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32), 16000)
            items.append(Item(f"{kind}{k}", path, kind, f"v{k}", 0.6))
    (root / "clips/background").mkdir(parents=True)
    sf.write(root / "clips/background/0.wav", (0.1 * rng.standard_normal(32000)).astype(np.float32), 16000)
    items.append(Item("bg0", "clips/background/0.wav", "background", "noise:0", 2.0))
    write_manifest(root / "split" / "train.jsonl", items)
    return root / "split"


def test_augment_preview_writes_windows_and_what_was_applied(tmp_path: Path) -> None:
    import numpy as np
    import soundfile as sf
    import yaml

    split = _tiny_train_split(tmp_path)
    params = {"augment": {"stretch_prob": 1.0, "pitch_prob": 1.0, "rir_prob": 1.0, "n_rirs": 3}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    out = tmp_path / "preview"
    args = ["augment-preview", str(out), "--params", str(tmp_path / "params.yaml"), "--split-dir", str(split),
            "--synth-dir", str(tmp_path), "-n", "4"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    rows = json.loads((out / "preview.json").read_text())
    assert len(rows) == 4
    for row in rows:
        x, sr = sf.read(out / row["file"], dtype="float32")
        assert sr == 16000 and x.shape == (24000,) and np.abs(x).max() > 0.01
        assert row["stretch_rate"] is not None and row["pitch_semitones"] is not None and row["rir_index"] is not None
        assert (out / row["dry"]).exists()
    again = tmp_path / "again"
    assert CliRunner().invoke(main, [*args[:1], str(again), *args[2:]]).exit_code == 0
    assert (again / "positive-00.wav").read_bytes() == (out / "positive-00.wav").read_bytes()  # deterministic
    bad = CliRunner().invoke(main, ["augment-preview", str(out), "--params", str(tmp_path / "params.yaml"),
                                    "--split-dir", str(split), "--synth-dir", str(tmp_path), "--kind", "hard_negative"])
    assert bad.exit_code == 1 and "no readable hard_negative clips" in bad.output
