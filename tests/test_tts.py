"""Speech engines: audible 16 kHz output of plausible duration, voice diversity, bit-reproducibility."""

from __future__ import annotations

import numpy as np
import pytest

from wakeword import tts


@pytest.fixture(scope="module")
def espeak() -> tts.EspeakEngine:
    return tts.get_espeak()


@pytest.fixture(scope="module")
def piper() -> tts.PiperEngine:
    return tts.get_piper()


def _dominant_hz(x: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.fft.rfftfreq(x.size, 1.0 / sr)[int(np.argmax(spec))])


def test_resample_ratio_keeps_duration_and_pitch() -> None:
    sr = 22050
    t = np.arange(sr) / sr
    y = tts.resample_to_16k(np.sin(2 * np.pi * 440.0 * t), sr)
    assert y.dtype == np.float32
    assert y.size == 16000  # exactly 1 s
    assert abs(_dominant_hz(y, 16000) - 440.0) < 2.0


def test_trim_silence_keeps_50_ms() -> None:
    x = np.zeros(16000, dtype=np.float32)
    x[6000:8000] = 0.5
    y = tts.trim_silence(x)
    assert y.size == 2000 + 2 * 800


def test_default_accents_exist(espeak: tts.EspeakEngine) -> None:
    accents = set(tts.available_espeak_accents())
    for a in ["en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-us-nyc"]:
        assert a in accents
    variants = tts.available_espeak_variants()
    assert variants[:3] == ["m1", "m2", "m3"] and "klatt4" in variants and len(variants) > 50
    assert espeak.deterministic


def test_espeak_audio_is_16k_and_plausible(espeak: tts.EspeakEngine) -> None:
    x = espeak.synthesize("hey jarvis", "en-us+f3", rate_wpm=175, pitch=50)
    assert x.dtype == np.float32 and x.ndim == 1
    assert 0.3 <= x.size / tts.TARGET_SR <= 3.0  # a wrong resample ratio would halve or double this
    assert float(np.sqrt(np.mean(x**2))) > 0.01
    native = espeak.synthesize_native("hey jarvis", "en-us+f3")
    untrimmed = espeak.synthesize("hey jarvis", "en-us+f3", trim=False)
    assert abs(untrimmed.size - native.size * 16000 / 22050) <= 2


def test_espeak_rate_changes_duration(espeak: tts.EspeakEngine) -> None:
    slow = espeak.synthesize("the weather is nice today", "en-us+m1", rate_wpm=120)
    fast = espeak.synthesize("the weather is nice today", "en-us+m1", rate_wpm=240)
    assert slow.size > 1.4 * fast.size


def test_espeak_voices_differ(espeak: tts.EspeakEngine) -> None:
    a = espeak.synthesize("hey jarvis", "en-us+m1")
    b = espeak.synthesize("hey jarvis", "en-gb-scotland+f3")
    c = espeak.synthesize("hey jarvis", "en-us+m1", pitch=80)
    assert a.size != b.size or not np.array_equal(a, b)
    assert a.size != c.size or not np.array_equal(a, c)


def test_espeak_is_order_independent(espeak: tts.EspeakEngine) -> None:
    a = espeak.synthesize("hey jarvis", "en-029+whisper", seed=5)
    espeak.synthesize("a completely different sentence in between", "en+klatt4", seed=9)
    b = espeak.synthesize("hey jarvis", "en-029+whisper", seed=5)
    assert np.array_equal(a, b)


def test_espeak_rejects_unknown_voice(espeak: tts.EspeakEngine) -> None:
    with pytest.raises(tts.TTSEngineError, match="variant 'nosuchvariant'"):
        espeak.synthesize("hello", "en-us+nosuchvariant")
    with pytest.raises(tts.TTSEngineError, match="accent 'xx-nowhere'"):
        espeak.synthesize("hello", "xx-nowhere+m1")


def test_espeak_phonemes_find_homophones(espeak: tts.EspeakEngine) -> None:
    assert espeak.phonemes("hay jarvis") == espeak.phonemes("Hey, Jarvis!")
    assert espeak.phonemes("hey marvis") != espeak.phonemes("hey jarvis")


