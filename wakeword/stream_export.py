"""Streaming deployment of ``stream_tcn``: a stateful full-int8 ``.tflite`` that consumes ``stem_stride``
feature frames per call (microWakeWord style), its torch-free runner, its proof of equality with the window
model, and its size and compute.

Interface of the streaming model (batch 1, every tensor int8; :func:`stream_manifest` writes it down for a
device):

- input 0 ``frames``: ``(1, stem_stride, n_features)`` raw features (CMVN folded into the stem), the newest
  ``stem_stride`` frames;
- inputs 1..L ``state``: one buffer per layer, ``(1, frames_kept, 1, channels)``, time-major so the oldest
  frame is row 0 (the stem keeps ``stem_kernel - stem_stride`` raw feature frames, each causal block its last
  ``(kernel - 1) * dilation`` inputs); TFLite's NHWC form of the torch model's ``(B, C, T, 1)`` buffers, so no
  layout op touches them;
- output 0 ``logits``: ``(1, 2)``, the logits of the window ending at the newest frame;
- outputs 1..L: the new state, same shapes and the same int8 scale and zero point as the matching input, so
  the caller copies output k onto input k byte for byte between calls (a ``memcpy`` of
  :attr:`StreamInterface.state_bytes` bytes in all). Zero state is the zero point of each state input. The
  stem's state holds raw frames and is quantised like the frames input.

Why explicit state inputs and outputs rather than TFLite variable tensors (``VAR_HANDLE`` / ``READ_VARIABLE``
/ ``ASSIGN_VARIABLE``, what microWakeWord's TensorFlow models use): any TFLite-Micro build runs plain inputs
and outputs (resource variables need those kernels registered and their own allocation), the caller owns,
resets and can inspect the buffers, and litert-torch converts such a module with no extra machinery.
Variable tensors were not tried. Same-scale state is guaranteed by the quantisation annotation (:func:`_annotate_state_io`: every state
output shares the observer of the concatenation its input feeds) and checked on the written file
(:func:`check_state_quantization`).

The outputs equal the window model's once :attr:`wakeword.models.StreamTCN.receptive_field_frames` frames
have been fed (:func:`warmup_calls` calls): before that the zero state stands in for frames before the
start. Calibration therefore streams whole feature sequences through the model and observes only the calls
after that warm-up, so every state input carries real past activations (:func:`convert_stream_tflite_int8`).

Nothing here imports torch at module level: :func:`stream_scores` / :class:`StreamRunner` need only numpy and
``ai-edge-litert``, as a device-side evaluation host may have no torch at all.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from wakeword.size import captured_native_stderr
from wakeword.tflite_runtime import _quantize

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)

#: Sequences streamed side by side during calibration (a dynamic batch axis; the file keeps batch 1).
CALIB_BATCH = 64


class StreamExportError(RuntimeError):
    """The streaming conversion failed or its result breaks the streaming contract (see module docstring)."""


# --------------------------------------------------------------------------------------------------- torch side


def _require_stream_model(model: Any) -> Any:
    from wakeword.models import StreamTCN

    if not isinstance(model, StreamTCN):
        raise TypeError(f"streaming export needs a stream_tcn model (StreamTCN), got {type(model).__name__}; "
                         "fold CMVN with wakeword.models.fold_cmvn, which keeps the StreamTCN class")
    return model


@functools.cache
def _stream_step_class() -> type:
    """The torch wrapper class, built on first use so that importing this module never imports torch."""
    import torch
    from torch import nn

    class StreamStep(nn.Module):
        """``forward(frames, *state) -> (logits, *new_state)``: :meth:`StreamTCN.step` with the state as
        separate tensors in a time-major ``(B, frames_kept, 1, channels)`` layout, TFLite's NHWC form of the
        model's ``(B, C, T, 1)`` buffers, so the permutes here cancel against litert's own layout change.

        The same maths as ``step`` (checked against it in the tests), written out for one reason: the stem's
        concatenation of its kept raw frames with the new ones is done in that NHWC order, ``(B, T, 1, F)``.
        Through ``step`` (which concatenates ``(B, F, T, 1)`` tensors) litert keeps that concatenation in NCHW
        and wraps it in two TRANSPOSEs and two RESHAPEs (default model: 1.2 KB more flash, 0.5 KB more arena).
        The blocks' concatenations (state with a conv's output) convert without any layout op either way."""

        def __init__(self, model: nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, frames: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
            m = self.model
            if frames.ndim != 3 or frames.shape[1] != m.stem_stride or frames.shape[2] != m.n_features:
                raise ValueError(f"a call takes (batch, {m.stem_stride}, {m.n_features}) frames, got "
                                 f"{tuple(frames.shape)}")
            if len(state) != 1 + len(m.blocks):
                raise ValueError(f"state must hold {1 + len(m.blocks)} tensors, got {len(state)}")
            x = torch.cat([state[0], frames.unsqueeze(2)], dim=1)  # (B, stem_kernel, 1, F)
            new_state = [x[:, m.stem_stride :]]
            y = m._layers(x.permute(0, 3, 1, 2))
            for block, buf in zip(m.blocks, state[1:]):
                inp = torch.cat([buf.permute(0, 3, 1, 2), y], dim=2)
                new_state.append(inp[:, :, 1:].permute(0, 2, 3, 1))
                y = block(inp)
            return (m.head(m.drop(y[:, :, -1, 0])), *new_state)

    # litert names every tensor after the module path: keep the wrapper's part short (flash bytes)
    StreamStep.__module__, StreamStep.__qualname__ = __name__, "StreamStep"
    return StreamStep


def stream_module(model: nn.Module) -> nn.Module:
    """A float32 CPU eval-mode copy of a (CMVN-folded) ``stream_tcn`` model as a :class:`StreamStep` module:
    ``(frames (B, stem_stride, F), *state) -> (logits (B, 2), *new_state)``. The caller's model is unchanged."""
    from wakeword.export import _frozen

    _require_stream_model(model)
    return _frozen(_stream_step_class()(model))


