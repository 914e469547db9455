"""Streaming int8 deployment of stream_tcn (wakeword.stream_export): a stateful full-int8 ``.tflite`` (frames and
state in, logits and state out) of TFLite-Micro builtins whose state outputs carry their inputs' int8 scale,
whose scores on a long recording equal the window model's (float: to 1e-5; int8: within the two int8 models'
own quantisation error), whose measured arena is the minimum, and whose runner needs no torch.

One small model (16 bins x 48-frame window, 8 channels, dilations 1-2-4: receptive field 31 frames), trained a
few steps on bump-vs-noise windows so that its scores vary across the threshold, is converted once per module
both ways (streaming about 3x the window model's time; the two conversions are most of this file's time).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from wakeword.models import StreamTCN, build_model, fold_cmvn
from wakeword.params import ModelParams

FRAMES, BINS = 48, 16
KNOBS = {"channels": 8, "kernel_size": 3, "dilations": [1, 2, 4], "stem_stride": 2}
MEAN = np.linspace(-9.0, -3.0, BINS, dtype=np.float32)
STD = np.linspace(1.0, 2.5, BINS, dtype=np.float32)
THRESHOLD = 0.5
#: Allowed |probability| difference between the int8 streaming model and the int8 window model at any call.
#: They share the int8 weights but are calibrated separately (streamed calls vs whole windows: different
#: activation ranges, so different scales), so each rounds differently. Measured here: max 0.040, mean 0.002
#: (each against the float model: 0.035 stream, 0.030 window); on the default 48-channel model briefly trained
#: on the repo's real features, over a 21-minute recording: max 0.060, mean 0.004 (each against float: 0.19 /
#: 0.17 at single calls). A stale or zeroed state, a wrong state layout or a state copied back with the wrong
#: scale moves the mean, not just single calls: see test_a_broken_state_is_caught.
INT8_PROB_TOL = 0.06
INT8_MEAN_PROB_TOL = 0.01
#: Every op TFLite-Micro must provide for the streaming model (all builtins with int8 kernels).
STREAM_OPS = {"RESHAPE", "TRANSPOSE", "CONCATENATION", "SLICE", "STRIDED_SLICE", "CONV_2D", "DEPTHWISE_CONV_2D",
              "ADD", "FULLY_CONNECTED"}


def _windows(rng: np.random.Generator, n: int, frames: int) -> tuple[np.ndarray, np.ndarray]:
    """Log-mel-like raw features; positives carry a band bump in their last receptive field."""
    x = MEAN + STD * rng.normal(size=(n, frames, BINS)).astype(np.float32)
    y = rng.integers(0, 2, size=n)
    for i in np.flatnonzero(y):
        start = frames - 28 + int(rng.integers(0, 8))
        x[i, start : start + 14, BINS // 4 : BINS // 2] += 3.0
    return x.astype(np.float32), y.astype(np.int64)


def _recording(rng: np.random.Generator, frames: int = 640, every: int = 80) -> np.ndarray:
    """A long raw feature sequence: noise with a bump 'event' every ``every`` frames (random phase)."""
    x = MEAN + STD * rng.normal(size=(frames, BINS)).astype(np.float32)
    for start in range(int(rng.integers(0, every)), frames - 14, every):
        x[start : start + 14, BINS // 4 : BINS // 2] += 3.0
    return x.astype(np.float32)


def _calibration(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Streamed calibration sequences (48 calls, 15 of them warm-up) and, for the window model, the 48-frame
    windows inside them every 8 frames: both int8 models see the same audio."""
    seqs = np.stack([_recording(rng, 2 * FRAMES, every=40) for _ in range(48)])
    windows = np.lib.stride_tricks.sliding_window_view(seqs, FRAMES, axis=1)[:, ::8].transpose(0, 1, 3, 2)
    return seqs, np.ascontiguousarray(windows.reshape(-1, FRAMES, BINS))