def test_piper_audio_is_16k_and_plausible(piper: tts.PiperEngine) -> None:
    x = piper.synthesize("hey jarvis", length_scale=1.0, noise_scale=0.667, noise_w_scale=0.8, seed=1)
    assert x.dtype == np.float32 and x.ndim == 1
    assert 0.3 <= x.size / tts.TARGET_SR <= 3.0
    assert float(np.sqrt(np.mean(x**2))) > 0.01
    native = piper.synthesize_native("hey jarvis", seed=1)
    untrimmed = piper.synthesize("hey jarvis", seed=1, trim=False)
    assert abs(untrimmed.size - native.size * 16000 / 22050) <= 2


def test_piper_is_bit_reproducible(piper: tts.PiperEngine) -> None:
    a = piper.synthesize("hey jarvis", length_scale=1.1, noise_scale=0.8, seed=42)
    piper.synthesize("something else first", seed=3)
    b = piper.synthesize("hey jarvis", length_scale=1.1, noise_scale=0.8, seed=42)
    assert np.array_equal(a, b)
    c = piper.synthesize("hey jarvis", length_scale=1.1, noise_scale=0.8, seed=43)
    assert a.size != c.size or not np.array_equal(a, c)


def test_piper_length_scale_changes_duration(piper: tts.PiperEngine) -> None:
    short = piper.synthesize("hey jarvis", length_scale=0.8, seed=1)
    long = piper.synthesize("hey jarvis", length_scale=1.35, seed=1)
    assert long.size > 1.25 * short.size


def test_piper_accent_changes_pronunciation_not_voice(piper: tts.PiperEngine) -> None:
    assert piper.native_accent == "en-us"
    us = piper.phonemes("hey jarvis")
    rp = piper.phonemes("hey jarvis", "en-gb-x-rp")
    # Piper's phoneme id of "ɹ" (the r of American "jarvis"); RP drops it before a consonant
    r_id = 88
    assert r_id in us and r_id not in rp and len(rp) == len(us) - 2  # one phoneme and its pad fewer
    assert piper.phonemes("hey jarvis", "en-us") == us
    a = piper.synthesize("hey jarvis", seed=5)
    assert np.array_equal(a, piper.synthesize("hey jarvis", seed=5, accent="en-us"))
    b = piper.synthesize("hey jarvis", seed=5, accent="en-gb-x-rp")
    assert a.size != b.size or not np.array_equal(a, b)
    with pytest.raises(tts.TTSEngineError, match="en-zz"):
        piper.phonemes("hey jarvis", "en-zz")
    assert piper.phonemes("hey jarvis") == us  # the voice's own accent is back after the failure


def test_engines_are_singletons() -> None:
    assert tts.get_espeak() is tts.get_espeak()
    assert tts.get_piper() is tts.get_piper()


def test_pico_is_deterministic_16k_and_varies_with_settings() -> None:
    pico = tts.get_pico()
    a = pico.synthesize("hey jarvis", "en-US", 100, 100)
    b = pico.synthesize("hey jarvis", "en-US", 100, 100)
    assert np.array_equal(a, b)  # a fresh engine per utterance: no state carried between calls
    assert a.dtype == np.float32 and 0.4 < a.size / 16000 < 2.0 and 0.05 < float(np.abs(a).max()) <= 1.0
    slow = pico.synthesize("hey jarvis", "en-US", 70, 100)
    assert slow.size > a.size * 1.2
    gb = pico.synthesize("hey jarvis", "en-GB", 100, 100)
    assert gb.size != a.size or not np.array_equal(gb, a)
    high = pico.synthesize("hey jarvis", "en-US", 100, 140)
    assert _dominant_hz(high, 16000) > _dominant_hz(a, 16000)
    with pytest.raises(tts.TTSEngineError, match="not one of"):
        pico.synthesize("hey jarvis", "de-DE")


@pytest.fixture(scope="module")
def dectalk() -> tts.DectalkEngine:
    return tts.get_dectalk()


