"""features.type (log_mel | mfcc | micro): references, torch vs numpy, stream vs whole, the stateful micro
front end, the torch-free runtime against the pipeline, and the settings micro fixes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.fft

from wakeword.features import (
    MICRO_CHANNELS,
    MICRO_HOP_SAMPLES,
    MICRO_SCALE,
    MICRO_WIN_SAMPLES,
    compute_features,
    compute_features_batch,
    compute_features_stream,
    feature_dim,
    frames_for,
    log_mel,
    micro_int16,
    num_frames,
)
from wakeword.params import FeatureParams, ParamsError, parse_params

REPO = Path(__file__).resolve().parents[1]
LOG_MEL = FeatureParams()
MFCC = FeatureParams(type="mfcc")
MICRO = FeatureParams(type="micro", win_ms=30.0)


def _speechy(n: int, seed: int) -> np.ndarray:
    """A noise floor with a few tone bursts: features that vary over time and across bins."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    x = 0.01 * rng.standard_normal(n)
    for k in range(3):
        f0 = float(rng.uniform(200, 2000))
        on = (t > 0.2 + 0.5 * k) & (t < 0.45 + 0.5 * k)
        x = x + 0.2 * np.sin(2 * np.pi * f0 * t) * on
    return x.astype(np.float32)


# ---------------------------------------------------------------- dispatch basics


@pytest.mark.parametrize("fp, dim", [(LOG_MEL, 40), (FeatureParams(n_mels=64), 64), (MFCC, 20),
                                     (FeatureParams(type="mfcc", n_mels=64, n_mfcc=13), 13), (MICRO, 40)])
def test_feature_dim_and_frames(fp: FeatureParams, dim: int) -> None:
    assert feature_dim(fp) == dim
    for n in (0, 100, 479, 480, 639, 640, 24_000):
        got = compute_features(np.zeros(n, dtype=np.float32) + 1e-3, fp)
        assert got.shape == (frames_for(n, fp), dim), n
        assert got.dtype == np.float32
        assert frames_for(n, fp) == num_frames(n, fp)  # the validated window/hop keys describe every type
    assert frames_for(24_000, fp) == 1 + (24_000 - fp.win_samples) // 160


def test_micro_frame_count_is_the_front_ends() -> None:
    assert (MICRO_WIN_SAMPLES, MICRO_HOP_SAMPLES) == (MICRO.win_samples, MICRO.hop_samples) == (480, 160)
    assert [frames_for(n, MICRO) for n in (479, 480, 639, 640, 24_000)] == [0, 1, 1, 2, 148]


# ---------------------------------------------------------------- MFCC


@pytest.mark.parametrize("fp", [MFCC, FeatureParams(type="mfcc", n_mels=64, n_mfcc=13, win_ms=32.0)])
def test_mfcc_is_orthonormal_dct_of_log_mel(fp: FeatureParams) -> None:
    x = _speechy(12_000, 0)
    want = scipy.fft.dct(log_mel(x, fp).astype(np.float64), type=2, norm="ortho", axis=1)[:, : fp.n_mfcc]
    got = compute_features(x, fp)
    assert got.shape == want.shape == (frames_for(x.size, fp), fp.n_mfcc)
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-4)
    assert np.abs(want[:, 1:]).max() > 1.0  # not a trivially flat spectrum


# ---------------------------------------------------------------- torch batch and stream vs numpy


@pytest.mark.parametrize("fp", [LOG_MEL, MFCC, FeatureParams(type="mfcc", n_mels=64, n_mfcc=30)])
def test_torch_batch_matches_numpy_per_clip(fp: FeatureParams) -> None:
    clips = np.stack([_speechy(24_000, s) for s in range(4)])
    got = compute_features_batch(clips, fp)
    assert got.shape == (4, frames_for(24_000, fp), feature_dim(fp)) and got.dtype == np.float32
    want = np.stack([compute_features(c, fp) for c in clips])
    np.testing.assert_allclose(got, want, rtol=0, atol=2e-3)


