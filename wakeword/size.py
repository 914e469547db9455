"""Deployed size of a detector: flash (the ``.tflite`` bytes) and RAM (TFLite-Micro arena + detector buffers).

Why measured and not estimated: the arena depends on the memory planner's reuse of activation buffers, per-op
scratch buffers and the interpreter's persistent bookkeeping, none of which a ``params x bytes`` formula sees.
So the arena here is the smallest size with which the real TFLite-Micro interpreter (the ``tflite-micro``
Python package, the same C++ core that runs on an MCU) *allocates and invokes* the model.

Host vs MCU: the figure is close to, not identical with, what a 32-bit microcontroller needs. On this 64-bit
host pointers are 8 bytes, so the persistent structs in the arena tail (``TfLiteEvalTensor``,
``NodeAndRegistration``, allocator bookkeeping, the recording allocator's own records) are larger than on a
32-bit MCU, while optimised kernels (CMSIS-NN, ESP-NN) may request scratch buffers that the host reference
kernels do not. Expect the device figure within a few hundred bytes to ~1 KB of the host one; keep a margin.

Platforms: :func:`platform_fit` checks flash and RAM against ``deploy.platforms`` (device totals and the
model's ``max_flash_kb`` / ``max_ram_kb``); :func:`enforce_platform_limits` fails a run when
``deploy.fail_on_exceed`` is set. Before training only, :func:`rough_size_estimate` gives SPEC's formula and
rough fits, always labelled as estimates (``wakeword estimate``).

No torch here: this module runs wherever ``numpy`` and ``tflite-micro`` are installed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Binary-search granularity for the arena (TFLite-Micro aligns buffers to 16 bytes).
ARENA_GRANULARITY = 16


class ArenaError(RuntimeError):
    """The model cannot be allocated/invoked by TFLite-Micro within the allowed arena."""


@contextlib.contextmanager
def captured_native_stderr() -> Iterator[list[str]]:
    """Redirect file descriptor 2 to a temp file for the duration of the block.

    Why: TFLite-Micro, the TFLite converter and absl log from C++ straight to fd 2, which ``contextlib.
    redirect_stderr`` cannot catch. Failed allocations in a binary search would otherwise print dozens of
    "Failed to allocate tail memory" lines. The captured text is handed back (as the single element of the
    yielded list, filled on exit) so callers can log it or put it in an error message. Process-wide: other
    threads writing to fd 2 meanwhile are captured too.
    """
    out: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            with contextlib.suppress(OSError, ValueError):  # a closed sys.stderr must not mask the real error
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode("utf-8", errors="replace"))


def _read_model(tflite_path: str | os.PathLike[str]) -> bytes:
    path = Path(tflite_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: TFLite model file not found")
    data = path.read_bytes()
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise ArenaError(f"{path}: not a TFLite flatbuffer (no 'TFL3' file identifier)")
    return data


def _allocates_and_invokes(model: bytes, arena_bytes: int) -> tuple[bool, str]:
    """Try one arena size: construct (allocates tensors), feed zeros, invoke. Returns (ok, native log)."""
    from tflite_micro import runtime  # heavy-ish native import; only when measuring

    msg = ""
    ok = False
    with captured_native_stderr() as captured:
        try:
            interp = runtime.Interpreter.from_bytes(model, arena_size=int(arena_bytes))
            details = interp.get_input_details(0)
            interp.set_input(np.zeros(tuple(details["shape"]), dtype=details["dtype"]), 0)
            interp.invoke()
            ok = True
        except (RuntimeError, ValueError) as exc:
            msg = str(exc)
    native = captured[0] if captured else ""
    return ok, (msg + "\n" + native).strip()


def _read_to_end(read_fd: int, write_fd: int) -> bytes:
    """In the parent after a fork: close our copy of the write end, read until the child closes its copy."""
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 1 << 16):
        chunks.append(chunk)
    os.close(read_fd)
    return b"".join(chunks)


def _probe(model: bytes, arena_bytes: int) -> tuple[bool, str]:
    """:func:`_allocates_and_invokes` in a forked child process where the OS allows it.

    Why: TFLite-Micro's error paths are not all safe. With some arena sizes just too small (a temp tensor
    allocation that fails inside a kernel's Prepare, e.g. TRANSPOSE's), the interpreter dereferences a null
    tensor and the whole process dies with SIGSEGV; seen with an unrolled LSTM. A crashed probe counts as
    "does not fit" and the parent carries on. A probe that succeeds or fails cleanly gives the same answer as
    in-process, so measured arenas do not change.
    """
    if not hasattr(os, "fork"):
        return _allocates_and_invokes(model, arena_bytes)
    from tflite_micro import runtime  # noqa: F401 - import in the parent, never under the child's import lock

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: probe, report, exit without running the parent's atexit handlers
        status = 1
        try:
            os.close(read_fd)
            ok, why = _allocates_and_invokes(model, arena_bytes)
            os.write(write_fd, (b"1" if ok else b"0") + why.encode("utf-8", errors="replace")[:16000])
            status = 0
        finally:
            os._exit(status)
    data = _read_to_end(read_fd, write_fd)
    _, wait_status = os.waitpid(pid, 0)
    if not data:
        return False, f"TFLite-Micro crashed with a {arena_bytes}-byte arena (wait status {wait_status})"
    return data[:1] == b"1", data[1:].decode("utf-8", errors="replace")


def _next_probe(lo: int, hi: int, g: int) -> int:
    mid = ((lo + hi) // 2 // g) * g
    return lo + g if mid <= lo else mid


def _bisect(model: bytes, lo: int, hi: int, g: int) -> int:
    """Smallest working arena in (lo, hi], ``lo`` failing and ``hi`` working, to ``g`` bytes.

    The probes run one after another in a single forked child (one fork per search, not per probe) that
    reports each probe before and after it runs; if a probe kills the child (see :func:`_probe`) that size
    counts as failing and a fresh child carries on from there.
    """
    if not hasattr(os, "fork"):
        while hi - lo > g:
            mid = _next_probe(lo, hi, g)
            lo, hi = (lo, mid) if _allocates_and_invokes(model, mid)[0] else (mid, hi)
        return hi
    from tflite_micro import runtime  # noqa: F401 - import in the parent, never under the child's import lock

    while hi - lo > g:
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: run the search, one line per probe start and one per result
            status = 1
            try:
                os.close(read_fd)
                a, b = lo, hi
                while b - a > g:
                    mid = _next_probe(a, b, g)
                    os.write(write_fd, f"{mid}\n".encode())
                    ok = _allocates_and_invokes(model, mid)[0]
                    os.write(write_fd, f"{mid} {int(ok)}\n".encode())
                    a, b = (a, mid) if ok else (mid, b)
                status = 0
            finally:
                os._exit(status)
        data = _read_to_end(read_fd, write_fd)
        _, wait_status = os.waitpid(pid, 0)
        before = (lo, hi)
        running: int | None = None
        for line in data.decode().splitlines():
            fields = line.split()
            if len(fields) == 1:
                running = int(fields[0])
            else:
                running = None
                lo, hi = (lo, int(fields[0])) if fields[1] == "1" else (int(fields[0]), hi)
        if running is not None:  # the child died in this probe: it does not fit
            log.debug("TFLite-Micro crashed with a %d-byte arena (wait status %d); counted as too small",
                      running, wait_status)
            lo = running
        if (lo, hi) == before:
            raise ArenaError(f"the arena search process died before probing anything "
                             f"(wait status {wait_status})")
    return hi


def arena_allocates(tflite_path: str | os.PathLike[str], arena_bytes: int) -> bool:
    """True when TFLite-Micro allocates AND invokes the model with an arena of ``arena_bytes``."""
    if arena_bytes <= 0:
        return False
    ok, _ = _probe(_read_model(tflite_path), arena_bytes)
    return ok


def measure_arena_bytes(tflite_path: str | os.PathLike[str], max_bytes: int = 1 << 20) -> int:
    """Smallest tensor arena (bytes, multiple of 16) with which TFLite-Micro allocates and invokes the model.

    Binary search between 16 and ``max_bytes``. Allocation success is monotone in the arena size, so the
    search is exact to :data:`ARENA_GRANULARITY`. The probes run in a forked process (:func:`_probe`,
    :func:`_bisect`): a size at which TFLite-Micro crashes counts as too small instead of killing the caller.
    Raises :class:`ArenaError` when even ``max_bytes`` fails (an op TFLite-Micro lacks, a model too big for the
    target, or a corrupt file), with TFLite-Micro's reason.
    See the module docstring for how the host figure relates to a 32-bit MCU.
    """
    path = Path(tflite_path)
    model = _read_model(path)
    g = ARENA_GRANULARITY
    hi = (int(max_bytes) // g) * g
    if hi < g:
        raise ValueError(f"max_bytes must be at least {g}, got {max_bytes}")
    ok, why = _probe(model, hi)
    if not ok:
        raise ArenaError(
            f"{path}: TFLite-Micro cannot allocate and invoke this model even with a {hi}-byte arena "
            f"(unsupported op, model too large, or corrupt file). TFLite-Micro said: {why or '(nothing)'}"
        )
    hi = _bisect(model, 0, hi, g)  # 0 is known failing (an empty arena never works)
    log.debug("%s: smallest TFLite-Micro arena %d bytes", path, hi)
    return hi


def tflite_op_names(tflite_path: str | os.PathLike[str]) -> list[str]:
    """Builtin op names used by the model, in graph order (``CUSTOM:<code>`` for custom ops).

    Why: the export check and reports name the ops a target firmware must register in its
    ``MicroMutableOpResolver``.
    """
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as fb

    data = _read_model(tflite_path)
    model = fb.Model.GetRootAsModel(data, 0)
    code_names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    names: list[str] = []
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        assert sg is not None
        for i in range(sg.OperatorsLength()):
            op = sg.Operators(i)
            assert op is not None
            oc = model.OperatorCodes(op.OpcodeIndex())
            assert oc is not None
            code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
            if code == fb.BuiltinOperator.CUSTOM:
                cc = oc.CustomCode()
                names.append(f"CUSTOM:{cc.decode() if cc else '?'}")
            else:
                names.append(code_names.get(code, f"BUILTIN_{code}"))
    return names


def detector_buffer_bytes(n_fft: int, window_frames: int, n_mels: int) -> dict[str, int]:
    """RAM the streaming detector needs besides the arena, on a device.

    Formula: ``audio_ring_bytes = n_fft * 2`` (one STFT window of int16 samples, the only audio the front
    end must keep: each hop shifts it) and ``feature_window_bytes = window_frames * n_mels`` (the sliding
    window of int8 features the model reads; int8 because the deployed model takes int8 input). ``n_mels`` is
    the feature dimension of ``features.type`` (:func:`wakeword.features.feature_dim`: n_mels, n_mfcc or the
    micro front end's 40 channels); callers pass the CMVN/model feature count. For micro the front end keeps
    a 30 ms window (480 samples), less than ``n_fft`` (512 by default), so the audio figure is an upper bound.
    ``total_bytes`` is their sum. Not counted: the FFT work buffers of the DSP library and the stack.
    """
    for name, value in (("n_fft", n_fft), ("window_frames", window_frames), ("n_mels", n_mels)):
        if int(value) != value or value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    audio = int(n_fft) * 2
    feats = int(window_frames) * int(n_mels)
    return {"audio_ring_bytes": audio, "feature_window_bytes": feats, "total_bytes": audio + feats}


def _kb(n: int) -> float:
    return round(n / 1024.0, 2)


class PlatformLimitError(ValueError):
    """The deployed model misses a platform's size target and ``deploy.fail_on_exceed`` is true."""


def _field(prof: Any, key: str) -> Any:
    return prof[key] if isinstance(prof, Mapping) else getattr(prof, key)


def _exceeded(flash_bytes: int, ram_bytes: int, prof: Any) -> list[str]:
    """Why a model of these sizes misses one platform profile (empty: it fits)."""
    why = []
    for what, key, have in (("flash", "flash", flash_bytes), ("RAM", "ram", ram_bytes)):
        target, device = int(_field(prof, f"max_{key}_kb")), int(_field(prof, f"{key}_kb"))
        if target and have > target * 1024:
            why.append(f"{what} {_kb(have):g} KB ({have} bytes) > max_{key}_kb {target}")
        elif have > device * 1024:
            why.append(f"{what} {_kb(have):g} KB ({have} bytes) > the device's {device} KB")
    return why


def platform_fit(flash_bytes: int, ram_bytes: int, platforms: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Does a model of ``flash_bytes`` / ``ram_bytes`` fit each platform profile (``deploy.platforms``)?

    Per platform key: ``fits`` (within ``max_flash_kb`` and ``max_ram_kb`` where they are not 0, and always
    within the device's own flash and RAM), ``flash_kb`` / ``ram_kb`` (the model's), ``max_flash_kb`` /
    ``max_ram_kb`` (the targets, 0 = no limit), and ``flash_share_of_device`` / ``ram_share_of_device``
    (fractions 0-1 of the device totals, 4 decimals). Limits compare bytes with ``KB x 1024``. ``platforms``
    maps keys to :class:`wakeword.params.PlatformProfile` (or dicts with the same fields). Callers pass the
    measured figures (:func:`size_report` ``flash_bytes`` / ``ram_bytes``) or, before training, labelled
    estimates.
    """
    if flash_bytes < 0 or ram_bytes < 0:
        raise ValueError(f"flash_bytes ({flash_bytes}) and ram_bytes ({ram_bytes}) must be >= 0")
    out: dict[str, dict[str, Any]] = {}
    for key, prof in platforms.items():
        out[key] = {
            "fits": not _exceeded(flash_bytes, ram_bytes, prof),
            "flash_kb": _kb(flash_bytes),
            "ram_kb": _kb(ram_bytes),
            "max_flash_kb": int(_field(prof, "max_flash_kb")),
            "max_ram_kb": int(_field(prof, "max_ram_kb")),
            "flash_share_of_device": round(flash_bytes / (int(_field(prof, "flash_kb")) * 1024), 4),
            "ram_share_of_device": round(ram_bytes / (int(_field(prof, "ram_kb")) * 1024), 4),
        }
    return out


def platform_misses(flash_bytes: int, ram_bytes: int, platforms: Mapping[str, Any]) -> list[str]:
    """One line per platform the model misses, naming the platform, its figure and the limit (empty: all fit)."""
    lines = []
    for key, prof in platforms.items():
        why = _exceeded(flash_bytes, ram_bytes, prof)
        if why:
            lines.append(f"{_field(prof, 'name')} (deploy.platforms.{key}): " + ", ".join(why))
    return lines


def enforce_platform_limits(flash_bytes: int, ram_bytes: int, platforms: Mapping[str, Any],
                            fail_on_exceed: bool) -> list[str]:
    """Log a warning per platform the model misses and return those lines; with ``fail_on_exceed``
    (``deploy.fail_on_exceed``) raise :class:`PlatformLimitError` naming them instead."""
    misses = platform_misses(flash_bytes, ram_bytes, platforms)
    if misses and fail_on_exceed:
        raise PlatformLimitError(
            "the model misses its size target on " + "; ".join(misses)
            + ". deploy.fail_on_exceed is true: raise the target or set it false to only report"
        )
    for line in misses:
        log.warning("model does not fit %s", line)
    return misses


#: SPEC 4.7's pre-training flash formula: parameters x 1 byte (int8) x 1.1.
FORMULA_OVERHEAD = 1.1


def formula_flash_bytes(parameters: int) -> int:
    """SPEC 4.7's only allowed pre-training flash estimate: ``parameters x 1 byte x 1.1`` (int8 weights)."""
    if parameters < 0:
        raise ValueError(f"parameters must be >= 0, got {parameters}")
    return round(parameters * FORMULA_OVERHEAD)


def rough_size_estimate(shape: Mapping[str, int]) -> dict[str, int]:
    """ROUGH pre-training flash and arena of a model, before any training or conversion; fitted to ``ds_tcn``.

    ``shape`` (:func:`wakeword.deploy.model_shape`) has ``parameters``, ``input_elements`` (window frames x
    features), ``peak_pair_elements`` (largest input + output of one conv/linear call), ``conv_layers`` and
    ``conv_out_channels`` (summed over conv calls, Conv1d and Conv2d). Returns:

    - ``flash_formula_bytes``: SPEC 4.7's ``parameters x 1.1``. It counts int8 weights only, so it is 1.5-4.4x
      too small for these models: the flatbuffer also holds int32 biases, per-channel quantisation scales and
      zero points (~22 B per output channel) and ~0.9 KB of tensors/op records per layer.
    - ``flash_fit_bytes`` = ``parameters + 22 x conv_out_channels + 870 x conv_layers + 3400``.
    - ``arena_fit_bytes`` = ``1.5 x input + 0.5 x peak_pair + 8 x conv_out_channels + 200 x conv_layers + 1200``
      (int8 activations, the input's layout copy, per-channel requantisation multipliers and shifts, the
      interpreter's per-op records).

    The two fits are least-squares fits to 12 ``ds_tcn`` configurations (4-128 channels, 1-8 blocks, kernel 3-9,
    20-128 features, 73-198 frames) converted with litert-torch 0.10 and measured with tflite-micro on a 64-bit
    host, with random weights: flash within 3%, arena within 8% of the measured figure on those (the trained
    default model of the demo run: flash 6% under, arena 4% over). Another converter, architecture or
    MCU build (CMSIS-NN/ESP-NN scratch buffers, 32-bit pointers) moves them; the tflite stage measures the
    real figures. Not for anything but sizing a model before training it.

    Other architectures (``model.arch``): the same formulas apply but are rougher. They miss what ds_tcn does
    not have: per-op records of graphs with many small ops (the unrolled ``gru``/``lstm`` steps, MobileNetV3's
    squeeze-excite blocks: flash and arena well above the fit), activation buffers kept alive by residual
    connections (``resnet``, ``tcn``) and the two CMVN ops of the 2-D models. The measured defaults are in the
    table at the top of :mod:`wakeword.models`.
    """
    for key in ("parameters", "input_elements", "peak_pair_elements", "conv_layers", "conv_out_channels"):
        if int(shape[key]) < 0:
            raise ValueError(f"{key} must be >= 0, got {shape[key]}")
    params, convs, outch = int(shape["parameters"]), int(shape["conv_layers"]), int(shape["conv_out_channels"])
    flash_fit = params + 22 * outch + 870 * convs + 3400
    arena_fit = 1.5 * int(shape["input_elements"]) + 0.5 * int(shape["peak_pair_elements"]) + 8 * outch + 200 * convs
    return {
        "flash_formula_bytes": formula_flash_bytes(params),
        "flash_fit_bytes": int(flash_fit),
        "arena_fit_bytes": round((arena_fit + 1200) / ARENA_GRANULARITY) * ARENA_GRANULARITY,
    }


def size_report(
    tflite_path: str | os.PathLike[str], arena_bytes: int, buffers: Mapping[str, Any] | int
) -> dict[str, Any]:
    """Flash and RAM figures of one deployed model (SPEC 4.7).

    ``flash_bytes`` is the exact ``.tflite`` size; the C array it becomes (``const unsigned char model[]``)
    holds the same bytes, so ``c_array_bytes == flash_bytes`` (a header adds only a length variable and an
    alignment attribute). ``ram_*`` = measured arena + :func:`detector_buffer_bytes` ``total_bytes``
    (``buffers`` may also be that total as an int). KB figures are bytes / 1024, 2 decimals.
    """
    path = Path(tflite_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: TFLite model file not found")
    if isinstance(buffers, Mapping):
        if "total_bytes" not in buffers:
            raise ValueError(f"buffers must come from detector_buffer_bytes (a 'total_bytes' key), got {dict(buffers)}")
        buf = int(buffers["total_bytes"])
    else:
        buf = int(buffers)
    if arena_bytes < 0 or buf < 0:
        raise ValueError(f"arena_bytes ({arena_bytes}) and buffer bytes ({buf}) must be >= 0")
    flash = os.path.getsize(path)
    ram = int(arena_bytes) + buf
    return {
        "flash_bytes": flash,
        "flash_kb": _kb(flash),
        "c_array_bytes": flash,
        "c_array_kb": _kb(flash),
        "arena_bytes": int(arena_bytes),
        "arena_kb": _kb(int(arena_bytes)),
        "detector_buffers_bytes": buf,
        "detector_buffers_kb": _kb(buf),
        "ram_bytes": ram,
        "ram_kb": _kb(ram),
    }