def _f0_hz(x: np.ndarray, sr: int = 16000) -> float:
    """Median autocorrelation pitch (60-400 Hz) of the 30 ms frames within 10 dB of the loudest."""
    n = int(0.03 * sr)
    frames = [x[i:i + n] for i in range(0, x.size - n, n // 2)]
    energy = np.array([float(np.sum(f * f)) for f in frames])
    f0 = []
    for f in (f for f, e in zip(frames, energy) if e > 0.1 * energy.max()):
        ac = np.correlate(f - f.mean(), f - f.mean(), "full")[n - 1:]
        lo, hi = sr // 400, sr // 60
        f0.append(sr / (lo + int(np.argmax(ac[lo:hi]))))
    return float(np.median(f0))


def test_dectalk_is_deterministic_16k_and_varies_with_settings(dectalk: tts.DectalkEngine) -> None:
    a = dectalk.synthesize("hey jarvis", "paul", 100, 100)
    assert np.array_equal(a, dectalk.synthesize("hey jarvis", "paul", 100, 100))  # a fresh process per utterance
    assert a.dtype == np.float32 and 0.4 < a.size / 16000 < 2.0 and 0.05 < float(np.abs(a).max()) <= 1.0
    slow = dectalk.synthesize("hey jarvis", "paul", 70, 100)
    assert slow.size > a.size * 1.2
    voices = {v: dectalk.synthesize("hey jarvis", v) for v in tts.DECTALK_VOICES}
    assert len({x.tobytes() for x in voices.values()}) == len(tts.DECTALK_VOICES)
    # the speakers' own pitches order as the table says: Harry (89 Hz) < Paul (122 Hz) < Betty (208 Hz)
    f0 = {v: _f0_hz(voices[v]) for v in ("harry", "paul", "betty")}
    assert f0["harry"] < f0["paul"] < f0["betty"], f0
    assert _f0_hz(dectalk.synthesize("hey jarvis", "paul", 100, 140)) > 1.2 * f0["paul"]


def test_dectalk_pitch_100_is_each_voice_as_it_comes(dectalk: tts.DectalkEngine) -> None:
    """Pitch 100% sets each speaker's own average pitch: byte-identical to `say` without any voice command."""
    import subprocess

    for i, voice in enumerate(tts.DECTALK_VOICES):
        raw = subprocess.run([str(dectalk.say), "-s", str(i), "-e", "1", "-fo", "stdout:raw", "-a", "hey jarvis"],
                             cwd=dectalk.package_dir, env=dectalk.env, capture_output=True, check=True).stdout
        assert dectalk.synthesize_native("hey jarvis", voice, 100, 100).tobytes() == (
            (np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0).tobytes()), voice


def test_dectalk_rejects_bad_voices_and_command_text(dectalk: tts.DectalkEngine) -> None:
    with pytest.raises(tts.TTSEngineError, match="not one of"):
        dectalk.synthesize("hey jarvis", "val")
    with pytest.raises(tts.TTSEngineError, match="start DECtalk commands"):
        dectalk.synthesize("[:np] hey jarvis", "paul")
    with pytest.raises(tts.TTSEngineError, match="empty"):
        dectalk.synthesize("  ", "paul")
    cmd = dectalk.command("hey", "kit", 1000, 1000)  # clamped to DECtalk's ranges, not passed through
    assert cmd[cmd.index("-r") + 1] == "600" and cmd[-1] == "[:dv ap 350] hey"


def test_pulse_stub_is_built_once_and_its_absence_is_explained(tmp_path, monkeypatch) -> None:
    import ctypes

    lib_dir = tts.pulse_simple_stub_dir(tmp_path)
    lib = ctypes.CDLL(str(lib_dir / "libpulse-simple.so.0"))
    err = ctypes.c_int(7)
    assert lib.pa_simple_new(None, None, 0, None, None, None, None, None, ctypes.byref(err)) != 0 and err.value == 0
    # cached: a second call compiles nothing (a compiler that does not exist is never run)
    assert tts.pulse_simple_stub_dir(tmp_path, compiler="/nonexistent/cc") == lib_dir
    with pytest.raises(tts.TTSEngineError, match="stand-in with '/nonexistent/cc' failed"):
        tts.pulse_simple_stub_dir(tmp_path / "other", compiler="/nonexistent/cc")
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(tts.shutil, "which", lambda name: None)
    with pytest.raises(tts.TTSEngineError, match="apt install libpulse0"):
        tts.pulse_simple_stub_dir(tmp_path / "none")
    assert not [p for p in (tmp_path / "other").rglob("*") if p.is_file()]  # nothing half-built left behind


def test_dectalk_without_libpulse_names_it(dectalk: tts.DectalkEngine, monkeypatch) -> None:
    import ctypes.util

    if ctypes.util.find_library("pulse-simple") is not None:
        pytest.skip("this machine has libpulse-simple.so.0: say cannot be made to miss it")
    monkeypatch.setitem(dectalk.env, "LD_LIBRARY_PATH", "")
    with pytest.raises(tts.TTSEngineError, match=r"libpulse-simple.so.0 not found"):
        dectalk.synthesize_native("hey", "paul")