@pytest.mark.parametrize("fp", [LOG_MEL, MFCC, MICRO])
def test_stream_blocks_equal_whole(fp: FeatureParams) -> None:
    x = _speechy(50_000, 5)
    whole = compute_features(x, fp)
    for block in (100, 160, 1000, 7777, 60_000):
        parts = [x[i : i + block] for i in range(0, x.size, block)]
        got = compute_features_stream(iter(parts), fp)
        assert got.shape == whole.shape, block
        if fp.type == "micro":
            np.testing.assert_array_equal(got, whole)  # integer front end: exact
        else:
            np.testing.assert_allclose(got, whole, rtol=0, atol=1e-4)


def test_empty_inputs() -> None:
    for fp in (LOG_MEL, MFCC, MICRO):
        assert compute_features_stream([], fp).shape == (0, feature_dim(fp))
        assert compute_features_batch(np.zeros((0, 24_000), np.float32), fp).shape == (0, 148, feature_dim(fp))
        assert compute_features_batch(np.zeros((2, 100), np.float32), fp).shape == (2, 0, feature_dim(fp))
        with pytest.raises(ValueError, match="mono"):
            compute_features(np.zeros((2, 1000), np.float32), fp)


# ---------------------------------------------------------------- micro front end


def test_micro_int16_conversion() -> None:
    got = micro_int16(np.array([0.0, 0.5, 1.0, -1.0, 2.0, -2.0, 1.5 / 32768, -1.5 / 32768], dtype=np.float32))
    assert got.dtype == np.int16
    assert got.tolist() == [0, 16384, 32767, -32768, 32767, -32768, 1, -1]  # x * 32768, clipped, truncated


def test_micro_shape_dtype_scale_and_determinism() -> None:
    x = _speechy(24_000, 1)
    a = compute_features(x, MICRO)
    b = compute_features(x.copy(), MICRO)
    assert a.shape == (148, MICRO_CHANNELS) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    steps = a / MICRO_SCALE  # uint16 front-end output x 1/25.6
    np.testing.assert_array_equal(steps, np.round(steps))
    assert a.min() >= 0.0 and 5.0 < a.max() < 40.0


