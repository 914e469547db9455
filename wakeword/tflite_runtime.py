"""Score feature windows with a ``.tflite`` model using only numpy + ``ai-edge-litert``.

Why a separate, torch-free module: evaluation of the *deployed* int8 model (false alarms per hour on long
streams) must run the same bytes a device runs, on a host that may have no torch at all. So nothing here
imports torch or any wakeword module that does.

Quantisation follows TFLite's own reference kernels: ``q = round_half_away_from_zero(x / scale) + zero_point``
clipped to the int8 range, and outputs are dequantised as ``(q - zero_point) * scale``.

Batching: a model converted by litert-torch has a static batch of 1 (its RESHAPE ops carry a constant shape,
and litert-torch 0.10 cannot convert this model with a dynamic batch), so windows are scored one invoke
each, which with the default XNNPACK delegate is tens of thousands of windows per second for the default
model. A model whose input batch is dynamic (``shape_signature[0] == -1``) is scored in chunks of
:data:`CHUNK` windows after a one-off resize; if that resize fails the scorer falls back to the loop.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from wakeword.size import captured_native_stderr  # torch-free, like this module

log = logging.getLogger(__name__)

#: Windows per invoke when the model's batch axis is dynamic.
CHUNK = 256


class TFLiteModelError(ValueError):
    """The ``.tflite`` file is missing, corrupt, or not a (frames, n_mels) -> 2-logit model."""


#: Windows quantised per numpy pass (keeps the float temporaries in cache; ~8x faster than one big pass).
QUANT_BLOCK = 256


def _quantize(x: np.ndarray, scale: float, zero_point: int, dtype: Any) -> np.ndarray:
    """TFLite's float -> int8: round half away from zero (``TfLiteRound``), add zero point, saturate."""
    info = np.iinfo(dtype)
    out = np.empty(x.shape, dtype=dtype)
    for i in range(0, x.shape[0], QUANT_BLOCK):
        r = x[i : i + QUANT_BLOCK].astype(np.float32) / np.float32(scale)
        r += np.copysign(np.float32(0.5), r)
        np.trunc(r, out=r)
        r += np.float32(zero_point)
        np.clip(r, info.min, info.max, out=r)
        out[i : i + QUANT_BLOCK] = r
    return out