def _trained_model() -> StreamTCN:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = build_model(ModelParams(arch="stream_tcn", stream_tcn=KNOBS), BINS, FRAMES)
    assert isinstance(model, StreamTCN) and model.receptive_field_frames == 31
    x, y = _windows(rng, 256, FRAMES)
    xn = torch.from_numpy((x - MEAN) / STD)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for i in range(60):  # also moves the BatchNorm running statistics off their defaults
        idx = slice((i * 32) % 256, (i * 32) % 256 + 32)
        loss = nn.functional.cross_entropy(model(xn[idx]), torch.from_numpy(y[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    folded = fold_cmvn(model, MEAN, STD)
    assert isinstance(folded, StreamTCN)
    return folded


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The tflite stage's path for stream_tcn: the int8 window model, then :func:`stream_deployment`."""
    from wakeword.export import convert_tflite_int8
    from wakeword.stream_export import stream_deployment

    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("stream")
    model = _trained_model()
    seqs, windows = _calibration(np.random.default_rng(1))
    stream_path, window_path = out / "stream_model.tflite", out / "model.tflite"
    convert_tflite_int8(model, windows, window_path)
    recording = _recording(np.random.default_rng(2))
    np.save(out / "recording.npy", recording)
    res = stream_deployment(model, seqs, recording, stream_path, window_path, FRAMES, hop_ms=10.0, step_ms=100,
                            threshold=THRESHOLD, min_decision_agreement=0.95)
    return {"model": model, "stream": stream_path, "window": window_path, "arena": res["size"]["arena_bytes"],
            "cmp": res["fidelity"], "size": res["size"], "manifest": res["manifest"], "recording": recording,
            "dir": out}


def test_stream_model_is_full_int8_micro_builtins(built: dict[str, Any]) -> None:
    from wakeword.size import tflite_op_names

    ops = tflite_op_names(built["stream"])
    assert set(ops) <= STREAM_OPS, f"ops outside the expected TFLite-Micro builtins: {set(ops) - STREAM_OPS}"
    assert {"CONCATENATION", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"} <= set(ops)
    assert not [p for p in built["dir"].iterdir() if ".tmp" in p.name], "a temp file was left behind"


def test_state_outputs_share_their_inputs_quantization(built: dict[str, Any]) -> None:
    from ai_edge_litert.interpreter import Interpreter

    from wakeword.stream_export import read_stream_interface, state_shapes, subgraph_order_is_signature_order

    interp = Interpreter(model_path=str(built["stream"]))
    iface = read_stream_interface(interp, built["stream"])  # raises on any int8/scale/shape mismatch
    assert subgraph_order_is_signature_order(interp)
    assert iface.frames.shape == (1, 2, BINS) and iface.logits.shape == (1, 2)
    want = [(1, t, 1, c) for t, c in state_shapes(built["model"])]
    assert want == [(1, 1, 1, BINS), (1, 2, 1, 8), (1, 4, 1, 8), (1, 8, 1, 8)]
    assert [s.shape for s in iface.state_in] == [s.shape for s in iface.state_out] == want
    for a, b in zip(iface.state_in, iface.state_out):
        assert (a.scale, a.zero_point) == (b.scale, b.zero_point)
    # the stem's state holds raw frames: it is quantised like the frames input
    assert (iface.state_in[0].scale, iface.state_in[0].zero_point) == (iface.frames.scale, iface.frames.zero_point)
    assert iface.state_bytes == BINS + 8 * (2 + 4 + 8)


def test_state_quantization_check_names_the_mismatch() -> None:
    from wakeword.stream_export import StreamExportError, TensorSpec, check_state_quantization

    a = TensorSpec(1, (1, 2, 1, 8), 0.02, -128)
    check_state_quantization([a], [TensorSpec(7, (1, 2, 1, 8), 0.02, -128)])
    with pytest.raises(StreamExportError, match=r"state 0 .*scale 0\.02 / zero point -128 on input but 0\.03"):
        check_state_quantization([a], [TensorSpec(7, (1, 2, 1, 8), 0.03, -128)])
    with pytest.raises(StreamExportError, match="zero point"):
        check_state_quantization([a], [TensorSpec(7, (1, 2, 1, 8), 0.02, -127)])
    with pytest.raises(StreamExportError, match="shape"):
        check_state_quantization([a], [TensorSpec(7, (1, 4, 1, 8), 0.02, -128)])


def test_stream_module_computes_step(built: dict[str, Any]) -> None:
    """The export wrapper (NHWC state, the stem's concatenation reordered) is StreamTCN.step."""
    from wakeword.stream_export import stream_module, zero_state

    model = built["model"]
    module = stream_module(model)
    ours, theirs = zero_state(model, 3), model.init_state(3)
    x = torch.from_numpy(np.stack([_recording(np.random.default_rng(i), 40) for i in range(3)]))
    with torch.no_grad():
        for i in range(20):
            got = module(x[:, 2 * i : 2 * i + 2], *ours)
            want, theirs = model.step(x[:, 2 * i : 2 * i + 2], theirs)
            ours = list(got[1:])
            torch.testing.assert_close(got[0], want, atol=1e-5, rtol=0)
            for a, b in zip(ours, theirs):
                torch.testing.assert_close(a, b.permute(0, 2, 3, 1), atol=1e-5, rtol=0)  # float32 summation order differs by CPU
    with pytest.raises(ValueError, match=r"\(batch, 2, 16\)"):
        module(torch.zeros(1, 3, BINS), *zero_state(model, 1))


def test_float_stream_equals_window_model(built: dict[str, Any]) -> None:
    cmp = built["cmp"]
    n_calls = built["recording"].shape[0] // 2
    assert cmp["first_compared_call"] == FRAMES // 2 - 1  # the first call that ends a full window
    assert cmp["float"]["calls_compared"] == n_calls - (FRAMES // 2 - 1)
    assert cmp["float"]["max_abs_logit_diff"] <= 1e-5
    assert cmp["float"]["max_abs_prob_diff"] <= 1e-5
    assert cmp["float"]["decision_agreement"] == 1.0
    # not vacuous: the scores cross the threshold both ways over the recording
    assert 0.05 < cmp["float"]["window_positive_fraction"] < 0.95


def test_int8_stream_matches_int8_window_model(built: dict[str, Any]) -> None:
    from wakeword.scoring import probabilities
    from wakeword.stream_export import call_ends, stream_scores
    from wakeword.tflite_runtime import TFLiteScorer

    cmp = built["cmp"]
    assert cmp["int8"]["calls_compared"] == cmp["float"]["calls_compared"]
    assert cmp["int8"]["max_abs_prob_diff"] <= INT8_PROB_TOL, cmp["int8"]
    assert cmp["int8"]["mean_abs_prob_diff"] <= INT8_MEAN_PROB_TOL, cmp["int8"]
    # the streaming model quantises no worse than the window model does
    assert cmp["int8_stream_vs_float"]["max_abs_prob_diff"] <= 2 * cmp["int8_window_vs_float"]["max_abs_prob_diff"] + 0.01
    assert 0.05 < cmp["int8"]["window_positive_fraction"] < 0.95
    # decisions differ only where the window model's score is within the tolerance of the threshold
    rec = built["recording"]
    ends = call_ends(rec.shape[0] // 2, 2)
    keep = ends >= FRAMES
    ps = probabilities(stream_scores(built["stream"], rec)[keep])
    wins = np.stack([rec[e - FRAMES : e] for e in ends[keep]])
    pw = probabilities(TFLiteScorer(built["window"]).logits(wins))
    flips = (ps >= THRESHOLD) != (pw >= THRESHOLD)
    assert np.all(np.abs(pw[flips] - THRESHOLD) <= INT8_PROB_TOL)
    assert cmp["int8"]["decision_agreement"] >= 0.95


def test_tflite_micro_runs_the_stream_like_the_runner(built: dict[str, Any]) -> None:
    """The device's interpreter, state copied back between calls, gives the runner's logits to within a few
    int8 steps (ai-edge-litert's XNNPACK kernels round some values differently; measured here: 2 steps, the
    default model: 3)."""
    from wakeword.scoring import probabilities
    from wakeword.stream_export import StreamRunner, micro_stream_scores, stream_scores

    rec = built["recording"]
    micro = micro_stream_scores(built["stream"], rec, arena_bytes=built["arena"])
    lite = stream_scores(built["stream"], rec)
    step = StreamRunner(built["stream"]).interface.logits.scale
    assert micro.shape == lite.shape
    assert np.abs(micro - lite).max() <= 4 * step + 1e-6
    assert np.abs(probabilities(micro) - probabilities(lite)).mean() <= INT8_MEAN_PROB_TOL


def test_a_broken_state_is_caught(built: dict[str, Any]) -> None:
    """The int8 comparison has teeth: the same runner with its state reset before every call (a device that
    forgets to copy the state back) or with the state copied back off by one int8 step (a scale mismatch)
    misses the tolerances by far."""
    from wakeword.scoring import probabilities
    from wakeword.stream_export import StreamRunner, call_ends
    from wakeword.tflite_runtime import TFLiteScorer

    class Forgetful(StreamRunner):
        def _invoke(self, frames_q: np.ndarray) -> np.ndarray:
            self.reset()
            return super()._invoke(frames_q)

    class Shifted(StreamRunner):
        def _invoke(self, frames_q: np.ndarray) -> np.ndarray:
            out = super()._invoke(frames_q)
            self._state = [np.clip(s.astype(np.int16) + 8, -128, 127).astype(np.int8) for s in self._state]
            return out

    rec = built["recording"]
    ends = call_ends(rec.shape[0] // 2, 2)
    keep = ends >= FRAMES
    pw = probabilities(TFLiteScorer(built["window"]).logits(np.stack([rec[e - FRAMES : e] for e in ends[keep]])))
    for runner in (Forgetful(built["stream"]), Shifted(built["stream"])):
        diff = np.abs(probabilities(runner.run(rec)[keep]) - pw)
        assert diff.max() > 3 * INT8_PROB_TOL and diff.mean() > 3 * INT8_MEAN_PROB_TOL, type(runner).__name__


def test_arena_is_the_measured_minimum(built: dict[str, Any]) -> None:
    from wakeword.size import arena_allocates

    arena = built["arena"]
    assert arena % 16 == 0
    assert arena_allocates(built["stream"], arena)
    assert not arena_allocates(built["stream"], int(arena * 0.9))


def test_runner_needs_no_torch_and_steps_like_run(built: dict[str, Any]) -> None:
    from _support import TORCH_BLOCKER

    from wakeword.stream_export import StreamRunner, stream_scores

    want = stream_scores(built["stream"], built["recording"])
    runner = StreamRunner(built["stream"])
    stepped = np.stack([runner.step(built["recording"][2 * i : 2 * i + 2]) for i in range(40)])
    np.testing.assert_array_equal(stepped, want[:40])
    runner.reset()
    np.testing.assert_array_equal(runner.run(built["recording"][:81]), want[:40])  # a partial call is dropped

    code = TORCH_BLOCKER + (
        "import json\nimport numpy as np\n"
        "from wakeword.stream_export import stream_scores\n"
        f"logits = stream_scores({str(built['stream'])!r}, np.load({str(built['dir'] / 'recording.npy')!r}))\n"
        "loaded = [k for k, v in sys.modules.items() if v is not None and k.split('.')[0] == 'torch']\n"
        "assert not loaded, loaded\n"
        "print(json.dumps(logits.tolist()))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    res = subprocess.run([sys.executable, "-c", code], cwd=built["dir"], capture_output=True, text=True, timeout=300,
                         check=False, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    got = np.asarray(json.loads(res.stdout.strip().splitlines()[-1]), dtype=np.float32)
    np.testing.assert_array_equal(got, want)


def test_report_counts_compute_by_hand(built: dict[str, Any]) -> None:
    rep = built["size"]
    # stem 8 x (3 frames x 16 bins); per block depthwise 8 x 3 + pointwise 8 x 8; head 2 x 8
    assert rep["macs_per_call"] == 8 * 3 * BINS + 3 * (8 * 3 + 8 * 8) + 2 * 8
    assert rep["calls_per_second"] == 50.0 and rep["frames_per_call"] == 2
    assert rep["macs_per_second"] == 50 * rep["macs_per_call"]
    assert rep["window_macs_per_second"] == 10 * rep["window_macs_per_window"]
    assert rep["compute_ratio"] == round(rep["window_macs_per_second"] / rep["macs_per_second"], 2)
    assert rep["flash_bytes"] == Path(built["stream"]).stat().st_size
    assert rep["state_bytes"] == BINS + 8 * 14 and rep["receptive_field_frames"] == 31


def test_manifest_describes_the_device_interface(built: dict[str, Any]) -> None:
    from wakeword.stream_export import StreamRunner

    man = built["manifest"]
    iface = StreamRunner(built["stream"]).interface
    assert man["model"] == "stream_model.tflite" and man["frames_per_call"] == 2 and man["warmup_calls"] == 15
    assert man["tensor_arena_size"] == built["arena"] and man["state_bytes"] == iface.state_bytes
    assert [t["shape"] for t in man["inputs"]] == [[1, 2, BINS], [1, 1, 1, BINS], [1, 2, 1, 8], [1, 4, 1, 8],
                                                   [1, 8, 1, 8]]
    assert [t["shape"] for t in man["outputs"]] == [[1, 2]] + [t["shape"] for t in man["inputs"][1:]]
    assert man["inputs"][1:] == man["outputs"][1:]  # same scale and zero point: copy back byte for byte
    json.dumps(man)


def test_deployment_fails_on_a_broken_stream(built: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import copy

    from wakeword import stream_export
    from wakeword.stream_export import StreamExportError, stream_deployment

    monkeypatch.setattr(stream_export, "convert_stream_tflite_int8", lambda *a, **k: built["arena"])
    args = (built["model"], None, built["recording"], built["stream"], built["window"], FRAMES, 10.0, 100, THRESHOLD)
    bad = copy.deepcopy(built["cmp"])
    bad["float"]["max_abs_logit_diff"] = 0.3
    monkeypatch.setattr(stream_export, "compare_stream_window", lambda *a, **k: bad)
    with pytest.raises(StreamExportError, match="float streaming model differs .* 0.3 logits"):
        stream_deployment(*args)
    monkeypatch.setattr(stream_export, "compare_stream_window", lambda *a, **k: built["cmp"])
    with pytest.raises(StreamExportError, match="agrees with the int8 window model on"):
        stream_deployment(*args, min_decision_agreement=1.01)


def test_rejects_window_models_and_short_calibration(tmp_path: Path) -> None:
    from wakeword.stream_export import convert_stream_tflite_int8

    path = tmp_path / "s.tflite"
    ds_tcn = build_model(ModelParams(arch="ds_tcn", ds_tcn={"channels": 8, "blocks": 1}), BINS, FRAMES)
    with pytest.raises(TypeError, match="stream_tcn"):
        convert_stream_tflite_int8(ds_tcn, np.zeros((4, FRAMES, BINS), np.float32), path)
    model = build_model(ModelParams(arch="stream_tcn", stream_tcn=KNOBS), BINS, FRAMES).eval()
    with pytest.raises(ValueError, match="32 frames"):  # 15 warm-up calls + 1 observed, 2 frames each
        convert_stream_tflite_int8(model, np.zeros((4, 31, BINS), np.float32), path)
    assert not path.exists() and not list(tmp_path.iterdir())