def test_micro_tone_differs_from_silence() -> None:
    rng = np.random.default_rng(2)
    quiet = (1e-4 * rng.standard_normal(16_000)).astype(np.float32)
    t = np.arange(16_000) / 16000
    tone = (quiet + 0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    fq, ft = compute_features(quiet, MICRO), compute_features(tone, MICRO)
    peak = int(ft[-20:].mean(axis=0).argmax())
    assert ft[-20:, peak].mean() > fq[-20:, peak].mean() + 3.0
    assert 5 <= peak <= 35  # 1 kHz is inside the 125-7500 Hz channels, not at an edge


def test_micro_fresh_front_end_per_clip() -> None:
    a, b = _speechy(24_000, 3), _speechy(24_000, 4)
    batch = compute_features_batch(np.stack([a, b, a]), MICRO)
    np.testing.assert_array_equal(batch[0], batch[2])  # the clip between left no state behind
    np.testing.assert_array_equal(batch[0], compute_features(a, MICRO))
    np.testing.assert_array_equal(batch[1], compute_features(b, MICRO))


def test_micro_stream_state_runs_on() -> None:
    """A stream is one front end: the second half's rows differ from a fresh start on the second half (noise
    reduction and PCAN adapt), unlike log-mel where a slice gives the same rows."""
    x = np.concatenate([_speechy(24_000, 6), _speechy(24_000, 7)])
    cont = compute_features_stream([x[:24_000], x[24_000:]], MICRO)
    fresh = compute_features(x[24_000:], MICRO)
    rows = cont[150 : 150 + fresh.shape[0]]  # frame 150 starts at sample 24_000
    assert rows.shape == fresh.shape
    assert not np.array_equal(rows, fresh)
    lm = compute_features(x, LOG_MEL)
    np.testing.assert_allclose(compute_features(x[24_000:], LOG_MEL), lm[150 : 150 + 148], atol=1e-4)


# ---------------------------------------------------------------- params


@pytest.mark.parametrize("override, key", [({"hop_ms": 20.0}, "features.hop_ms"), ({}, "features.win_ms"),
                                           ({"win_ms": 30.0, "n_mels": 64}, "features.n_mels")])
def test_params_reject_inconsistent_micro_settings(override: dict, key: str) -> None:
    with pytest.raises(ParamsError) as info:
        parse_params({"features": {"type": "micro", **override}})
    assert key in str(info.value) and "micro" in str(info.value), str(info.value)


def test_params_accept_micro_and_mfcc() -> None:
    p = parse_params({"features": {"type": "micro", "win_ms": 30.0}})
    assert feature_dim(p.features) == 40 and p.features.hop_samples == 160
    p = parse_params({"features": {"type": "mfcc", "n_mfcc": 13}})
    assert feature_dim(p.features) == 13
    with pytest.raises(ParamsError, match="n_mfcc"):
        parse_params({"features": {"type": "mfcc", "n_mels": 16, "n_mfcc": 20}})


# ---------------------------------------------------------------- runtime (torch-free) vs pipeline


class _RecordingScorer:
    """Stands in for the TFLite scorer: records the windows the runtime feeds it."""

    def __init__(self) -> None:
        self.windows: list[np.ndarray] = []

    def logits(self, x: np.ndarray) -> np.ndarray:
        self.windows.append(np.array(x))
        return np.zeros((x.shape[0], 2), dtype=np.float32)


@pytest.mark.parametrize("fp", [LOG_MEL, MFCC, MICRO])
def test_runtime_feeds_the_pipelines_features(fp: FeatureParams) -> None:
    from wakeword.detector import DetectorConfig
    from wakeword.runtime import DeployedModel
    from wakeword.scoring import sliding_windows

    window, step = 148, 10
    scorer = _RecordingScorer()
    model = DeployedModel(Path("."), {}, fp, window, step, 1.0, DetectorConfig.preset("balanced", 100), scorer)
    audio = _speechy(48_000, 8)
    _, probs = model.score_audio(audio)
    got = np.concatenate(scorer.windows)
    pipeline = compute_features_batch(audio[None], fp)[0]  # what featurize computes for this clip
    want = sliding_windows(pipeline, window, step)
    assert got.shape == want.shape == (probs.shape[0], window, feature_dim(fp))
    np.testing.assert_allclose(got, want, rtol=0, atol=0 if fp.type == "micro" else 2e-3)


def test_runtime_features_need_no_torch(tmp_path: Path) -> None:
    from _support import TORCH_BLOCKER

    code = TORCH_BLOCKER + (
        "import json\n"
        "import numpy as np\n"
        "import wakeword.runtime\n"
        "from wakeword.features import compute_features\n"
        "from wakeword.params import FeatureParams\n"
        "x = np.load(sys.argv[1])\n"
        "for t, kw in json.loads(sys.argv[2]).items():\n"
        "    np.save(sys.argv[3] + '/' + t + '.npy', compute_features(x, FeatureParams(**kw)))\n"
        "assert 'torch' not in sys.modules\n"
    )
    x = _speechy(24_000, 9)
    np.save(tmp_path / "x.npy", x)
    kinds = {fp.type: fp.model_dump() for fp in (LOG_MEL, MFCC, MICRO)}
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.npy"), json.dumps(kinds), str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    for fp in (LOG_MEL, MFCC, MICRO):
        got = np.load(tmp_path / f"{fp.type}.npy")
        np.testing.assert_allclose(got, compute_features_batch(x[None], fp)[0], rtol=0, atol=2e-3)


def test_deployed_mfcc_model_dir_end_to_end(tmp_path: Path) -> None:
    """A real int8 .tflite with 20 MFCC inputs: the manifest names the type, the runtime loads it (its input
    check uses feature_dim, not n_mels), scores like the pipeline, and refuses a manifest of another type."""
    import torch

    from wakeword.cmvn import CMVN
    from wakeword.deploy import build_manifest, folded_model, write_model_dir
    from wakeword.detector import DetectorConfig
    from wakeword.export import convert_tflite_int8
    from wakeword.models import DSTCN
    from wakeword.runtime import DeployedModel, ModelDirError
    from wakeword.scoring import probabilities, stream_logits

    fp, window, step = MFCC, 148, 10
    clips = np.stack([_speechy(32_000, s) for s in range(12)])
    feats = compute_features_batch(clips, fp)
    flat = feats.reshape(-1, feature_dim(fp))
    cmvn = CMVN(flat.mean(0), flat.std(0), fp.type, int(flat.shape[0]))
    torch.manual_seed(0)
    model = folded_model(DSTCN(feature_dim(fp), channels=8, blocks=1, kernel_size=3, dropout=0.0).eval(), cmvn)
    calib = np.ascontiguousarray(feats[:, :window])
    tfl = tmp_path / "m.tflite"
    convert_tflite_int8(model, calib, tfl)
    cal = {"temperature": 1.0, "threshold": 0.5, "detector": DetectorConfig.preset("balanced", 100).to_dict()}
    manifest = build_manifest("hey jarvis", fp, window, step, 100, cal, 4096, cmvn)
    assert "MFCC" in manifest["input"] and "20 coefficients" in manifest["input"]
    with pytest.raises(ValueError, match="CMVN"):
        build_manifest("hey jarvis", LOG_MEL, window, step, 100, cal, 4096, cmvn)
    write_model_dir(tmp_path / "deploy", tfl, manifest)

    deployed = DeployedModel.load(tmp_path / "deploy")
    audio = _speechy(48_000, 20)
    _, probs = deployed.score_audio(audio)
    want = probabilities(stream_logits(deployed.scorer.logits, compute_features_batch(audio[None], fp)[0],
                                       window, step), 1.0)
    assert probs.shape == want.shape and probs.shape[0] > 0
    np.testing.assert_allclose(probs, want, atol=0.02)

    other = json.loads((tmp_path / "deploy" / "wakeword.json").read_text())
    other["features"] = MICRO.model_dump()
    (tmp_path / "deploy" / "wakeword.json").write_text(json.dumps(other))
    with pytest.raises(ModelDirError, match="40 micro features"):
        DeployedModel.load(tmp_path / "deploy")


def test_micro_front_end_is_settled_on_a_lead_in() -> None:
    """A fresh front end's noise reduction needs ~0.75 s to settle; a recording's features come from a front
    end first run over its own first second time-reversed, frames of the lead-in dropped."""
    from wakeword.features import MicroStream, micro_features, micro_stream

    x = (np.random.default_rng(0).standard_normal(24000) * 0.01).astype(np.float32)  # steady noise
    cold, warm = micro_features(x, warmup=False), micro_features(x)
    assert cold.shape == warm.shape == (148, 40)
    assert cold[:10].mean() - cold[-10:].mean() > 5.0  # unsettled start
    assert abs(warm[:10].mean() - warm[-10:].mean()) < 1.0  # settled from the first frame
    reference = MicroStream(warmup=False).push(np.concatenate([x[:16000][::-1], x]))[100:]
    np.testing.assert_array_equal(warm, reference)
    for size in (100, 7777, 30000):  # held-back rows are released once a second has arrived, or at the end
        np.testing.assert_array_equal(micro_stream([x[i : i + size] for i in range(0, x.size, size)]), warm)
    assert micro_features(x[:5000]).shape == (29, 40)  # shorter than the lead-in: all of it, reversed


@pytest.mark.parametrize("kind", ["log_mel", "mfcc"])
def test_db_gain_map_predicts_the_features_of_louder_audio(kind: str) -> None:
    """+6.02 dB (twice the amplitude) in every band: the map's prediction equals the features of the louder audio."""
    from wakeword.features import compute_features, db_gain_to_features

    fp = FeatureParams(type=kind)
    rng = np.random.default_rng(4)
    audio = (0.05 * rng.standard_normal(16000)).astype(np.float32)
    base, louder = compute_features(audio, fp), compute_features(2 * audio, fp)
    m = db_gain_to_features(fp)
    assert m is not None and m.shape == (fp.n_mels, louder.shape[1])
    predicted = base + np.full(fp.n_mels, 20 * np.log10(2)) @ m
    np.testing.assert_allclose(louder, predicted, atol=2e-4)


def test_db_gain_map_is_none_for_micro() -> None:
    from wakeword.features import db_gain_to_features

    assert db_gain_to_features(MICRO) is None
