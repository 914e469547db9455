"""The tiny profile of the whole pipeline, run with DVC in a throw-away git repository.

Checks every metrics file, that a second `dvc repro` does nothing, that a bad `-S` value stops the run
with a message naming the key, that `dvc exp run -S train.epochs=1` re-runs only train and what follows,
and that the exported model directory scores WAVs of any rate/channel count without torch.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml
from _support import TORCH_BLOCKER, copy_repo, run

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def repo(tiny_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tiny-profile pipeline, run once and committed (tests/conftest.py)."""
    return copy_repo(tiny_template, tmp_path_factory.mktemp("pipeline"))


def _number(d: dict, key: str) -> float:
    value = d
    for part in key.split("."):
        value = value[part]
    assert isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value), key
    return float(value)


def test_metrics_files(repo: Path) -> None:
    for name in ("float", "int8"):
        m = json.loads((repo / "metrics" / f"{name}.json").read_text())
        for key in ("fah", "fah_ci_low", "fah_ci_high", "negative_hours", "recall_at_target", "eer", "pauc",
                    "pauc_std_fpr10", "pauc_norm_fpr5", "roc_auc", "confusable_false_accept_rate", "clip.f1",
                    "clip.precision", "recall_at_0p5_fah", "threshold"):
            _number(m, key)
        assert 0 <= m["fah_ci_low"] <= m["fah"] <= m["fah_ci_high"]
        assert 0 <= m["recall_at_target"] <= 1 and 0 <= m["eer"] <= 1
        curve = json.loads((repo / "metrics" / "plots" / name / f"{name}_curve.json").read_text())
        assert len(curve) > 10 and {"threshold", "fah", "recall"} <= set(curve[0])
        # the held-out engine group: its own clips and stream, the same metrics
        for key in ("fah", "negative_hours", "recall_at_target", "recall_at_0p5_fah", "eer", "counts.positive_clips",
                    "confusable_false_accept_rate"):
            _number(m["heldout"], key)
        assert m["heldout"]["counts"]["positive_clips"] == 2 * 20  # n_heldout_positive per engine: Pico, DECtalk
        engines = m["heldout"]["by_engine"]
        assert set(engines) == {"pico", "dectalk"} and all(e["positive_clips"] == 20 for e in engines.values())
        assert {v.partition(":")[0] for v in m["heldout"]["by_voice"]} == {"pico", "dectalk"}
        assert m["heldout"]["negative_hours"] == pytest.approx(0.02, abs=1e-3)
        heldout_curve = json.loads((repo / "metrics" / "plots" / name / f"{name}_heldout_curve.json").read_text())
        assert len(heldout_curve) > 10
        for kind in ("roc", "det", "hist", "heldout_roc"):
            assert json.loads((repo / "metrics" / "plots" / name / f"{name}_{kind}.json").read_text()), kind
        assert set(m["fah_by_kind"]) >= {"speech", "background"} and "median_s" in m["latency"]
        assert m["confusion_matrix"]["positive"]["detected"] + m["confusion_matrix"]["positive"]["not_detected"] \
            == m["counts"]["positive_clips"]
    size = json.loads((repo / "metrics" / "size.json").read_text())
    assert _number(size, "flash_kb") == pytest.approx((repo / "models/deploy/model.tflite").stat().st_size / 1024, abs=0.01)
    assert _number(size, "ram_kb") > _number(size, "arena_kb") > 0
    assert _number(size, "float.flash_kb") > size["flash_kb"]
    deploy = repo / "models" / "deploy"
    source = (deploy / "model_data.cc").read_text()
    body = source[source.index("{") + 1 : source.index("};")]
    assert bytes(int(h, 16) for h in body.replace(",", " ").split()) == (deploy / "model.tflite").read_bytes()
    manifest = json.loads((deploy / "wakeword.json").read_text())
    assert f"= {manifest['tensor_arena_size']};" in (deploy / "model_data.h").read_text()
    assert manifest["tensor_arena_size"] == size["arena_bytes"]
    assert set(size["platforms"]) == {"esp32_s3", "rpi_pico", "nano33_ble"}
    esphome = json.loads((deploy / "hey_jarvis.json").read_text())
    assert esphome["micro"]["tensor_arena_size"] == size["arena_bytes"] and esphome["wakeword"]["esphome_drop_in"] is False
    # the report: every plot rendered offline as PNG, the headline numbers in report.md
    images = sorted(p.name for p in (repo / "metrics" / "images").iterdir())
    assert {"fah_recall.png", "roc.png", "det.png", "reliability.png", "training.png"} <= set(images), images
    assert all((repo / "metrics" / "images" / n).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for n in images)
    report = (repo / "metrics" / "report.md").read_text()
    assert f"{size['flash_kb']:.2f}" in report and "images/fah_recall.png" in report  # the report's format
    cal = json.loads((repo / "metrics" / "calibration.json").read_text())
    assert _number(cal, "temperature") >= 0.01
    train = json.loads((repo / "metrics" / "train.json").read_text())
    assert train["epochs"] == 2 and _number(train, "parameters") > 0
    assert (repo / "metrics" / "train" / "plots" / "metrics" / "val_loss.tsv").exists()
    data = json.loads((repo / "metrics" / "data.json").read_text())
    assert data and json.loads((repo / "metrics" / "onnx.json").read_text())["onnx_max_abs_diff_vs_torch"] < 1e-3