def state_shapes(model: nn.Module) -> list[tuple[int, int]]:
    """``(frames_kept, channels)`` of each state tensor (``(1, frames_kept, 1, channels)`` in the ``.tflite``),
    in input order (stem first, then each block)."""
    m = _require_stream_model(model)
    return [(int(s.shape[2]), int(s.shape[1])) for s in m.init_state(1)]


def zero_state(model: nn.Module, batch: int) -> list[torch.Tensor]:
    """Zeroed float state for :func:`stream_module` (the float counterpart of the int8 zero points)."""
    import torch

    return [torch.zeros(batch, t, 1, c) for t, c in state_shapes(model)]


def warmup_calls(model: nn.Module) -> int:
    """Calls before the stream's logits equal the window model's: the first call whose newest frame closes a
    full receptive field is call ``warmup_calls`` (0-based), i.e. after ``ceil(rf / stem_stride) - 1`` calls."""
    m = _require_stream_model(model)
    return math.ceil(m.receptive_field_frames / m.stem_stride) - 1


def stream_macs_per_call(model: nn.Module) -> int:
    """Multiply-accumulates of one streaming call (every Conv2d and Linear, as
    :func:`wakeword.models.count_macs` counts a window; BatchNorm folds away, adds are not counted)."""
    import torch
    from torch import nn

    module = stream_module(model)
    macs = 0

    def hook(mod: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(mod, nn.Conv2d):
            macs += int(out[0].numel() * math.prod(mod.kernel_size) * (mod.in_channels // mod.groups))
        elif isinstance(mod, nn.Linear):
            macs += int(out[0].numel() * mod.in_features)

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        m = _require_stream_model(model)
        with torch.no_grad():
            module(torch.zeros(1, m.stem_stride, m.n_features), *zero_state(model, 1))
    finally:
        for h in handles:
            h.remove()
    return macs


def torch_stream_logits(model: nn.Module, features: np.ndarray, segment_calls: int = 2048) -> np.ndarray:
    """Float logits per call ``(n_calls, 2)`` of the torch streaming module over ``features`` ``(T, F)``
    (``n_calls = T // stem_stride``; a trailing partial call is dropped), from zero state.

    Long inputs are cut into segments of ``segment_calls`` calls streamed side by side as one batch (Python
    overhead per call dominates otherwise); every segment after the first starts :func:`warmup_calls` calls
    early from zero state and drops those calls, so from the first full receptive field on every call's logits
    are the continuous stream's (up to float rounding), and the first segment is the continuous stream itself.
    """
    import torch

    m = _require_stream_model(model)
    x = _check_features(features, m.n_features)
    module = stream_module(model)
    stride, warm = m.stem_stride, warmup_calls(model)
    n = x.shape[0] // stride
    calls = x[: n * stride].reshape(n, stride, x.shape[1])
    seg = max(int(segment_calls), 1)
    starts = list(range(0, n, seg))
    lead = [min(warm, s0) for s0 in starts]  # calls streamed before each segment's own first call
    length = max(min(seg, n - s0) + w for s0, w in zip(starts, lead)) if n else 0
    batch = np.zeros((len(starts), length, stride, x.shape[1]), dtype=np.float32)
    for j, (s0, w) in enumerate(zip(starts, lead)):
        part = calls[s0 - w : min(s0 + seg, n)]
        batch[j, : part.shape[0]] = part
    xb = torch.from_numpy(batch)
    state = zero_state(model, len(starts))
    res_all = np.zeros((len(starts), length, 2), dtype=np.float32)
    with torch.no_grad():
        for i in range(length):
            res = module(xb[:, i], *state)
            res_all[:, i] = res[0].numpy()
            state = list(res[1:])
    out = np.zeros((n, 2), dtype=np.float32)
    for j, (s0, w) in enumerate(zip(starts, lead)):
        k = min(s0 + seg, n) - s0
        out[s0 : s0 + k] = res_all[j, w : w + k]
    return out


def _check_features(features: np.ndarray, n_features: int) -> np.ndarray:
    x = np.asarray(features)
    if x.ndim != 2 or x.shape[1] != n_features:
        raise ValueError(f"features must be a (frames, {n_features}) array, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.floating) or not np.all(np.isfinite(x)):
        raise ValueError("features must be finite floating point values")
    return np.ascontiguousarray(x, dtype=np.float32)


def _calibration_sequences(calibration: np.ndarray | Sequence[np.ndarray], n_features: int,
                           min_frames: int) -> dict[int, np.ndarray]:
    """Calibration sequences grouped by length (``{frames: (N, frames, F)}``); sequences shorter than
    ``min_frames`` are dropped (they never get past the warm-up)."""
    seqs = [calibration[i] for i in range(len(calibration))]
    groups: dict[int, list[np.ndarray]] = {}
    for s in seqs:
        x = _check_features(s, n_features)
        if x.shape[0] >= min_frames:
            groups.setdefault(x.shape[0], []).append(x)
    if not groups:
        raise ValueError(f"calibration: no sequence has the {min_frames} frames needed to fill the receptive "
                         f"field and observe one call ({len(seqs)} given); pass longer feature sequences")
    dropped = len(seqs) - sum(len(v) for v in groups.values())
    if dropped:
        log.warning("calibration: %d of %d sequences are shorter than %d frames and were skipped", dropped,
                    len(seqs), min_frames)
    return {n: np.stack(v) for n, v in groups.items()}


# --------------------------------------------------------------------------------------------------- quantisation


#: Layout ops between a state tensor and the concatenation it feeds or the slice it comes from.
_LAYOUT = ("unsqueeze", "permute", "flatten", "slice", "view", "reshape", "squeeze", "clone")


def _op_name(node: Any) -> str:
    target = getattr(node, "target", None)
    if getattr(node, "op", None) != "call_function" or not hasattr(target, "_schema"):
        return ""
    return str(target._schema.name.split("::")[-1].rstrip("_"))


def _drop_eval_dropout(gm: torch.fx.GraphModule) -> None:
    """Remove every eval-mode ``aten.dropout`` (an identity) so each concatenation sees its producer directly.
    (:func:`wakeword.export._drop_identity_dropout` keeps those after ReLUs; here none is needed.)"""
    for node in list(gm.graph.nodes):
        if _op_name(node) == "dropout":
            train = node.args[2] if len(node.args) > 2 else node.kwargs.get("train", False)
            if not train:
                node.replace_all_uses_with(node.args[0])
                gm.graph.erase_node(node)
    gm.graph.lint()
    gm.recompile()


def _annotated_output(node: Any) -> bool:
    ann = getattr(node, "meta", {}).get("quantization_annotation")
    return ann is not None and ann._annotated and ann.output_qspec is not None


def _annotate_state_io(gm: torch.fx.GraphModule, act: Any) -> None:
    """Give each state input, its concatenation and its state output one shared int8 observer.

    Why: the caller copies state outputs onto state inputs byte for byte, so each pair must have one scale
    and zero point. In :meth:`StreamTCN.step` state input k is concatenated (along time) with the layer's new
    frames, and new state k is a slice of that concatenation. litert's quantizer finds no ``torch.cat``
    source partition in a ``torch.export``-ed module and :func:`wakeword.export._annotate_remaining_ops` only
    shares a concatenation's scale with an annotated *first* input (here the state placeholder), so neither
    annotates these concatenations, and the layout ops around the state tensors stay float. Here, per state,
    one activation observer is shared by the input chain (placeholder -> permute), every input and the
    output of the concatenation and the output chain (slice -> permute -> output); for the stem, the raw
    frames' input chain too. PT2E merges the producer of the new frames (the stem's or the previous block's
    ReLU, same activation spec) into the group, so the ``.tflite`` has no requantisation (QUANTIZE) op.
    """
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec

    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    output = next(n for n in gm.graph.nodes if n.op == "output")
    outputs = list(output.args[0])
    states_in, states_out = placeholders[1:], outputs[1:]
    if len(states_in) != len(states_out):
        raise StreamExportError(f"graph has {len(states_in)} state inputs but {len(states_out)} state outputs")

    position = {n: i for i, n in enumerate(gm.graph.nodes)}

    def layout_chain_from_placeholder(node: Any) -> list[Any]:
        """Unannotated layout ops from a placeholder down to ``node`` (inclusive); [] if ``node`` has another
        root."""
        chain = []
        while _op_name(node) in _LAYOUT and not _annotated_output(node):
            chain.append(node)
            node = node.args[0]
        return list(reversed(chain)) if node.op == "placeholder" else []

    for k, (inp, out) in enumerate(zip(states_in, states_out)):
        node = inp  # forward from the placeholder to the concatenation
        while True:
            users = [u for u in node.users if u.op == "call_function"]  # not torch.export's _guards_fn
            if len(users) != 1:
                raise StreamExportError(f"state input {k} feeds {len(users)} ops, expected one layout chain")
            if _op_name(users[0]) == "cat":
                cat = users[0]
                break
            if _op_name(users[0]) not in _LAYOUT:
                raise StreamExportError(f"state input {k} reaches {users[0].target} before a concatenation")
            node = users[0]
        chain_out, node = [], out  # backwards from the output to the same concatenation
        while _op_name(node) in _LAYOUT:
            chain_out.append(node)
            node = node.args[0]
        if node is not cat:
            raise StreamExportError(f"state output {k} does not come from the concatenation its input feeds "
                                    f"(found {getattr(node, 'target', node)})")
        inputs = list(cat.args[0])
        members = [cat, *chain_out]  # every node of the group, each with the input edges it annotates
        edges: dict[Any, list[Any]] = {cat: inputs, **{n: [n.args[0]] for n in chain_out}}
        for a in inputs:  # the state's input chain, and the raw frames' into the stem's concatenation
            for n in layout_chain_from_placeholder(a):
                members.append(n)
                edges[n] = [n.args[0]]
        # PT2E creates a group's observer from the first of its edges in graph order, so that one carries
        # the real spec and every other member shares it
        first = min(members, key=lambda n: position[n])
        root = (edges[first][0], first)
        shared = SharedQuantizationSpec(root)
        for n in members:
            qmap = {a: (act if (a, n) == root else shared) for a in edges[n]}
            n.meta["quantization_annotation"] = QuantizationAnnotation(input_qspec_map=qmap, output_qspec=shared,
                                                                       _annotated=True)


def _stream_quantizer():  # type: ignore[no-untyped-def]
    """:func:`wakeword.export._int8_quantizer` (the zoo's full-int8 annotation), then
    :func:`_annotate_state_io`, then the zoo's pass again for the ops that only now follow an annotated op
    (the slices of the concatenations that feed the residual adds)."""
    from litert_torch.quantize.pt2e_quantizer_utils import propagate_annotation

    from wakeword.export import _annotate_remaining_ops, _int8_quantizer

    quantizer = _int8_quantizer()
    annotate = quantizer.annotate

    def annotate_stream(model: torch.fx.GraphModule) -> torch.fx.GraphModule:
        model = annotate(model)
        _annotate_state_io(model, quantizer.global_config.input_activation)
        _annotate_remaining_ops(model, quantizer.global_config)
        propagate_annotation(model)
        return model

    quantizer.annotate = annotate_stream
    return quantizer


# --------------------------------------------------------------------------------------------------- interface


@dataclass(frozen=True)
class TensorSpec:
    index: int
    shape: tuple[int, ...]
    scale: float
    zero_point: int


@dataclass(frozen=True)
class StreamInterface:
    """The I/O of a streaming ``.tflite``, read from the file (subgraph order; see the module docstring)."""

    frames: TensorSpec
    logits: TensorSpec
    state_in: tuple[TensorSpec, ...]
    state_out: tuple[TensorSpec, ...]

    @property
    def frames_per_call(self) -> int:
        return int(self.frames.shape[1])

    @property
    def n_features(self) -> int:
        return int(self.frames.shape[2])

    @property
    def state_bytes(self) -> int:
        """int8 bytes the caller carries between calls (the sum of the state tensors)."""
        return int(sum(math.prod(s.shape) for s in self.state_in))


def _spec(detail: dict[str, Any], what: str, path: Path) -> TensorSpec:
    if np.dtype(detail["dtype"]) != np.dtype(np.int8):
        raise StreamExportError(f"{path}: {what} is {np.dtype(detail['dtype'])}, expected int8")
    scale, zp = detail["quantization"]
    if not scale or scale <= 0:
        raise StreamExportError(f"{path}: int8 {what} has no quantisation scale")
    return TensorSpec(int(detail["index"]), tuple(int(d) for d in detail["shape"]), float(scale), int(zp))


def check_state_quantization(state_in: Sequence[TensorSpec], state_out: Sequence[TensorSpec],
                             where: str = "stream model") -> None:
    """Raise :class:`StreamExportError` unless every state output has its input's shape, scale and zero point
    (so output k can be copied onto input k byte for byte)."""
    if len(state_in) != len(state_out):
        raise StreamExportError(f"{where}: {len(state_in)} state inputs but {len(state_out)} state outputs")
    for k, (a, b) in enumerate(zip(state_in, state_out)):
        if a.shape != b.shape:
            raise StreamExportError(f"{where}: state {k} input shape {a.shape} != output shape {b.shape}")
        if a.zero_point != b.zero_point or not np.isclose(a.scale, b.scale, rtol=1e-6, atol=0.0):
            raise StreamExportError(
                f"{where}: state {k} is quantised with scale {a.scale:.6g} / zero point {a.zero_point} on input "
                f"but {b.scale:.6g} / {b.zero_point} on output: the state cannot be copied back byte for byte")


def read_stream_interface(interp: Any, path: Path) -> StreamInterface:
    """Parse and check the I/O of a loaded interpreter: int8 everywhere, frames ``(1, s, F)`` and logits
    ``(1, 2)`` first, then matching state pairs with equal quantisation."""
    ins, outs = interp.get_input_details(), interp.get_output_details()
    if len(ins) < 2 or len(ins) != len(outs):
        raise StreamExportError(f"{path}: {len(ins)} inputs and {len(outs)} outputs; a streaming model has "
                                "frames + state in and logits + state out")
    order = _signature_order(interp)
    if order is not None:  # litert's names args_k / output_k follow the torch module's argument order
        rank_in = {idx: k for k, idx in enumerate(order[0])}
        rank_out = {idx: k for k, idx in enumerate(order[1])}
        ins = sorted(ins, key=lambda d: rank_in.get(int(d["index"]), len(ins)))
        outs = sorted(outs, key=lambda d: rank_out.get(int(d["index"]), len(outs)))
    frames = _spec(ins[0], "the frames input", path)
    logits = _spec(outs[0], "the logits output", path)
    if len(frames.shape) != 3 or frames.shape[0] != 1:
        raise StreamExportError(f"{path}: frames input must be (1, frames_per_call, n_features), got {frames.shape}")
    if logits.shape != (1, 2):
        raise StreamExportError(f"{path}: logits output must be (1, 2), got {logits.shape}")
    state_in = tuple(_spec(d, f"state input {k}", path) for k, d in enumerate(ins[1:]))
    state_out = tuple(_spec(d, f"state output {k}", path) for k, d in enumerate(outs[1:]))
    check_state_quantization(state_in, state_out, str(path))
    return StreamInterface(frames, logits, state_in, state_out)


def _signature_order(interp: Any) -> tuple[list[int], list[int]] | None:
    """Tensor indices of litert's ``args_0..`` inputs and ``output_0..`` outputs, or None without them."""
    sig = interp.get_signature_list()
    if len(sig) != 1:
        return None
    runner = interp.get_signature_runner(next(iter(sig)))
    ins, outs = runner.get_input_details(), runner.get_output_details()
    try:
        return ([int(ins[f"args_{k}"]["index"]) for k in range(len(ins))],
                [int(outs[f"output_{k}"]["index"]) for k in range(len(outs))])
    except KeyError:
        return None


def subgraph_order_is_signature_order(interp: Any) -> bool:
    """True when the flatbuffer's subgraph inputs/outputs are in the documented order (frames, state...;
    logits, state...), which is what a TFLite-Micro caller indexes by."""
    order = _signature_order(interp)
    return order is not None and order == ([int(d["index"]) for d in interp.get_input_details()],
                                           [int(d["index"]) for d in interp.get_output_details()])


# --------------------------------------------------------------------------------------------------- conversion


def _verify_stream_tflite(path: Path, final: Path, model: nn.Module, max_arena_bytes: int) -> int:
    """The written file meets the contract: int8 I/O of the expected shapes, state quantisation equal in and
    out, documented I/O order, no custom ops, no float left in the graph, and TFLite-Micro allocates and
    invokes it (every op a Micro builtin). Returns the measured arena."""
    from ai_edge_litert.interpreter import Interpreter

    from wakeword.size import ArenaError, measure_arena_bytes, tflite_op_names

    m = _require_stream_model(model)
    with captured_native_stderr():
        interp = Interpreter(model_path=str(path))
    iface = read_stream_interface(interp, final)
    if iface.frames.shape != (1, m.stem_stride, m.n_features):
        raise StreamExportError(f"{final}: frames input is {iface.frames.shape}, expected "
                                f"(1, {m.stem_stride}, {m.n_features})")
    want = [(1, t, 1, c) for t, c in state_shapes(model)]
    got = [s.shape for s in iface.state_in]
    if got != want:
        raise StreamExportError(f"{final}: state inputs are {got}, expected {want}")
    if not subgraph_order_is_signature_order(interp):
        raise StreamExportError(f"{final}: the subgraph's I/O tensors are not in (frames, state...) -> "
                                "(logits, state...) order")
    ops = tflite_op_names(path)
    bad = [o for o in ops if o.startswith("CUSTOM") or o == "DEQUANTIZE"]
    if bad:
        raise StreamExportError(f"{final}: uses {sorted(set(bad))}; the streaming model must be full int8 "
                                "TFLite-Micro builtins")
    try:
        return measure_arena_bytes(path, max_bytes=max_arena_bytes)
    except ArenaError as exc:
        raise StreamExportError(f"{final}: TFLite-Micro cannot run the streaming model (ops "
                                f"{sorted(set(ops))}): {exc}") from exc


def convert_stream_tflite_int8(model: nn.Module, calibration_features: np.ndarray | Sequence[np.ndarray],
                               path: Path, max_arena_bytes: int = 8 << 20) -> int:
    """Write the full-int8 streaming ``.tflite`` of a (CMVN-folded) ``stream_tcn`` model; return its measured
    TFLite-Micro arena in bytes.

    Same recipe as :func:`wakeword.export.convert_tflite_int8` (litert-torch PT2E: int8 symmetric
    per-channel weights, int8 per-tensor activations, the zoo's full-int8 annotation) on :func:`stream_module`,
    plus :func:`_annotate_state_io`. Calibration *streams* ``calibration_features`` (an ``(N, T, F)`` array or
    a list of ``(T, F)`` raw feature sequences, e.g. the window model's calibration windows), up to
    :data:`CALIB_BATCH` sequences side by side: the first :func:`warmup_calls` calls of each sequence run on
    the float module only (the zero state is not what a running device holds), the observers see every later
    call, so each state input is calibrated on real past activations. Sequences shorter than
    ``(warmup_calls + 1) * stem_stride`` frames are skipped. The file is checked
    (:func:`_verify_stream_tflite`) before it is moved onto ``path``.
    """
    import torch

    from wakeword.export import _atomic_output, _quiet_litert

    path = Path(path)
    m = _require_stream_model(model)
    stride, n_feat = m.stem_stride, m.n_features
    warm = warmup_calls(model)
    groups = _calibration_sequences(calibration_features, n_feat, (warm + 1) * stride)
    module = stream_module(model)
    example = (torch.zeros(1, stride, n_feat), *zero_state(model, 1))
    t0 = time.perf_counter()
    with captured_native_stderr():  # torchao/jax/absl print import-time chatter on fd 2
        import litert_torch
        from litert_torch.quantize.quant_config import QuantConfig
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    observed = 0
    with _quiet_litert() as captured:
        try:
            per_forward = CALIB_BATCH
            try:  # a dynamic batch so calibration streams many sequences at once
                batch = torch.export.Dim("batch", min=1, max=1 << 16)
                two = (torch.zeros(2, stride, n_feat), *zero_state(model, 2))
                gm = torch.export.export(module, two, dynamic_shapes=(
                    {0: batch}, tuple({0: batch} for _ in two[1:]))).module()
            except Exception as exc:  # noqa: BLE001 - fall back to one sequence at a time
                log.warning("dynamic-batch torch.export failed (%s); calibrating one sequence at a time", exc)
                gm, per_forward = torch.export.export(module, example).module(), 1
            _drop_eval_dropout(gm)  # type: ignore[arg-type]
            quantizer = _stream_quantizer()
            with contextlib.redirect_stdout(io.StringIO()):  # the quantizer print()s notes about ReLU patterns
                prepared = prepare_pt2e(gm, quantizer)  # type: ignore[arg-type]
            with torch.no_grad():
                for frames_total, seqs in groups.items():
                    for start in range(0, seqs.shape[0], per_forward):
                        x = torch.from_numpy(seqs[start : start + per_forward])
                        state = zero_state(model, x.shape[0])
                        for i in range(frames_total // stride):
                            net = module if i < warm else prepared
                            out = net(x[:, i * stride : (i + 1) * stride], *state)
                            state = list(out[1:])
                            observed += x.shape[0] if i >= warm else 0
            t1 = time.perf_counter()
            quantized = convert_pt2e(prepared, fold_quantize=False)
            edge = litert_torch.convert(quantized, example, quant_config=QuantConfig(pt2e_quantizer=quantizer))
            t2 = time.perf_counter()
        except StreamExportError:
            raise
        except Exception as exc:
            raise StreamExportError(f"{path}: int8 streaming TFLite conversion failed: {exc}") from exc
        with _atomic_output(path) as tmp:
            edge.export(str(tmp))
            arena = _verify_stream_tflite(tmp, path, model, max_arena_bytes)
    log.debug("litert-torch log:\n%s", captured[0] if captured else "")
    log.debug("%s: export + calibration %.1f s, conversion %.1f s, checks %.1f s", path, t1 - t0, t2 - t1,
              time.perf_counter() - t2)
    log.info("%s: int8 streaming TFLite written (%d bytes, arena %d bytes, %d calibration calls, %.1f s)", path,
             path.stat().st_size, arena, observed, time.perf_counter() - t0)
    return arena


# --------------------------------------------------------------------------------------------------- runner


class StreamRunner:
    """Run a streaming ``.tflite`` call by call with numpy and ai-edge-litert only (no torch): quantise
    ``frames_per_call`` frames with the input's scale, invoke, dequantise the logits, copy the int8 state
    outputs onto the state inputs byte for byte (as a device does)."""

    def __init__(self, path: str | os.PathLike[str], num_threads: int = 1) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: streaming TFLite model not found")
        with captured_native_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate" on fd 2
            self._interp = Interpreter(model_path=str(self.path), num_threads=int(num_threads))
            self._interp.allocate_tensors()
        self.interface = read_stream_interface(self._interp, self.path)
        self.reset()

    @property
    def frames_per_call(self) -> int:
        return self.interface.frames_per_call

    def reset(self) -> None:
        """Zero state: every state input at its zero point (float 0)."""
        self._state = [np.full(s.shape, s.zero_point, dtype=np.int8) for s in self.interface.state_in]

    def _invoke(self, frames_q: np.ndarray) -> np.ndarray:
        iface, interp = self.interface, self._interp
        interp.set_tensor(iface.frames.index, frames_q)
        for spec, buf in zip(iface.state_in, self._state):
            interp.set_tensor(spec.index, buf)
        interp.invoke()
        self._state = [interp.get_tensor(spec.index) for spec in iface.state_out]
        return interp.get_tensor(iface.logits.index)[0]

    def _dequantize(self, raw: np.ndarray) -> np.ndarray:
        lg = self.interface.logits
        return ((raw.astype(np.float32) - np.float32(lg.zero_point)) * np.float32(lg.scale)).astype(np.float32)

    def step(self, frames: np.ndarray) -> np.ndarray:
        """One call: ``(frames_per_call, n_features)`` float features -> the 2 float logits."""
        x = _check_features(frames, self.interface.n_features)
        if x.shape[0] != self.frames_per_call:
            raise ValueError(f"{self.path}: a call takes {self.frames_per_call} frames, got {x.shape[0]}")
        fr = self.interface.frames
        return self._dequantize(self._invoke(_quantize(x[None], fr.scale, fr.zero_point, np.int8)))

    def run(self, features: np.ndarray) -> np.ndarray:
        """Logits per call ``(T // frames_per_call, 2)`` over ``features`` ``(T, F)``, continuing from the
        current state (a trailing partial call is dropped)."""
        x = _check_features(features, self.interface.n_features)
        s, fr = self.frames_per_call, self.interface.frames
        n = x.shape[0] // s
        xq = _quantize(x[: n * s], fr.scale, fr.zero_point, np.int8).reshape(n, 1, s, x.shape[1])
        raw = np.zeros((n, 2), dtype=np.int8)
        for i in range(n):
            raw[i] = self._invoke(xq[i])
        return self._dequantize(raw)


def stream_scores(tflite_path: str | os.PathLike[str], features: np.ndarray) -> np.ndarray:
    """Float logits per call ``(T // frames_per_call, 2)`` of a streaming ``.tflite`` over raw features
    ``(T, F)`` from zero state; call ``i`` ends at frame ``(i + 1) * frames_per_call`` (exclusive). Torch-free."""
    return StreamRunner(tflite_path).run(features)


def micro_stream_scores(tflite_path: str | os.PathLike[str], features: np.ndarray,
                        arena_bytes: int = 1 << 20) -> np.ndarray:
    """:func:`stream_scores` run by TFLite-Micro (the ``tflite-micro`` package: the interpreter and reference
    kernels a device runs) instead of ai-edge-litert, state copied back the same way. The two differ by a few
    int8 steps in some logits (ai-edge-litert's optimised and XNNPACK kernels round some values differently and
    the state carries a difference on; the default model over 20k calls: up to 3 steps, probabilities within
    0.03). Torch-free."""
    from tflite_micro import runtime

    path = Path(tflite_path)
    with captured_native_stderr():
        from ai_edge_litert.interpreter import Interpreter

        iface = read_stream_interface(Interpreter(model_path=str(path)), path)
        micro = runtime.Interpreter.from_file(str(path), arena_size=int(arena_bytes))
    x = _check_features(features, iface.n_features)
    s, fr, lg = iface.frames_per_call, iface.frames, iface.logits
    n = x.shape[0] // s
    xq = _quantize(x[: n * s], fr.scale, fr.zero_point, np.int8).reshape(n, 1, s, x.shape[1])
    state = [np.full(t.shape, t.zero_point, dtype=np.int8) for t in iface.state_in]
    raw = np.zeros((n, 2), dtype=np.int8)
    for i in range(n):  # TFLite-Micro indexes I/O in subgraph order: frames, state... -> logits, state...
        micro.set_input(xq[i], 0)
        for k, buf in enumerate(state):
            micro.set_input(buf, k + 1)
        micro.invoke()
        raw[i] = micro.get_output(0)[0]
        state = [np.array(micro.get_output(k + 1), dtype=np.int8) for k in range(len(state))]
    return ((raw.astype(np.float32) - np.float32(lg.zero_point)) * np.float32(lg.scale)).astype(np.float32)


# --------------------------------------------------------------------------------------------------- equality


def call_ends(n_calls: int, frames_per_call: int) -> np.ndarray:
    """End frame (exclusive) of each call."""
    return (np.arange(n_calls, dtype=np.int64) + 1) * int(frames_per_call)


def _windows_ending_at(features: np.ndarray, ends: np.ndarray, window: int) -> np.ndarray:
    view = np.lib.stride_tricks.sliding_window_view(features, window, axis=0)  # (T - w + 1, F, w)
    return np.ascontiguousarray(view[ends - window].transpose(0, 2, 1))


def _agreement(stream: np.ndarray, window: np.ndarray, threshold: float, temperature: float) -> dict[str, Any]:
    from wakeword.scoring import probabilities

    ps, pw = probabilities(stream, temperature), probabilities(window, temperature)
    dp = np.abs(ps.astype(np.float64) - pw)
    return {
        "calls_compared": int(ps.shape[0]),
        "max_abs_logit_diff": float(np.max(np.abs(stream - window))) if ps.size else 0.0,
        "max_abs_prob_diff": float(dp.max()) if ps.size else 0.0,
        "mean_abs_prob_diff": float(dp.mean()) if ps.size else 0.0,
        "decision_agreement": float(np.mean((ps >= threshold) == (pw >= threshold))) if ps.size else 1.0,
        "window_positive_fraction": float(np.mean(pw >= threshold)) if ps.size else 0.0,
    }


def compare_stream_window(model: nn.Module, features: np.ndarray, window_frames: int, *,
                          stream_tflite: Path | None = None, window_tflite: Path | None = None,
                          threshold: float = 0.5, temperature: float = 1.0) -> dict[str, Any]:
    """Streaming vs window scores on one long raw feature sequence ``(T, F)``.

    At every call whose end frame ``e`` has a full window behind it (``e >= window_frames``, which also fills
    the receptive field), the window model's logits on ``features[e - window_frames : e]`` are compared with
    the stream's logits of that call (streamed from zero state from frame 0). ``float``: the torch streaming
    module vs the torch window model (``model``, CMVN folded: both read raw features); with both paths given,
    ``int8``: ``stream_tflite`` (:func:`stream_scores`) vs ``window_tflite``
    (:class:`wakeword.tflite_runtime.TFLiteScorer`, e.g. :func:`wakeword.export.convert_tflite_int8` of the same
    model), plus each int8 model against the float window model for scale. Each entry: calls compared, max
    |logit| difference, max and mean |probability| difference (``softmax(logits / temperature)[1]``),
    decision agreement at ``threshold`` and the fraction of calls the reference puts above it.
    """
    import torch

    from wakeword.export import _frozen

    m = _require_stream_model(model)
    x = _check_features(features, m.n_features)
    stride, window = m.stem_stride, int(window_frames)
    if window < m.receptive_field_frames:
        raise ValueError(f"window_frames {window} is shorter than the receptive field "
                         f"({m.receptive_field_frames} frames)")
    n_calls = x.shape[0] // stride
    ends = call_ends(n_calls, stride)
    keep = ends >= window
    if not keep.any():
        raise ValueError(f"features have {x.shape[0]} frames: no call has a full {window}-frame window behind it")
    wins = _windows_ending_at(x, ends[keep], window)
    frozen = _frozen(model)
    with torch.no_grad():
        float_window = np.concatenate([frozen(torch.from_numpy(wins[i : i + 512])).numpy()
                                       for i in range(0, wins.shape[0], 512)])
    float_stream = torch_stream_logits(model, x)[keep]
    result: dict[str, Any] = {"frames": int(x.shape[0]), "frames_per_call": stride,
                              "first_compared_call": int(np.flatnonzero(keep)[0]),
                              "float": _agreement(float_stream, float_window, threshold, temperature)}
    if stream_tflite is not None and window_tflite is not None:
        from wakeword.tflite_runtime import TFLiteScorer

        int8_stream = stream_scores(stream_tflite, x)[keep]
        int8_window = TFLiteScorer(window_tflite).logits(wins)
        result["int8"] = _agreement(int8_stream, int8_window, threshold, temperature)
        result["int8_stream_vs_float"] = _agreement(int8_stream, float_window, threshold, temperature)
        result["int8_window_vs_float"] = _agreement(int8_window, float_window, threshold, temperature)
    return result


# --------------------------------------------------------------------------------------------------- report


def stream_report(stream_tflite: Path, model: nn.Module, window_frames: int, hop_ms: float, step_ms: int,
                  arena_bytes: int | None = None) -> dict[str, Any]:
    """Size and compute of the streaming model next to the window model's (``metrics/size.json`` ``stream``).

    ``flash_bytes``: the ``.tflite`` bytes; ``arena_bytes``: the smallest TFLite-Micro arena (measured unless
    given), which holds the int8 state inputs and outputs too; ``state_bytes``: the int8 state the caller keeps
    between calls (one copy; the arena holds the in/out tensors); ``calls_per_second = 1000 / (hop_ms *
    frames_per_call)``; ``macs_per_call`` (:func:`stream_macs_per_call`) and ``macs_per_second``;
    ``window_macs_per_second``: the window model re-run every ``step_ms``
    (:func:`wakeword.deploy.model_compute`), and ``compute_ratio`` = window / stream MACs per second.
    """
    from wakeword.deploy import model_compute
    from wakeword.size import measure_arena_bytes

    m = _require_stream_model(model)
    path = Path(stream_tflite)
    runner = StreamRunner(path)
    stride = runner.frames_per_call
    if stride != m.stem_stride:
        raise ValueError(f"{path}: takes {stride} frames per call, the model's stem stride is {m.stem_stride}")
    arena = int(arena_bytes) if arena_bytes is not None else measure_arena_bytes(path)
    calls_per_second = 1000.0 / (float(hop_ms) * stride)
    macs_call = stream_macs_per_call(model)
    window = model_compute(model, int(window_frames), int(step_ms))
    macs_second = round(macs_call * calls_per_second)
    flash = path.stat().st_size
    return {
        "flash_bytes": flash,
        "flash_kb": round(flash / 1024.0, 2),
        "arena_bytes": arena,
        "arena_kb": round(arena / 1024.0, 2),
        "state_bytes": runner.interface.state_bytes,
        "frames_per_call": stride,
        "calls_per_second": round(calls_per_second, 3),
        "receptive_field_frames": int(m.receptive_field_frames),
        "macs_per_call": macs_call,
        "macs_per_second": macs_second,
        "window_macs_per_window": window["macs_per_window"],
        "window_macs_per_second": window["macs_per_second"],
        "compute_ratio": round(window["macs_per_second"] / macs_second, 2) if macs_second else 0.0,
    }


# --------------------------------------------------------------------------------------------------- pipeline


#: Largest |logit| difference tolerated between the float streaming module and the float window model by
#: :func:`stream_deployment` (measured: 0 to 3e-6; a wrong state or layout gives differences of order 1).
FLOAT_LOGIT_ATOL = 1e-4


def stream_manifest(tflite_path: Path, arena_bytes: int, model: nn.Module) -> dict[str, Any]:
    """What a device needs to run the streaming model (a ``stream`` entry for ``wakeword.json``): the file,
    frames per call, its I/O tensors in subgraph order with their int8 quantisation, the arena, and the calls
    to discard after a reset before the scores are valid."""
    path = Path(tflite_path)
    iface = StreamRunner(path).interface

    def tensor(spec: TensorSpec) -> dict[str, Any]:
        return {"shape": list(spec.shape), "scale": spec.scale, "zero_point": spec.zero_point}

    return {
        "model": path.name,
        "model_type": "full_int8_tflite_streaming",
        "frames_per_call": iface.frames_per_call,
        "tensor_arena_size": int(arena_bytes),
        "warmup_calls": warmup_calls(model),
        "state_bytes": iface.state_bytes,
        "inputs": [tensor(iface.frames), *[tensor(s) for s in iface.state_in]],
        "outputs": [tensor(iface.logits), *[tensor(s) for s in iface.state_out]],
        "state_copy": "after each call copy output k onto input k (k >= 1), byte for byte; reset = zero points",
    }


def stream_deployment(model: nn.Module, calibration: np.ndarray | Sequence[np.ndarray], recording: np.ndarray,
                      stream_path: Path, window_tflite: Path, window_frames: int, hop_ms: float, step_ms: int,
                      threshold: float, temperature: float = 1.0, max_arena_bytes: int = 8 << 20,
                      min_decision_agreement: float = 0.0) -> dict[str, Any]:
    """The tflite stage's streaming step for ``stream_tcn``: convert (:func:`convert_stream_tflite_int8`),
    prove (:func:`compare_stream_window` on ``recording`` against the int8 window model ``window_tflite`` at the
    calibrated ``threshold`` / ``temperature``) and measure (:func:`stream_report`).

    Raises :class:`StreamExportError` when the float streaming module differs from the float window model by
    more than :data:`FLOAT_LOGIT_ATOL` (a broken conversion wrapper), or when the int8 streaming and window
    models agree on fewer than ``min_decision_agreement`` of the calls. Returns ``{"size": stream_report(...),
    "fidelity": compare_stream_window(...), "manifest": stream_manifest(...)}``.
    """
    arena = convert_stream_tflite_int8(model, calibration, stream_path, max_arena_bytes)
    fidelity = compare_stream_window(model, recording, window_frames, stream_tflite=stream_path,
                                     window_tflite=window_tflite, threshold=threshold, temperature=temperature)
    diff = fidelity["float"]["max_abs_logit_diff"]
    if not diff <= FLOAT_LOGIT_ATOL:
        raise StreamExportError(f"{stream_path}: the float streaming model differs from the window model by up to "
                                f"{diff:.3g} logits (allowed {FLOAT_LOGIT_ATOL:g})")
    agreement = fidelity["int8"]["decision_agreement"]
    if agreement < min_decision_agreement:
        raise StreamExportError(f"{stream_path}: the int8 streaming model agrees with the int8 window model on "
                                f"{agreement:.4f} of {fidelity['int8']['calls_compared']} calls, below "
                                f"{min_decision_agreement}")
    return {"size": stream_report(stream_path, model, window_frames, hop_ms, step_ms, arena),
            "fidelity": fidelity, "manifest": stream_manifest(stream_path, arena, model)}
