"""A deployed model directory stands alone: copied to a clean place it scores audio with torch unavailable,
its manifest's arena is the measured minimum, and its ESPHome-style manifest says what it is.

One tiny random DS-TCN (nothing is trained) is folded with CMVN statistics of synthetic audio, converted to
full-int8 TFLite and published with :func:`wakeword.deploy.write_model_dir`, once per module.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from _support import TORCH_BLOCKER

from wakeword.cmvn import compute_cmvn
from wakeword.deploy import (
    ESPHOME_MINIMUM_VERSION,
    build_manifest,
    esphome_manifest,
    esphome_manifest_name,
    folded_model,
    model_shape,
    write_model_dir,
)
from wakeword.detector import DetectorConfig
from wakeword.export import convert_tflite_int8
from wakeword.features import compute_features, feature_dim, frames_for
from wakeword.models import DSTCN
from wakeword.params import AudioParams, DetectorParams, FeatureParams
from wakeword.runtime import MANIFEST_NAME, DeployedModel
from wakeword.scoring import sliding_windows
from wakeword.size import arena_allocates, measure_arena_bytes, rough_size_estimate

PHRASE = "hey jarvis"


def _audio(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Noise with tone bursts of varying pitch and level: features that change over time."""
    n = int(seconds * 16000)
    x = rng.standard_normal(n).astype(np.float32) * 0.01
    t = np.arange(8000) / 16000
    for start in range(0, n - 8000, 6000):
        hz, level = rng.uniform(200, 3000), rng.uniform(0.05, 0.4)
        x[start : start + 8000] += (level * np.sin(2 * np.pi * hz * t) * np.hanning(8000)).astype(np.float32)
    return x


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    fp = FeatureParams()
    window = frames_for(AudioParams().clip_samples, fp)
    feats = compute_features(_audio(rng, 20.0), fp)
    cmvn = compute_cmvn(feats[None], fp.type)
    model = DSTCN(feature_dim(fp), channels=16, blocks=2, kernel_size=5, dropout=0.0).eval()
    with torch.no_grad():  # untrained logits are nearly equal; a wider head makes the scores vary
        model.head.weight.mul_(40.0)
    calib = np.ascontiguousarray(sliding_windows(feats, window, 10), dtype=np.float32)
    work = tmp_path_factory.mktemp("deploy")
    tflite = work / "model.tflite"
    convert_tflite_int8(folded_model(model, cmvn), calib, tflite)
    arena = measure_arena_bytes(tflite)
    detector = DetectorConfig.from_params(DetectorParams(), 0.6, 100)
    cal = {"temperature": 1.3, "threshold": 0.6, "detector": detector.to_dict()}
    manifest = build_manifest(PHRASE, fp, window, 10, 100, cal, arena, cmvn)
    out = work / "models" / "deploy"
    write_model_dir(out, tflite, manifest, esphome_manifest(manifest, "Test Author", "", ["en"]))
    return {"dir": out, "model": model, "window": window, "arena": arena, "tflite": tflite}


def test_directory_holds_every_artifact(built: dict[str, object]) -> None:
    d = built["dir"]
    assert isinstance(d, Path)
    assert sorted(p.name for p in d.iterdir()) == sorted(
        ["model.tflite", MANIFEST_NAME, "model_data.h", "model_data.cc", "hey_jarvis.json"])
    assert json.loads((d / MANIFEST_NAME).read_text())["esphome_manifest"] == "hey_jarvis.json"


def test_copied_directory_scores_a_wav_without_torch(built: dict[str, object], tmp_path: Path) -> None:
    src = built["dir"]
    assert isinstance(src, Path)
    wav = tmp_path / "input.wav"
    sf.write(wav, _audio(np.random.default_rng(1), 4.0), 16000, subtype="PCM_16")
    times, probs = DeployedModel.load(src).score_file(wav)
    assert probs.shape == times.shape and probs.shape[0] >= 20
    assert np.ptp(probs) > 5e-3, "scores do not vary: the comparison below would be vacuous"

    clean = tmp_path / "elsewhere" / "my_model"
    shutil.copytree(src, clean)
    hidden = src.with_name(src.name + ".hidden")  # the original is gone while the copy runs
    src.rename(hidden)
    try:
        code = TORCH_BLOCKER + (
            "import json\n"
            "from wakeword.runtime import DeployedModel\n"
            f"m = DeployedModel.load({str(clean)!r})\n"
            f"t, p = m.score_file({str(wav)!r})\n"
            "loaded = [k for k, v in sys.modules.items() if v is not None and k.split('.')[0] == 'torch']\n"
            "assert not loaded, loaded\n"
            "print(json.dumps({'times': t.tolist(), 'probs': p.tolist(), 'detections': m.detections(p).tolist()}))\n"
        )
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        res = subprocess.run([sys.executable, "-c", code], cwd=tmp_path / "elsewhere", capture_output=True, text=True,
                             timeout=300, check=False, env=env)
    finally:
        hidden.rename(src)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(out["times"], times, rtol=0, atol=1e-9)
    np.testing.assert_allclose(out["probs"], probs, rtol=0, atol=1e-6)
    assert out["detections"] == DeployedModel.load(src).detections(probs).tolist()