def test_second_repro_does_nothing(repo: Path) -> None:
    out = run(["dvc", "repro"], repo).stdout
    assert "Running stage" not in out, out
    assert "up to date" in run(["dvc", "status"], repo).stdout


def test_bad_param_fails_before_work(repo: Path) -> None:
    proc = run(["dvc", "exp", "run", "-S", "train.lr=-1"], repo, check=False)
    assert proc.returncode != 0
    text = proc.stdout + proc.stderr
    assert "train.lr = -1" in text and "greater than 0" in text, text[-3000:]
    assert "Running stage 'train'" in proc.stdout and "Running stage 'calibrate'" not in proc.stdout
    run(["git", "checkout", "--", "params.yaml"], repo)
    # a typo'd key: plain -S is refused by DVC itself; appended with '+', our validation names it
    proc = run(["dvc", "exp", "run", "-S", "+train.lerning_rate=0.1"], repo, check=False)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "train.lerning_rate: unknown key in section 'train'" in text, text[-3000:]
    run(["git", "checkout", "--", "params.yaml"], repo)


def test_experiment_reruns_only_train_and_after(repo: Path) -> None:
    """An experiment with the streaming architecture: training and what follows re-run, and the tflite stage
    adds the stateful streaming model (wakeword/stream_export.py) beside the window model."""
    proc = run(["dvc", "exp", "run", "-n", "one-epoch", "-S", "train.epochs=1", "-S", "model.arch=stream_tcn"], repo)
    out = proc.stdout
    for stage in ("train", "calibrate", "evaluate", "quantize", "tflite"):
        assert f"Running stage '{stage}'" in out, out
    for stage in ("synth", "split", "featurize", "cmvn"):
        assert f"Running stage '{stage}'" not in out, out
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout)
    assert "one-epoch" in json.dumps(shown)
    diff = json.loads(run(["dvc", "metrics", "diff", "HEAD", "--json"], repo).stdout)
    assert diff["metrics/train.json"]["epochs"]["diff"] == -1
    size = json.loads((repo / "metrics" / "size.json").read_text())
    stream = size["stream"]
    assert stream["arena_bytes"] > 0 and stream["flash_bytes"] == (repo / "models/deploy/stream_model.tflite").stat().st_size
    assert 0 < stream["macs_per_second"] < size["macs_per_second"]  # streaming computes each frame once
    fidelity = json.loads((repo / "metrics" / "int8.json").read_text())["stream_vs_window"]
    assert fidelity["float"]["max_abs_logit_diff"] <= 1e-4 and fidelity["int8"]["decision_agreement"] >= 0.5
    manifest = json.loads((repo / "models/deploy/wakeword.json").read_text())
    assert manifest["stream"]["model"] == "stream_model.tflite", manifest["stream"]


def _positive_clip(repo: Path) -> tuple[np.ndarray, int]:
    rows = [json.loads(line) for line in (repo / "data/split/test.jsonl").read_text().splitlines()]
    pos = next(r for r in rows if r["kind"] == "positive")
    return sf.read(repo / "data/synth" / pos["path"], dtype="float32")