class TFLiteScorer:
    """Logits of many ``(frames, n_mels)`` windows from one ``.tflite`` model (float32 or int8 I/O)."""

    def __init__(self, path: str | os.PathLike[str], num_threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        if not self.path.is_file():
            raise TFLiteModelError(f"{self.path}: TFLite model file not found")
        data = self.path.read_bytes()
        if len(data) < 8 or data[4:8] != b"TFL3":
            raise TFLiteModelError(f"{self.path}: not a TFLite flatbuffer (no 'TFL3' file identifier), corrupt?")
        self._data = data
        self._num_threads = int(num_threads)
        try:
            with captured_native_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate" on fd 2
                self._interp = Interpreter(model_content=data, num_threads=self._num_threads)
                self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise TFLiteModelError(f"{self.path}: cannot load the TFLite model: {exc}") from exc
        inputs = self._interp.get_input_details()
        outputs = self._interp.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise TFLiteModelError(
                f"{self.path}: expected 1 input and 1 output tensor, found {len(inputs)} and {len(outputs)}"
            )
        self._in = inputs[0]
        self._out = outputs[0]
        shape = tuple(int(d) for d in self._in["shape"])
        if len(shape) != 3:
            raise TFLiteModelError(f"{self.path}: input must be (batch, frames, n_mels), got shape {shape}")
        out_shape = tuple(int(d) for d in self._out["shape"])
        if len(out_shape) != 2 or out_shape[1] != 2:
            raise TFLiteModelError(f"{self.path}: output must be (batch, 2) logits, got shape {out_shape}")
        self._in_dtype = np.dtype(self._in["dtype"])
        self._out_dtype = np.dtype(self._out["dtype"])
        for what, dt in (("input", self._in_dtype), ("output", self._out_dtype)):
            if dt not in (np.dtype(np.float32), np.dtype(np.int8)):
                raise TFLiteModelError(f"{self.path}: {what} tensor is {dt}, only float32 or int8 are supported")
        self._in_q = self._quant_params(self._in, "input")
        self._out_q = self._quant_params(self._out, "output")
        self._input_shape = shape
        sig = self._in.get("shape_signature", self._in["shape"])
        self._dynamic_batch = int(sig[0]) == -1
        self._batch = shape[0]
        if self._dynamic_batch:
            self._batch = self._try_resize(CHUNK)

    def _quant_params(self, detail: dict[str, Any], what: str) -> tuple[float, int] | None:
        if np.dtype(detail["dtype"]) == np.dtype(np.float32):
            return None
        scale, zp = detail["quantization"]
        if not scale or scale <= 0:
            raise TFLiteModelError(f"{self.path}: int8 {what} tensor has no quantisation scale")
        return float(scale), int(zp)

    def _try_resize(self, batch: int) -> int:
        """Resize a dynamic-batch model to ``batch``; on failure reload at batch 1 and loop instead."""
        from ai_edge_litert.interpreter import Interpreter

        try:
            self._interp.resize_tensor_input(self._in["index"], [batch, *self._input_shape[1:]], strict=False)
            self._interp.allocate_tensors()
            return batch
        except (ValueError, RuntimeError) as exc:
            log.info("%s: batch resize to %d failed (%s); scoring one window per invoke", self.path, batch, exc)
            with captured_native_stderr():
                self._interp = Interpreter(model_content=self._data, num_threads=self._num_threads)
                self._interp.allocate_tensors()
            return self._input_shape[0]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The model's input shape as stored, ``(batch, frames, n_mels)`` (batch 1 for litert-torch models)."""
        b, f, m = self._input_shape
        return (b, f, m)

    @property
    def is_int8(self) -> bool:
        """True when the input tensor is int8 (features are quantised here before invoke)."""
        return self._in_q is not None

    @property
    def batch_per_invoke(self) -> int:
        """Windows scored per ``invoke`` (1 unless the model has a dynamic batch axis that resized)."""
        return self._batch

    def logits(self, windows: np.ndarray) -> np.ndarray:
        """``(N, frames, n_mels)`` float32 features -> ``(N, 2)`` float32 logits (dequantised if int8)."""
        x = np.asarray(windows)
        want = self._input_shape[1:]
        if x.ndim != 3 or tuple(x.shape[1:]) != want:
            raise ValueError(f"{self.path}: windows must have shape (N, {want[0]}, {want[1]}), got {x.shape}")
        n = x.shape[0]
        if n == 0:
            return np.zeros((0, 2), dtype=np.float32)
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{self.path}: windows contain NaN or inf")
        if self._in_q is not None:
            xq = _quantize(x, self._in_q[0], self._in_q[1], self._in_dtype)
        else:
            xq = x.astype(np.float32, copy=False)
        b = self._batch
        raw = np.empty((n, 2), dtype=self._out_dtype)
        in_idx, out_idx = self._in["index"], self._out["index"]
        interp = self._interp
        for start in range(0, n, b):
            chunk = xq[start : start + b]
            k = chunk.shape[0]
            if k < b:  # pad the last chunk instead of re-allocating for a new batch size
                chunk = np.concatenate([chunk, np.zeros((b - k, *want), dtype=chunk.dtype)])
            interp.set_tensor(in_idx, np.ascontiguousarray(chunk))
            interp.invoke()
            raw[start : start + k] = interp.get_tensor(out_idx)[:k]
        if self._out_q is not None:
            scale, zp = self._out_q
            return ((raw.astype(np.float32) - np.float32(zp)) * np.float32(scale)).astype(np.float32)
        return raw.astype(np.float32, copy=False)
