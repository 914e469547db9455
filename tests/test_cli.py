"""CLI refusals that need no trained model (the integration test runs the CLI on a real model dir)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
import yaml
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


ROOT = Path(__file__).resolve().parents[1]


def test_estimate_is_labelled_and_matches_the_model() -> None:
    from wakeword.features import feature_dim, frames_for
    from wakeword.models import build_model, count_macs, count_parameters
    from wakeword.params import Params

    p = Params()
    window = frames_for(p.audio.clip_samples, p.features)
    model = build_model(p.model, feature_dim(p.features), window)
    n_params, macs = count_parameters(model), count_macs(model, window)

    text = CliRunner().invoke(main, ["estimate", "--params", str(ROOT / "params.yaml")])
    assert text.exit_code == 0, text.output
    assert text.output.startswith("ESTIMATE (before training)")
    assert f"{n_params:,}" in text.output and f"{macs:,}" in text.output and f"{macs * 10:,}" in text.output
    assert "unknown before conversion" in text.output
    for name in ("ESP32-S3", "Raspberry Pi Pico", "Arduino Nano 33 BLE"):
        assert name in text.output

    res = CliRunner().invoke(main, ["estimate", "--params", str(ROOT / "params.yaml"), "--json"])
    assert res.exit_code == 0, res.output
    est = json.loads(res.output)
    assert est["label"] == "ESTIMATE (before training)"
    assert est["parameters"] == n_params and est["macs_per_window"] == macs
    assert est["windows_per_second"] == 1000 / p.audio.step_ms and est["macs_per_second"] == macs * 10
    assert est["flash_formula_bytes"] == round(n_params * 1.1)
    assert est["features"]["window_frames"] == window
    assert est["detector_buffers"] == {"audio_ring_bytes": 1024, "feature_window_bytes": window * 40,
                                       "total_bytes": 1024 + window * 40}
    assert est["ram_estimate_bytes"] == est["arena_fit_bytes"] + est["detector_buffers"]["total_bytes"]
    assert set(est["platforms"]) == set(p.deploy.platforms)
    assert all(row["fits"] for row in est["platforms"].values())


def test_estimate_reports_a_platform_the_model_misses(tmp_path: Path) -> None:
    import yaml

    params = {"model": {"arch": "ds_tcn", "ds_tcn": {"channels": 96}},
              "deploy": {"platforms": {"tiny_mcu": {"name": "Tiny MCU", "flash_kb": 256, "ram_kb": 64,
                                                    "max_flash_kb": 32, "max_ram_kb": 0}}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    res = CliRunner().invoke(main, ["estimate", "--params", str(tmp_path / "params.yaml"), "--json"])
    assert res.exit_code == 0, res.output
    row = json.loads(res.output)["platforms"]["tiny_mcu"]
    assert row["fits"] is False and row["flash_kb"] > 32 and row["max_ram_kb"] == 0
    text = CliRunner().invoke(main, ["estimate", "--params", str(tmp_path / "params.yaml")])
    assert "Tiny MCU" in text.output and text.output.rstrip().splitlines()[-3].endswith("NO")


def test_estimate_describes_every_arch(tmp_path: Path) -> None:
    import yaml

    from wakeword.models import describe
    from wakeword.params import ARCHS, ModelParams

    for arch in ARCHS:
        path = tmp_path / f"{arch}.yaml"
        path.write_text(yaml.safe_dump({"model": {"arch": arch}}))
        res = CliRunner().invoke(main, ["estimate", "--params", str(path)])
        assert res.exit_code == 0, (arch, res.output)
        model_line = next(line for line in res.output.splitlines() if line.startswith("model "))
        want = describe(ModelParams(arch=arch))
        assert model_line.split(maxsplit=1)[1] == want and want.startswith(f"{arch}: ")


def test_estimate_refuses_bad_params(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("model:\n  ds_tcn:\n    channels: 2\n")
    res = CliRunner().invoke(main, ["estimate", "--params", str(tmp_path / "bad.yaml")])
    assert res.exit_code == 1
    assert "model.ds_tcn.channels = 2" in res.output and "greater than or equal to 4" in res.output
    assert "ESTIMATE" not in res.output
    missing = CliRunner().invoke(main, ["estimate", "--params", str(tmp_path / "none.yaml")])
    assert missing.exit_code == 1 and "cannot read params file" in missing.output


def test_cli_imports_without_torch() -> None:
    import subprocess
    import sys

    from _support import TORCH_BLOCKER

    blocker = TORCH_BLOCKER + "from wakeword.cli import main\nmain()\n"
    res = subprocess.run([sys.executable, "-c", blocker, "--help"], capture_output=True, text=True, timeout=120,
                         check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "estimate" in res.stdout and "detect" in res.stdout


def test_plots_template_has_no_external_scripts(tmp_path: Path) -> None:
    out = tmp_path / "t" / "offline.html"
    result = CliRunner().invoke(main, ["plots-template", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    assert "{plot_divs}" in html and "<script src=" not in html and "cdn." not in html and len(html) > 100_000


def test_lr_find_writes_the_curve_and_suggests_a_rate(tmp_path: Path) -> None:
    from tests.test_train_resume import _features

    _features(tmp_path)
    out = tmp_path / "lr"
    res = CliRunner().invoke(main, ["lr-find", "--params", str(tmp_path / "params.yaml"), "--features-dir",
                                    str(tmp_path / "features"), "--cmvn", str(tmp_path / "cmvn.json"), "--out",
                                    str(out), "--steps", "12", "--start", "1e-5", "--end", "1e-1"])
    assert res.exit_code == 0, res.output
    rows = json.loads((out / "lr_finder.json").read_text())
    assert 5 <= len(rows) <= 12 and rows[0]["lr"] == pytest.approx(1e-5)
    assert all(b["lr"] > a["lr"] for a, b in itertools.pairwise(rows))
    assert (out / "lr_finder.png").read_bytes()[:4] == b"\x89PNG"
    suggested = float(res.output.strip().splitlines()[-1].split("suggested peak lr: ")[1].split()[0])
    assert any(abs(r["lr"] - suggested) / suggested < 0.01 for r in rows)
    bad = CliRunner().invoke(main, ["lr-find", "--features-dir", str(tmp_path / "nowhere"), "--params",
                                    str(tmp_path / "params.yaml")])
    assert bad.exit_code != 0 and "nowhere" in bad.output

    def curve(seed: int, offset: int) -> list[float]:  # the loss curve drawn with seed + train.seed_offset
        params = yaml.safe_load((tmp_path / "params.yaml").read_text())
        params["seed"], params["train"]["seed_offset"] = seed, offset
        (tmp_path / f"p{seed}.yaml").write_text(yaml.safe_dump(params))
        res = CliRunner().invoke(main, ["lr-find", "--params", str(tmp_path / f"p{seed}.yaml"), "--features-dir",
                                        str(tmp_path / "features"), "--cmvn", str(tmp_path / "cmvn.json"), "--out",
                                        str(tmp_path / f"lr{seed}"), "--steps", "8"])
        assert res.exit_code == 0, res.output
        return [r["loss"] for r in json.loads((tmp_path / f"lr{seed}" / "lr_finder.json").read_text())]

    assert curve(5, 2) == curve(7, 0) != curve(5, 0)