def test_manifest_arena_is_the_measured_minimum(built: dict[str, object]) -> None:
    d = built["dir"]
    assert isinstance(d, Path)
    arena = json.loads((d / MANIFEST_NAME).read_text())["tensor_arena_size"]
    assert arena == built["arena"] and arena % 16 == 0
    assert arena_allocates(d / "model.tflite", arena)
    assert not arena_allocates(d / "model.tflite", int(arena * 0.9))
    assert f"G_WAKEWORD_MODEL_TENSOR_ARENA_SIZE = {arena};" in (d / "model_data.h").read_text()
    assert json.loads((d / "hey_jarvis.json").read_text())["micro"]["tensor_arena_size"] == arena


def test_esphome_manifest_fields(built: dict[str, object]) -> None:
    d = built["dir"]
    assert isinstance(d, Path)
    ours = json.loads((d / MANIFEST_NAME).read_text())
    mww = json.loads((d / "hey_jarvis.json").read_text())
    # ESPHome micro_wake_word manifest v2 keys; website is optional there and left out when empty
    assert set(mww) == {"type", "wake_word", "author", "model", "trained_languages", "version", "micro", "wakeword"}
    assert (mww["type"], mww["version"], mww["wake_word"], mww["author"]) == ("micro", 2, PHRASE, "Test Author")
    assert mww["trained_languages"] == ["en"]
    assert (d / mww["model"]).is_file() and mww["model"] == ours["model"]
    assert mww["micro"] == {
        "probability_cutoff": ours["probability_cutoff"],
        "sliding_window_size": ours["detector"]["vote_window"],
        "feature_step_size": 10,
        "tensor_arena_size": ours["tensor_arena_size"],
        "minimum_esphome_version": ESPHOME_MINIMUM_VERSION,
    }
    ext = mww["wakeword"]
    assert ext["esphome_drop_in"] is False and ext["manifest"] == MANIFEST_NAME
    assert "Not a drop-in" in ext["note"] and "streaming" in ext["note"] and "micro" in ext["note"]
    assert ext["window_frames"] == ours["window_frames"] and ext["step_ms"] == ours["step_ms"]
    assert ext["temperature"] == ours["temperature"] and ext["detector"] == ours["detector"]
    assert ext["window_s"] == pytest.approx(1.495)
    with_site = esphome_manifest(ours, website="https://example.org/ww")
    assert with_site["website"] == "https://example.org/ww" and with_site["author"] == "wakeword"


def test_esphome_manifest_name() -> None:
    assert esphome_manifest_name("hey jarvis") == "hey_jarvis.json"
    assert esphome_manifest_name("Don't Stop") == "dont_stop.json"
    assert esphome_manifest_name("wakeword") == "wakeword_esphome.json"  # never overwrites wakeword.json


def test_rough_estimate_is_close_to_the_measured_size(built: dict[str, object]) -> None:
    model, window, tflite = built["model"], built["window"], built["tflite"]
    assert isinstance(model, torch.nn.Module) and isinstance(window, int) and isinstance(tflite, Path)
    est = rough_size_estimate(model_shape(model, window))
    flash, arena = tflite.stat().st_size, built["arena"]
    assert isinstance(arena, int)
    assert abs(est["flash_fit_bytes"] - flash) / flash < 0.15, (est, flash)
    assert abs(est["arena_fit_bytes"] - arena) / arena < 0.15, (est, arena)
    assert est["flash_formula_bytes"] < flash  # SPEC's weights-only formula underestimates (documented)


def test_extra_files_are_published_with_the_directory(built: dict[str, object], tmp_path: Path) -> None:
    tflite, manifest = built["tflite"], json.loads((built["dir"] / MANIFEST_NAME).read_text())  # type: ignore[operator]
    assert isinstance(tflite, Path)
    extra = tmp_path / "stream.bin"
    extra.write_bytes(b"\x01\x02\x03")
    out = tmp_path / "deploy"
    write_model_dir(out, tflite, manifest, None, {"stream_model.tflite": extra})
    assert (out / "stream_model.tflite").read_bytes() == b"\x01\x02\x03"
    assert (out / "model.tflite").read_bytes() == tflite.read_bytes()
    for bad in ("model.tflite", MANIFEST_NAME, "sub/x.tflite", ""):
        with pytest.raises(ValueError, match="extra model-directory file name"):
            write_model_dir(tmp_path / "other", tflite, manifest, None, {bad: extra})
        assert not (tmp_path / "other").exists()
