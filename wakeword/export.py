"""Export a trained detector: float ONNX, int8 ONNX, full-int8 TFLite and float TFLite.

Why each format: ONNX is the portable float reference (checked against PyTorch); int8 ONNX shows what
static quantisation costs without a TFLite toolchain; the full-int8 ``.tflite`` is the deployed artefact
(int8 input and output, every op a TFLite-Micro builtin) whose bytes and arena the size report measures;
the float ``.tflite`` gives the float row of that report.

Heavy toolchains (onnx, onnxruntime, litert-torch, torchao) are imported inside the functions that need them
so importing this module stays cheap. Every output is written to a temp file in the target directory and
moved into place with ``os.replace``, so an interrupted export never leaves a half-written model behind.

Conversions work on a deep copy in eval mode: the caller's model (training flag, weights) is never changed.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from wakeword.size import captured_native_stderr

log = logging.getLogger(__name__)

INPUT_NAME = "features"
OUTPUT_NAME = "logits"
#: Windows per ONNX Runtime call when the ONNX model has a dynamic batch axis.
ORT_BATCH = 256


class ExportError(RuntimeError):
    """An export or conversion failed, or its result does not meet the deployment contract."""


class ExportMismatchError(ExportError):
    """An exported model's outputs differ from PyTorch's by more than the allowed tolerance."""


@contextlib.contextmanager
def _atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; move it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
        stray = tmp.with_name(tmp.name + ".data")  # ONNX external data, should never be written
        if stray.exists():
            stray.unlink()


def _frozen(model: nn.Module) -> nn.Module:
    """A float32 CPU eval-mode copy (dropout off, BatchNorm on running stats) that can be changed freely."""
    m = copy.deepcopy(model).to("cpu").float().eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


def _check_windows(arr: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(arr)
    if x.ndim != 3 or x.shape[0] < 1:
        raise ValueError(f"{what} must be a non-empty (N, frames, n_mels) array, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"{what} must be floating point log-mel features, got dtype {x.dtype}")
    x = x.astype(np.float32, copy=False)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} contains NaN or inf")
    return x


def _torch_logits(model: nn.Module, x: np.ndarray, batch: int = 512) -> np.ndarray:
    outs = []
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            outs.append(model(torch.from_numpy(np.ascontiguousarray(x[i : i + batch]))).numpy())
    return np.concatenate(outs).astype(np.float32)


# --------------------------------------------------------------------------------------------------- ONNX


def export_onnx(model: nn.Module, window_frames: int, n_features: int, path: Path) -> None:
    """Write a single-file ONNX model: input ``features`` (batch, frames, n_mels) -> output ``logits`` (batch, 2).

    Uses the torch 2.13 dynamo exporter with a dynamic batch axis (checked to work for ``DSTCN``); if the
    dynamic export fails it falls back to a static batch of 1 and logs a warning. Weights are embedded
    (``external_data=False``) so the file is self-contained. The written model passes ``onnx.checker``.
    """
    import onnx

    path = Path(path)
    m = _frozen(model)
    sample = torch.zeros(2, int(window_frames), int(n_features))
    with _atomic_output(path) as tmp:
        try:
            batch = torch.export.Dim("batch", min=1, max=1 << 16)
            torch.onnx.export(
                m, (sample,), str(tmp), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                dynamic_shapes=({0: batch},), external_data=False, dynamo=True, verbose=False,
            )
        except Exception as exc:  # noqa: BLE001 - any exporter failure -> try the static form
            log.warning("%s: dynamic-batch ONNX export failed (%s); exporting with a static batch of 1", path, exc)
            try:
                torch.onnx.export(
                    m, (sample[:1],), str(tmp), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                    external_data=False, dynamo=True, verbose=False,
                )
            except Exception as exc2:
                raise ExportError(f"{path}: ONNX export failed: {exc2}") from exc2
        try:
            onnx.checker.check_model(str(tmp), full_check=True)
        except Exception as exc:
            raise ExportError(f"{path}: exported ONNX model is invalid: {exc}") from exc
        proto = onnx.load(str(tmp), load_external_data=False)
        names_in = [i.name for i in proto.graph.input]
        names_out = [o.name for o in proto.graph.output]
        if names_in != [INPUT_NAME] or names_out != [OUTPUT_NAME]:
            raise ExportError(f"{path}: ONNX I/O names are {names_in} -> {names_out}, expected "
                              f"['{INPUT_NAME}'] -> ['{OUTPUT_NAME}']")
    log.info("%s: ONNX written (%d bytes)", path, path.stat().st_size)


def _ort_session(path: Path):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: ONNX model file not found")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ExportError(f"{path}: onnxruntime cannot load the model: {exc}") from exc


def _ort_logits(session, x: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    inp = session.get_inputs()[0]
    fixed = inp.shape[0] if isinstance(inp.shape[0], int) else None
    step = fixed or ORT_BATCH
    outs = []
    for i in range(0, x.shape[0], step):
        chunk = np.ascontiguousarray(x[i : i + step])
        k = chunk.shape[0]
        if fixed and k < fixed:
            chunk = np.concatenate([chunk, np.zeros((fixed - k, *chunk.shape[1:]), np.float32)])
        outs.append(session.run(None, {inp.name: chunk})[0][:k])
    return np.concatenate(outs).astype(np.float32)


def onnx_logits(path: Path, inputs: np.ndarray) -> np.ndarray:
    """Logits of ``inputs`` (N, frames, n_mels) from an ONNX model (float or QDQ int8) via onnxruntime."""
    return _ort_logits(_ort_session(Path(path)), _check_windows(inputs, "inputs"))


def check_onnx(model: nn.Module, path: Path, inputs: np.ndarray, atol: float) -> float:
    """Max |logit difference| between onnxruntime on ``path`` and PyTorch on ``model``, over ``inputs``.

    Why: the ONNX file is only a useful reference if it computes what the trained model computes. Raises
    :class:`ExportMismatchError` naming the file when the difference exceeds ``atol`` (or is not finite).
    """
    path = Path(path)
    x = _check_windows(inputs, "inputs")
    got = _ort_logits(_ort_session(path), x)
    want = _torch_logits(_frozen(model), x)
    if got.shape != want.shape:
        raise ExportMismatchError(f"{path}: ONNX output shape {got.shape} != PyTorch output shape {want.shape}")
    diff = float(np.max(np.abs(got - want)))
    if not np.isfinite(diff) or diff > atol:
        raise ExportMismatchError(
            f"{path}: ONNX logits differ from PyTorch by up to {diff:.3g} over {x.shape[0]} windows "
            f"(allowed {atol:.3g})"
        )
    log.info("%s: ONNX matches PyTorch, max |diff| %.3g", path, diff)
    return diff


def quantize_onnx_int8(float_path: Path, int8_path: Path, calibration: np.ndarray) -> None:
    """Static QDQ int8 ONNX from calibration windows (onnxruntime.quantization, MinMax calibration).

    Weights: int8 symmetric, per output channel (the depthwise convs have very different per-channel ranges,
    where per-tensor scales lose most of the resolution). Activations: int8 asymmetric per tensor. The float
    model is first run through ``quant_pre_process`` (shape inference + graph optimisation) so BatchNorm and
    friends are fused before quantisation; if that step fails the raw model is quantised instead.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    float_path, int8_path = Path(float_path), Path(int8_path)
    if not float_path.is_file():
        raise FileNotFoundError(f"{float_path}: float ONNX model file not found")
    calib = _check_windows(calibration, "calibration")
    session = _ort_session(float_path)
    inp = session.get_inputs()[0]
    fixed = inp.shape[0] if isinstance(inp.shape[0], int) else None
    step = fixed or 64
    del session

    class _Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._i = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self._i >= calib.shape[0]:
                return None
            chunk = calib[self._i : self._i + step]
            self._i += step
            if fixed and chunk.shape[0] < fixed:
                return None
            return {inp.name: np.ascontiguousarray(chunk)}

        def rewind(self) -> None:
            self._i = 0

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="wakeword-quant-") as work:
        pre = Path(work) / "pre.onnx"
        source = float_path
        try:
            with captured_native_stderr():
                quant_pre_process(str(float_path), str(pre), skip_symbolic_shape=False)
            source = pre
        except Exception as exc:  # noqa: BLE001 - pre-processing is an optimisation, not a requirement
            log.warning("%s: quant_pre_process failed (%s); quantising the raw model", float_path, exc)
        with _atomic_output(int8_path) as tmp:
            try:
                with captured_native_stderr():
                    quantize_static(
                        str(source), str(tmp), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, use_external_data_format=False,
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
                    )
            except Exception as exc:
                raise ExportError(f"{int8_path}: static int8 quantisation of {float_path} failed: {exc}") from exc
            _ort_session(tmp)  # must load and be runnable before it is published
    log.info("%s: int8 QDQ ONNX written (%d bytes, %.1f s)", int8_path, int8_path.stat().st_size,
             time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------------- TFLite


@contextlib.contextmanager
def _quiet_litert() -> Iterator[list[str]]:
    """Turn off litert-torch's rich progress bars and capture the converter's C++ log lines on fd 2."""
    import litert_torch

    old = litert_torch.config.show_progress
    litert_torch.config.show_progress = False
    try:
        with captured_native_stderr() as captured:
            yield captured
    finally:
        litert_torch.config.show_progress = old


def _verify_tflite(path: Path, final: Path, want_int8: bool) -> None:
    """Check I/O dtypes and that TFLite-Micro allocates and invokes the model (all ops are Micro builtins)."""
    from ai_edge_litert.interpreter import Interpreter

    from wakeword.size import ArenaError, measure_arena_bytes, tflite_op_names

    interp = Interpreter(model_path=str(path))
    want = np.int8 if want_int8 else np.float32
    for what, details in (("input", interp.get_input_details()), ("output", interp.get_output_details())):
        dtypes = [np.dtype(d["dtype"]) for d in details]
        if dtypes != [np.dtype(want)]:
            raise ExportError(f"{final}: {what} tensors are {dtypes}, expected one {np.dtype(want)} tensor")
    ops = tflite_op_names(path)
    custom = [o for o in ops if o.startswith("CUSTOM")]
    if custom:
        raise ExportError(f"{final}: uses custom ops {custom}; TFLite-Micro needs builtins only")
    try:
        measure_arena_bytes(path, max_bytes=8 << 20)
    except ArenaError as exc:
        raise ExportError(f"{final}: TFLite-Micro cannot run the converted model (ops {sorted(set(ops))}): {exc}") from exc


def _drop_identity_dropout(gm: torch.fx.GraphModule) -> None:
    """Remove eval-mode dropout nodes (identities) that follow an op sharing its input's int8 scale.

    Why: ``torch.export`` keeps ``aten.dropout(x, p, train=False)``. After an op that shares its input's scale
    (a global mean, a slice, a flatten) PT2E observes the dropout's input and output edges with different
    observers, and the TFLite converter drops the identity together with the requantisation between them: the
    classifier's bias is then scaled for the wrong input scale (constant logits, seen with the zoo's
    ``head(dropout(mean(...)))``). Without the node both sides share one observer. A dropout after a conv, ReLU
    or other op with its own observer (ds_tcn's blocks) sees identical data on both edges and is kept, so
    those graphs convert exactly as before.
    """
    for node in list(gm.graph.nodes):
        if node.op != "call_function" or node.target not in (torch.ops.aten.dropout.default,
                                                             torch.ops.aten.dropout_.default):
            continue
        train = node.args[2] if len(node.args) > 2 else node.kwargs.get("train", False)
        src = node.args[0]
        shares = (isinstance(src, torch.fx.Node) and src.op == "call_function" and hasattr(src.target, "_schema")
                  and src.target._schema.name.split("::")[-1].rstrip("_") in _SHARED
                  and src.target._schema.name.split("::")[-1].rstrip("_") not in _ACTIVATIONS)
        if not train and shares:
            node.replace_all_uses_with(src)
            gm.graph.erase_node(node)
    gm.graph.lint()
    gm.recompile()


def _export_for_calibration(m: nn.Module, frames: int, n_feat: int) -> tuple[nn.Module, int]:
    """``torch.export`` the model with a dynamic batch so calibration runs in batches of
    :data:`CALIB_BATCH` (about 5x faster than one window per forward with the histogram observers); the
    final conversion still traces a batch of 1. Falls back to a static batch of 1 if dynamic export fails.
    """
    try:
        batch = torch.export.Dim("batch", min=1, max=1 << 16)
        ep = torch.export.export(m, (torch.zeros(2, frames, n_feat),), dynamic_shapes=({0: batch},))
        gm, step = ep.module(), CALIB_BATCH
    except Exception as exc:  # noqa: BLE001
        log.warning("dynamic-batch torch.export failed (%s); calibrating one window at a time", exc)
        gm, step = torch.export.export(m, (torch.zeros(1, frames, n_feat),)).module(), 1
    _drop_identity_dropout(gm)  # type: ignore[arg-type]
    return gm, step


#: Calibration windows per forward pass during PT2E calibration.
CALIB_BATCH = 64

#: Output quantisation TFLite's int8 kernels require of these ops (scale, zero point).
_FIXED_QPARAMS = {"sigmoid": (1.0 / 256.0, -128), "tanh": (1.0 / 128.0, 0)}
#: Element-wise ops litert-torch's PT2EQuantizer leaves in float: int8 in, int8 out (own observer).
_ELEMENTWISE = ("add", "sub", "mul", "hardswish", "neg")
#: Activation clamps: share the input's scale when left unannotated, but usually fused into the op before.
_ACTIVATIONS = ("relu", "relu6", "hardtanh")
#: Ops whose int8 output can share the input's scale (pooling, activation clamps, layout and slicing).
_SHARED = ("avg_pool2d", "max_pool2d", *_ACTIVATIONS, "select", "slice", "squeeze", "unsqueeze", "view",
           "reshape", "permute", "transpose", "flatten", "mean", "clone", "constant_pad_nd", "cat")


def _annotate_remaining_ops(gm: torch.fx.GraphModule, config: object) -> None:
    """Annotate the ops litert-torch's quantizer leaves in float so the whole graph converts to int8.

    Why: ``PT2EQuantizer`` annotates conv/linear (+ReLU), pooling and some add/mul/sigmoid patterns only; an
    unannotated op becomes DEQUANTIZE -> float op -> QUANTIZE in the ``.tflite`` (residual adds, the gates of
    recurrent cells, hard-swish, tanh). This pass runs after the standard annotation and only touches nodes
    it left unannotated, so a graph the standard quantizer fully annotates (``ds_tcn``) is unchanged.
    Sigmoid and tanh get the fixed output scales TFLite's int8 kernels require; layout, slicing and pooling
    ops share their input's scale.
    """
    from torchao.quantization.pt2e.quantizer import (
        FixedQParamsQuantizationSpec,
        QuantizationAnnotation,
        SharedQuantizationSpec,
    )

    act = config.input_activation  # type: ignore[attr-defined]
    #: graph input -> its first annotated edge: every later reader of the input shares that edge's int8
    #: qparams, so the model input stays one int8 tensor (a second observer would leave it float)
    input_edges: dict[torch.fx.Node, tuple[torch.fx.Node, torch.fx.Node]] = {}

    def annotated_output(node: object) -> bool:
        ann = getattr(node, "meta", {}).get("quantization_annotation")
        return ann is not None and ann._annotated and ann.output_qspec is not None

    def input_spec(a: torch.fx.Node, node: torch.fx.Node) -> object:
        if annotated_output(a):
            return SharedQuantizationSpec(a)
        if a.op != "placeholder":
            return act
        if a in input_edges:
            return SharedQuantizationSpec(input_edges[a])
        input_edges[a] = (a, node)
        return act

    for node in gm.graph.nodes:
        if node.op != "call_function" or not hasattr(node.target, "_schema"):
            continue
        ann = node.meta.get("quantization_annotation")
        if ann is not None and ann._annotated:
            continue
        name = node.target._schema.name.split("::")[-1].rstrip("_")
        inputs = [a for a in node.args if isinstance(a, torch.fx.Node)]
        if name == "cat" and node.args and isinstance(node.args[0], (list, tuple)):
            inputs = [a for a in node.args[0] if isinstance(a, torch.fx.Node)]
        val = node.meta.get("val")
        if not inputs or not isinstance(val, torch.Tensor) or not val.is_floating_point():
            continue
        if name in _SHARED and inputs[0].op == "placeholder" and not annotated_output(inputs[0]):
            # a shape or reduction op reading the model input (the temporal models' first reshape,
            # model.subtract_window_mean's MEAN): int8 in, and out with the input's qparams
            in_map = {a: input_spec(a, node) for a in inputs}
            shared = SharedQuantizationSpec((inputs[0], node))
            node.meta["quantization_annotation"] = QuantizationAnnotation(
                input_qspec_map=in_map, output_qspec=shared, _annotated=True)
            continue
        # an input that already has int8 qparams keeps them (no requantisation op in between)
        in_map = {a: input_spec(a, node) for a in inputs}
        if name in _FIXED_QPARAMS:
            scale, zero_point = _FIXED_QPARAMS[name]
            out = FixedQParamsQuantizationSpec(dtype=torch.int8, scale=scale, zero_point=zero_point,
                                               quant_min=-128, quant_max=127, qscheme=torch.per_tensor_affine)
            node.meta["quantization_annotation"] = QuantizationAnnotation(
                input_qspec_map={inputs[0]: in_map[inputs[0]]}, output_qspec=out, _annotated=True)
        elif name in _ELEMENTWISE:
            users = list(node.users)
            relu = users[0] if len(users) == 1 and users[0].op == "call_function" and users[0].target in (
                torch.ops.aten.relu.default, torch.ops.aten.relu_.default) else None
            if relu is not None and relu.meta.get("quantization_annotation") is None:
                # fused like the quantizer's add+relu: int8 only after the ReLU (TFLite fuses it into the op)
                node.meta["quantization_annotation"] = QuantizationAnnotation(input_qspec_map=in_map,
                                                                              _annotated=True)
                relu.meta["quantization_annotation"] = QuantizationAnnotation(output_qspec=act, _annotated=True)
            else:
                node.meta["quantization_annotation"] = QuantizationAnnotation(
                    input_qspec_map=in_map, output_qspec=act, _annotated=True)
        elif name in _SHARED and annotated_output(inputs[0]):
            shared = SharedQuantizationSpec(inputs[0])
            node.meta["quantization_annotation"] = QuantizationAnnotation(
                input_qspec_map={a: shared for a in inputs}, output_qspec=shared, _annotated=True)


def _int8_quantizer():  # type: ignore[no-untyped-def]
    """litert-torch's ``PT2EQuantizer`` (int8 symmetric per-channel weights, int8 per-tensor activations) plus
    :func:`_annotate_remaining_ops`."""
    from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
    from litert_torch.quantize.pt2e_quantizer_utils import propagate_annotation

    class _FullInt8Quantizer(PT2EQuantizer):  # type: ignore[misc]
        def annotate(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            model = super().annotate(model)
            _annotate_remaining_ops(model, self.global_config)
            propagate_annotation(model)
            return model

    config = get_symmetric_quantization_config(is_per_channel=True, is_dynamic=False)
    return _FullInt8Quantizer().set_global(config)


def convert_tflite_int8(model: nn.Module, calibration: np.ndarray, path: Path) -> None:
    """Full-int8 ``.tflite`` (int8 weights, activations, input and output) via litert-torch PT2E, batch 1.

    Recipe: ``torch.export`` -> litert-torch ``PT2EQuantizer`` with ``get_symmetric_quantization_config(
    is_per_channel=True, is_dynamic=False)`` (int8 symmetric per-channel weights, int8 per-tensor
    activations from histogram observers) -> ``prepare_pt2e`` -> forward passes over all calibration windows
    -> ``convert_pt2e(fold_quantize=False)`` -> ``litert_torch.convert(qm, (x,), quant_config=QuantConfig(
    pt2e_quantizer=q))`` with ``x`` of shape (1, frames, n_mels). With a static quantizer litert-torch 0.10
    already emits int8 input and output tensors (no extra option needed). Before the file is published it is
    checked to have one int8 input and one int8 output and to allocate and invoke in TFLite-Micro (so every
    op is a Micro builtin).

    For the other architectures of the model zoo two additions keep every op int8 (a graph the stock quantizer
    handles, such as ``ds_tcn``, converts byte for byte as before): :func:`_annotate_remaining_ops` quantizes
    the ops the stock quantizer leaves in float (residual adds, recurrent gates, tanh, hard-swish, pooling,
    slicing) and :func:`_drop_identity_dropout` removes eval-mode dropout after scale-sharing ops.
    """
    path = Path(path)
    calib = _check_windows(calibration, "calibration")
    m = _frozen(model)
    frames, n_feat = calib.shape[1], calib.shape[2]
    x = torch.zeros(1, frames, n_feat)
    t0 = time.perf_counter()
    with captured_native_stderr():  # torchao/jax/absl print import-time chatter on fd 2
        import litert_torch
        from litert_torch.quantize.quant_config import QuantConfig
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    with _quiet_litert() as captured:
        try:
            exported, step = _export_for_calibration(m, frames, n_feat)
            quantizer = _int8_quantizer()
            with contextlib.redirect_stdout(io.StringIO()):  # the quantizer print()s notes about ReLU patterns
                prepared = prepare_pt2e(exported, quantizer)
            with torch.no_grad():
                for i in range(0, calib.shape[0], step):
                    prepared(torch.from_numpy(np.ascontiguousarray(calib[i : i + step])))
            quantized = convert_pt2e(prepared, fold_quantize=False)
            edge = litert_torch.convert(quantized, (x,), quant_config=QuantConfig(pt2e_quantizer=quantizer))
        except Exception as exc:
            raise ExportError(f"{path}: int8 TFLite conversion failed: {exc}") from exc
        with _atomic_output(path) as tmp:
            edge.export(str(tmp))
            _verify_tflite(tmp, path, want_int8=True)
    log.debug("litert-torch log:\n%s", captured[0] if captured else "")
    log.info("%s: int8 TFLite written (%d bytes, %d calibration windows, %.1f s)", path, path.stat().st_size,
             calib.shape[0], time.perf_counter() - t0)


def convert_tflite_float(model: nn.Module, window_frames: int, n_features: int, path: Path) -> None:
    """Float32 ``.tflite`` (batch 1) via litert-torch: the float row of the size report and a reference."""
    path = Path(path)
    m = _frozen(model)
    x = torch.zeros(1, int(window_frames), int(n_features))
    t0 = time.perf_counter()
    with captured_native_stderr():
        import litert_torch
    with _quiet_litert():
        try:
            edge = litert_torch.convert(m, (x,))
        except Exception as exc:
            raise ExportError(f"{path}: float TFLite conversion failed: {exc}") from exc
        with _atomic_output(path) as tmp:
            edge.export(str(tmp))
            _verify_tflite(tmp, path, want_int8=False)
    log.info("%s: float TFLite written (%d bytes, %.1f s)", path, path.stat().st_size, time.perf_counter() - t0)