def test_cli_scores_any_wav_without_torch(repo: Path, tmp_path: Path) -> None:
    from scipy.signal import resample_poly

    audio, sr = _positive_clip(repo)
    audio = np.concatenate([np.zeros(16000, np.float32), audio, np.zeros(16000, np.float32)])
    audio += np.random.default_rng(0).standard_normal(audio.size).astype(np.float32) * 1e-3
    sf.write(tmp_path / "a16k.wav", audio, sr, subtype="PCM_16")
    sf.write(tmp_path / "b44k_stereo.wav", np.stack([resample_poly(audio, 441, 160)] * 2, axis=1), 44100,
             subtype="FLOAT")
    sf.write(tmp_path / "c8k.wav", resample_poly(audio, 1, 2), 8000, subtype="PCM_24")
    sf.write(tmp_path / "short.wav", audio[:4000], sr)
    (tmp_path / "broken.wav").write_text("this is not audio")
    wavs = [str(tmp_path / n) for n in ("a16k.wav", "broken.wav", "b44k_stereo.wav", "c8k.wav", "short.wav")]
    blocker = TORCH_BLOCKER + "from wakeword.cli import main; main()"
    proc = run([sys.executable, "-c", blocker, "score", "models/deploy", *wavs], repo, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "broken.wav" in proc.stderr and "cannot read audio" in proc.stderr
    lines = [line.split("\t") for line in proc.stdout.splitlines()]
    by_file: dict[str, list[float]] = {}
    for wav, t, s in lines:
        by_file.setdefault(Path(wav).name, []).append(float(s))
        assert 0.0 <= float(s) <= 1.0 and float(t) > 0
    n = len(by_file["a16k.wav"])
    assert n >= 10 and set(by_file) == {"a16k.wav", "b44k_stereo.wav", "c8k.wav", "short.wav"}
    assert len(by_file["b44k_stereo.wav"]) == n and len(by_file["short.wav"]) == 1
    # resampled and downmixed copies of the same audio score alike
    assert np.abs(np.array(by_file["b44k_stereo.wav"]) - np.array(by_file["a16k.wav"])).max() < 0.25
    det = run([sys.executable, "-c", blocker, "detect", "models/deploy", "--threshold", "0.0", wavs[0]], repo)
    fields = det.stdout.splitlines()[0].split("\t")
    assert Path(fields[0]).name == "a16k.wav" and float(fields[1]) > 0
    run([sys.executable, "-c", blocker, "detect", "models/deploy", "--preset", "conservative", wavs[0]], repo)


def test_cli_detections_on_the_test_stream_match_the_pipeline(repo: Path) -> None:
    """The runtime (numpy features + int8 TFLite + detector from the manifest) counts exactly the false
    alarms the tflite stage reported for the same model on the same stream."""
    int8 = json.loads((repo / "metrics" / "int8.json").read_text())
    out = run([sys.executable, "-m", "wakeword.cli", "detect", "models/deploy", "data/synth/streams/test.wav"],
              repo).stdout
    assert len(out.splitlines()) == int8["false_alarms"]


def _own_clips(repo: Path, raw: Path, kind: str, speakers: range, per_speaker: int, gain: float) -> None:
    """Own recordings stand-ins: demo clips of that kind at a different level (so their content differs from
    the demo files), stereo 44.1 kHz, one folder per speaker."""
    from scipy.signal import resample_poly

    rows = [json.loads(line) for line in (repo / "data/synth/manifest.jsonl").read_text().splitlines()]
    src = [r for r in rows if r["kind"] == kind and r.get("role") != "heldout"]
    i = speakers.start * per_speaker
    for spk in speakers:
        (raw / kind / f"spk{spk:02d}").mkdir(parents=True, exist_ok=True)
        for k in range(per_speaker):
            audio, _ = sf.read(repo / "data/synth" / src[i % len(src)]["path"], dtype="float32")
            up = resample_poly(audio * gain, 441, 160).astype(np.float32)
            sf.write(raw / kind / f"spk{spk:02d}" / f"take{k}.wav", np.stack([up, up], axis=1), 44100)
            i += 1


def _split_of(repo: Path) -> dict[str, str]:
    out = {}
    for split in ("train", "val", "test"):
        for line in (repo / "data/split" / f"{split}.jsonl").read_text().splitlines():
            out[json.loads(line)["id"]] = split
    return out


def test_own_data_added_later_moves_nothing(repo: Path) -> None:
    """Own audio in data/raw (tracked per kind with `dvc add`), used together with the demo set; adding ten
    more positives re-runs ingest and what depends on it, never synth, and moves no existing item."""
    raw = repo / "data" / "raw"
    _own_clips(repo, raw, "positive", range(6), 4, 0.8)
    _own_clips(repo, raw, "negative", range(4), 4, 0.8)
    run(["dvc", "add", "data/raw/positive", "data/raw/negative"], repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"]["source"] = "both"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "repro"], repo).stdout
    assert "Running stage 'ingest'" in out and "Running stage 'synth'" not in out, out
    report = json.loads((repo / "metrics" / "data_report.json").read_text())
    assert report["accepted"] == 40 and report["rejected"] == 0, report
    # a negative longer than data.max_clip_s is cut into pieces, so negatives may count more than files
    assert report["counts"]["positive"] == 24 and report["counts"]["negative"] >= 16, report
    before = _split_of(repo)
    own = {i for i in before if i.startswith("own-")}
    assert len(own) == report["counts"]["positive"] + report["counts"]["negative"]

    _own_clips(repo, raw, "positive", range(6, 8), 5, 0.7)  # ten more files from two new speakers
    run(["dvc", "add", "data/raw/positive"], repo)
    # up to split only (the rest of the pipeline ran above with own data): what must not move is the split
    out = run(["dvc", "repro", "split"], repo).stdout
    for stage in ("ingest", "split"):
        assert f"Running stage '{stage}'" in out, out
    assert "Running stage 'synth'" not in out, out
    status = run(["dvc", "status"], repo).stdout
    assert "featurize:" in status and "synth:" not in status, status  # the new split would re-run featurize
    after = _split_of(repo)
    assert len(after) == len(before) + 10
    moved = {i: (before[i], after[i]) for i in before if after.get(i) != before[i]}
    assert not moved, moved
    own_groups: dict[str, set[str]] = {}
    for split in ("train", "val", "test"):
        for line in (repo / "data/split" / f"{split}.jsonl").read_text().splitlines():
            row = json.loads(line)
            own_groups.setdefault(row["group"], set()).add(split)
    assert all(len(s) == 1 for s in own_groups.values())
