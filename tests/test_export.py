"""Export chain: ONNX (float, int8), full-int8 and float TFLite, torch-free scoring, arena and size report.

One small DS-TCN is trained for a few dozen steps on a separable synthetic problem (so logits are not
constant and argmax agreement means something), its CMVN folded in (the deployed model takes raw log-mel),
and every artefact is built once per module to keep the file well under 90 s.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from wakeword.export import (
    ExportError,
    ExportMismatchError,
    check_onnx,
    convert_tflite_float,
    convert_tflite_int8,
    export_onnx,
    onnx_logits,
    quantize_onnx_int8,
)
from wakeword.models import DSTCN, fold_cmvn
from wakeword.size import (
    ArenaError,
    arena_allocates,
    detector_buffer_bytes,
    measure_arena_bytes,
    size_report,
    tflite_op_names,
)
from wakeword.tflite_runtime import TFLiteModelError, TFLiteScorer

FRAMES, MELS = 151, 40
REPO = Path(__file__).resolve().parents[1]


def _raw_windows(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Log-mel-like raw features (per-bin offsets, not normalised); positives carry a band/time bump."""
    bin_mean = np.linspace(-9.0, -3.0, MELS, dtype=np.float32)
    x = bin_mean[None, None, :] + rng.normal(0.0, 1.5, size=(n, FRAMES, MELS)).astype(np.float32)
    y = rng.integers(0, 2, size=n)
    for i in np.flatnonzero(y):
        start = int(rng.integers(20, 80))
        x[i, start : start + 50, 10:22] += 3.0
    return x.astype(np.float32), y.astype(np.int64)


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def trained() -> dict[str, object]:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x_train, y_train = _raw_windows(rng, 384)
    mean = x_train.reshape(-1, MELS).mean(axis=0)
    std = x_train.reshape(-1, MELS).std(axis=0)
    model = DSTCN(MELS, channels=16, blocks=2, kernel_size=5, dropout=0.1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    xn = torch.from_numpy((x_train - mean) / std)
    yt = torch.from_numpy(y_train)
    model.train()
    for step in range(48):
        idx = torch.from_numpy(rng.integers(0, len(xn), size=32))
        loss = torch.nn.functional.cross_entropy(model(xn[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    x_test, y_test = _raw_windows(rng, 240)
    with torch.no_grad():
        acc = (model(torch.from_numpy((x_test - mean) / std)).argmax(1).numpy() == y_test).mean()
    assert acc > 0.8, f"synthetic problem not learnt (accuracy {acc:.2f}); export checks would be vacuous"
    deployed = fold_cmvn(model, mean, std)
    calib, _ = _raw_windows(rng, 128)
    return {"model": model, "deployed": deployed, "mean": mean, "std": std,
            "x_test": x_test, "calib": calib}


@pytest.fixture(scope="module")
def artefacts(trained: dict[str, object], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("export")
    deployed = trained["deployed"]
    calib = trained["calib"]
    assert isinstance(deployed, torch.nn.Module) and isinstance(calib, np.ndarray)
    paths = {k: d / name for k, name in [("onnx", "model.onnx"), ("onnx_int8", "model_int8.onnx"),
                                         ("tflite_int8", "model_int8.tflite"), ("tflite_float", "model.tflite")]}
    export_onnx(deployed, FRAMES, MELS, paths["onnx"])
    quantize_onnx_int8(paths["onnx"], paths["onnx_int8"], calib)
    convert_tflite_int8(deployed, calib, paths["tflite_int8"])
    convert_tflite_float(deployed, FRAMES, MELS, paths["tflite_float"])
    paths["dir"] = d
    return paths


def _torch_logits(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(torch.from_numpy(x)).numpy()


def test_fold_cmvn_matches_normalised_input(trained: dict[str, object]) -> None:
    model, deployed, x = trained["model"], trained["deployed"], trained["x_test"]
    mean, std = trained["mean"], trained["std"]
    assert isinstance(model, torch.nn.Module) and isinstance(deployed, torch.nn.Module)
    assert isinstance(x, np.ndarray) and isinstance(mean, np.ndarray) and isinstance(std, np.ndarray)
    want = _torch_logits(model, ((x - mean) / (std + 1e-8)).astype(np.float32))
    got = _torch_logits(deployed, x)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert np.ptp(want[:, 1] - want[:, 0]) > 1.0, "logits are nearly constant"


def test_outputs_written_atomically(artefacts: dict[str, Path]) -> None:
    names = sorted(p.name for p in artefacts["dir"].iterdir())
    assert names == ["model.onnx", "model.tflite", "model_int8.onnx", "model_int8.tflite"], names


def test_onnx_float_matches_torch(trained: dict[str, object], artefacts: dict[str, Path]) -> None:
    import onnx

    deployed, x = trained["deployed"], trained["x_test"]
    assert isinstance(deployed, torch.nn.Module) and isinstance(x, np.ndarray)
    proto = onnx.load(str(artefacts["onnx"]))
    assert [i.name for i in proto.graph.input] == ["features"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param, "batch axis should be dynamic"
    assert [d.dim_value for d in dims[1:]] == [FRAMES, MELS]
    assert check_onnx(deployed, artefacts["onnx"], x, atol=1e-4) <= 1e-4
    # a batch larger than one onnxruntime chunk goes through too
    assert onnx_logits(artefacts["onnx"], np.concatenate([x, x])).shape == (2 * len(x), 2)


def test_check_onnx_raises_on_mismatch(trained: dict[str, object], artefacts: dict[str, Path]) -> None:
    import copy

    deployed, x = trained["deployed"], trained["x_test"]
    assert isinstance(deployed, torch.nn.Module) and isinstance(x, np.ndarray)
    perturbed = copy.deepcopy(deployed)
    with torch.no_grad():
        perturbed.head.bias.add_(torch.tensor([1e-2, -1e-2]))
    with pytest.raises(ExportMismatchError, match="model.onnx"):
        check_onnx(perturbed, artefacts["onnx"], x[:16], atol=1e-4)


def test_onnx_int8_agrees(trained: dict[str, object], artefacts: dict[str, Path]) -> None:
    import onnx

    deployed, x = trained["deployed"], trained["x_test"]
    assert isinstance(deployed, torch.nn.Module) and isinstance(x, np.ndarray)
    ops = {n.op_type for n in onnx.load(str(artefacts["onnx_int8"])).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops
    want = _torch_logits(deployed, x)
    got = onnx_logits(artefacts["onnx_int8"], x)
    agree = float((got.argmax(1) == want.argmax(1)).mean())
    assert agree >= 0.95, agree
    assert artefacts["onnx_int8"].stat().st_size < artefacts["onnx"].stat().st_size


def test_tflite_int8_io_and_agreement(trained: dict[str, object], artefacts: dict[str, Path]) -> None:
    deployed, x = trained["deployed"], trained["x_test"]
    assert isinstance(deployed, torch.nn.Module) and isinstance(x, np.ndarray)
    scorer = TFLiteScorer(artefacts["tflite_int8"])
    assert scorer.is_int8
    assert scorer.input_shape == (1, FRAMES, MELS)
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(artefacts["tflite_int8"]))
    assert interp.get_input_details()[0]["dtype"] == np.int8
    assert interp.get_output_details()[0]["dtype"] == np.int8
    assert not [op for op in tflite_op_names(artefacts["tflite_int8"]) if op.startswith("CUSTOM")]
    want = _torch_logits(deployed, x)
    got = scorer.logits(x)
    assert got.shape == want.shape and got.dtype == np.float32
    agree = float((got.argmax(1) == want.argmax(1)).mean())
    assert agree >= 0.95, agree
    prob_diff = float(np.abs(_softmax(got)[:, 1] - _softmax(want)[:, 1]).mean())
    assert prob_diff < 0.05, prob_diff
    # one-at-a-time and many-at-once scoring are the same computation
    np.testing.assert_array_equal(scorer.logits(x[:3]), got[:3])
    assert scorer.logits(x[:0]).shape == (0, 2)


def test_tflite_float_matches_torch(trained: dict[str, object], artefacts: dict[str, Path]) -> None:
    deployed, x = trained["deployed"], trained["x_test"]
    assert isinstance(deployed, torch.nn.Module) and isinstance(x, np.ndarray)
    scorer = TFLiteScorer(artefacts["tflite_float"])
    assert not scorer.is_int8
    np.testing.assert_allclose(scorer.logits(x[:64]), _torch_logits(deployed, x[:64]), atol=1e-4, rtol=0)


def test_scorer_rejects_bad_files_and_inputs(artefacts: dict[str, Path], tmp_path: Path) -> None:
    missing = tmp_path / "missing.tflite"
    with pytest.raises(TFLiteModelError, match="missing.tflite.*not found"):
        TFLiteScorer(missing)
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"\x00" * 64)
    with pytest.raises(TFLiteModelError, match="corrupt.tflite"):
        TFLiteScorer(corrupt)
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(artefacts["tflite_int8"].read_bytes()[:200])
    with pytest.raises(TFLiteModelError, match="truncated.tflite"):
        TFLiteScorer(truncated)
    with pytest.raises(ArenaError, match="corrupt.tflite"):
        measure_arena_bytes(corrupt)
    scorer = TFLiteScorer(artefacts["tflite_int8"])
    with pytest.raises(ValueError, match="shape"):
        scorer.logits(np.zeros((2, FRAMES, MELS + 1), np.float32))
    with pytest.raises(ValueError, match="NaN"):
        scorer.logits(np.full((1, FRAMES, MELS), np.nan, np.float32))


def test_failed_conversion_leaves_no_file(trained: dict[str, object], tmp_path: Path) -> None:
    deployed = trained["deployed"]
    assert isinstance(deployed, torch.nn.Module)
    target = tmp_path / "bad.tflite"
    wrong = np.zeros((4, FRAMES, MELS + 3), np.float32)  # feature count does not match the model
    with pytest.raises(ExportError, match="bad.tflite"):
        convert_tflite_int8(deployed, wrong, target)
    assert list(tmp_path.iterdir()) == []


def test_arena_is_minimal(artefacts: dict[str, Path]) -> None:
    path = artefacts["tflite_int8"]
    arena = measure_arena_bytes(path)
    assert 0 < arena < 1 << 20 and arena % 16 == 0
    assert arena_allocates(path, arena)
    assert not arena_allocates(path, int(arena * 0.9))
    with pytest.raises(ArenaError, match="model_int8.tflite"):
        measure_arena_bytes(path, max_bytes=int(arena * 0.9))
    assert measure_arena_bytes(artefacts["tflite_float"]) > arena  # float activations are 4x wider


def test_size_report_uses_exact_bytes(artefacts: dict[str, Path]) -> None:
    path = artefacts["tflite_int8"]
    buffers = detector_buffer_bytes(n_fft=512, window_frames=FRAMES, n_mels=MELS)
    assert buffers == {"audio_ring_bytes": 1024, "feature_window_bytes": FRAMES * MELS,
                       "total_bytes": 1024 + FRAMES * MELS}
    arena = 12345
    rep = size_report(path, arena, buffers)
    size = os.path.getsize(path)
    assert rep["flash_bytes"] == size == rep["c_array_bytes"]
    assert rep["flash_kb"] == round(size / 1024, 2)
    assert rep["arena_kb"] == round(arena / 1024, 2)
    assert rep["detector_buffers_kb"] == round(buffers["total_bytes"] / 1024, 2)
    assert rep["ram_bytes"] == arena + buffers["total_bytes"]
    assert rep["ram_kb"] == round((arena + buffers["total_bytes"]) / 1024, 2)
    with pytest.raises(ValueError, match="n_fft"):
        detector_buffer_bytes(0, FRAMES, MELS)


def test_tflite_runtime_imports_without_torch(artefacts: dict[str, Path]) -> None:
    code = (
        "import sys\n"
        "sys.modules['torch'] = None\n"
        "import numpy as np\n"
        "from wakeword.tflite_runtime import TFLiteScorer\n"
        "from wakeword.size import measure_arena_bytes, size_report\n"
        f"p = {str(artefacts['tflite_int8'])!r}\n"
        "s = TFLiteScorer(p)\n"
        "out = s.logits(np.zeros((3,) + s.input_shape[1:], np.float32))\n"
        "assert out.shape == (3, 2), out.shape\n"
        "assert measure_arena_bytes(p) > 0\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )
    assert res.returncode == 0, res.stderr[-3000:]
