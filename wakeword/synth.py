"""Build the synthetic demo data set: clips of four kinds plus long negative-only evaluation streams.

Layout written under ``out_dir`` (built in a temporary sibling directory and renamed at the end, so a
failure never leaves a half-written data set)::

    clips/{positive,negative,hard_negative,background}/<id>.wav   16 kHz mono PCM_16
    streams/{val,test,train}.wav + .json                         long continuous negative audio (train: mining)
    manifest.jsonl                                                one JSON object per clip / stream

Determinism: every random choice comes from ``np.random.default_rng([seed, kind_code, ...])`` keyed by
the item's index (never by processing order), the engines themselves are made bit-reproducible
(:mod:`wakeword.tts`), and results are gathered by id, so the worker count cannot change a single byte.

Voices: every espeak (accent, variant) pair, up to ``espeak_variants_per_accent`` variants per accent,
shuffled with the seed; a ``stream_voice_fraction`` share is reserved for the streams (half val, half test;
as many again for the training stream that hard-negative mining scores) and never renders a clip, so false
alarms per hour are measured on unseen voices.
"""

from __future__ import annotations

import copy
import json
import logging
import multiprocessing as mp
import os
import shutil
import time
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm import tqdm

from wakeword import augment as A
from wakeword import noise as N
from wakeword import text as T
from wakeword import tts
from wakeword.params import SynthParams

LOG = logging.getLogger(__name__)

SR = tts.TARGET_SR
CLIP_KINDS: tuple[str, ...] = ("positive", "negative", "hard_negative", "background")
KIND_CODES: dict[str, int] = {"positive": 1, "negative": 2, "hard_negative": 3, "background": 4, "stream": 5}
HELDOUT_CODES: dict[str, int] = {"positive": 11, "negative": 12, "hard_negative": 13}
_PLAN_CODE = 100  # rng sub-stream for plan-level choices (as opposed to per-item streams)
_VOICE_CODE = 6
_PAIR_CODE = 101  # rng sub-stream for the choice of minimal pairs (confusable clips voiced like a positive)
_SPELL_CODE = 102  # rng sub-stream for the spelling of held-out and stream confusables (other draws unchanged)
ROLE_CODES: dict[str, int] = {"val": 1, "test": 2, "heldout": 3, "train": 4}
HELDOUT_ENGINE_CODES: dict[str, int | None] = {"pico": None, "dectalk": 201}
"""rng sub-stream of each held-out engine's clips; Pico's items keep the keys they had when it was the only
held-out engine, so adding an engine leaves Pico's clips byte-identical."""

CLIP_LEVEL_DBFS = -20.0
PEAK_LIMIT = 0.89  # -1 dBFS
PITCH_RANGE = (25.0, 85.0)  # espeak intonation range; not in params (kept internal)
PIPER_NOISE_W = (0.5, 1.0)  # Piper phoneme-duration noise; SynthParams has no field for it
#: revoiced Piper clips: formants move this many octaves per octave of pitch (0.25: +9 semitones of pitch,
#: formants x1.17 - roughly a man's voice made a woman's; Peterson & Barney's formants differ ~15-20 %)
REVOICE_FORMANT_PER_OCTAVE = 0.25

STREAM_BLOCK_S = 120.0  # streams are rendered in independent blocks of this length (fixed: determinism)
STREAM_FADE_S = 0.1  # blocks overlap by this much and are cross-faded (bed only in the overlap)
STREAM_GAP_S = (0.2, 3.0)
STREAM_SPEECH_DBFS = (-35.0, -12.0)
STREAM_BED_DBFS = (-70.0, -60.0)
STREAM_NONSPEECH_DBFS = (-45.0, -18.0)
STREAM_NONSPEECH_S = (2.0, 15.0)
STREAM_P_NONSPEECH = 0.25
STREAM_P_CONFUSABLE = 0.05  # share of speech utterances that are confusable phrases
NONSPEECH_KINDS: tuple[str, ...] = ("music", "music", "noise", "household", "household", "hum", "babble")


class SynthError(RuntimeError, ValueError):
    """The data set could not be synthesised (bad configuration or an engine failure).

    Also a ``ValueError`` because stages turn ValueErrors from the library into a one-line failure.
    """


# ----------------------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------------------


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), *[int(k) for k in keys]])


def _item_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


def _uniform(rng: np.random.Generator, lo_hi: tuple[float, float]) -> float:
    lo, hi = float(lo_hi[0]), float(lo_hi[1])
    return lo if hi <= lo else float(rng.uniform(lo, hi))


def _peak_limit(x: np.ndarray, peak: float = PEAK_LIMIT) -> np.ndarray:
    """Scale down (never up) so |x| <= peak: a level target must not cause clipping."""
    m = float(np.max(np.abs(x))) if x.size else 0.0
    return (x * (peak / m)).astype(np.float32) if m > peak else x.astype(np.float32)


def _level(x: np.ndarray, dbfs: float) -> np.ndarray:
    return _peak_limit(N.set_level_dbfs(x, dbfs))


def _fade(x: np.ndarray, fade_s: float = 0.02) -> np.ndarray:
    """Short raised-cosine fade in/out so inserted segments do not click."""
    n = min(int(fade_s * SR), x.size // 2)
    if n <= 0:
        return x
    ramp = 0.5 - 0.5 * np.cos(np.linspace(0.0, np.pi, n))
    y = x.astype(np.float32).copy()
    y[:n] *= ramp
    y[-n:] *= ramp[::-1]
    return y


def _write_wav(path: Path, x: np.ndarray) -> None:
    sf.write(str(path), np.clip(x, -1.0, 1.0).astype(np.float32), SR, subtype="PCM_16", format="WAV")


def _crc(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


# ----------------------------------------------------------------------------------------------------------
# Voices and plan
# ----------------------------------------------------------------------------------------------------------


def build_voice_pool(params: SynthParams, seed: int) -> list[tts.EspeakVoice]:
    """All (accent, variant) pairs, at most ``espeak_variants_per_accent`` per accent, seeded shuffle.

    Per accent the core human-sounding variants are taken first (shuffled), then the named/novelty
    ones, so a small per-accent count still gives natural voices. Accents missing from espeak's data
    dir are skipped with a warning; if none is left that is an error.
    """
    available = set(tts.available_espeak_accents())
    variants = tts.available_espeak_variants()
    core = [v for v in variants if v in tts.CORE_ESPEAK_VARIANTS]
    rest = [v for v in variants if v not in tts.CORE_ESPEAK_VARIANTS]
    pool: list[tts.EspeakVoice] = []
    seen: set[str] = set()
    for accent in params.espeak_accents:
        acc = accent.strip().lower()
        if acc in seen:
            continue
        seen.add(acc)
        if acc not in available:
            LOG.warning("synth.espeak_accents: accent %r is not in espeak-ng's data dir; skipped", accent)
            continue
        r = _rng(seed, _VOICE_CODE, _crc(acc))
        ordered = [core[i] for i in r.permutation(len(core))] + [rest[i] for i in r.permutation(len(rest))]
        pool += [tts.EspeakVoice(acc, v) for v in ordered[: params.espeak_variants_per_accent]]
    if not pool:
        raise SynthError(
            f"synth.espeak_accents = {list(params.espeak_accents)}: none of these accents exists in espeak-ng "
            f"(available English ones: {sorted(a for a in available if a.startswith('en'))})"
        )
    pool.sort()
    order = _rng(seed, _VOICE_CODE, _PLAN_CODE).permutation(len(pool))
    return [pool[int(i)] for i in order]


def split_voice_pool(pool: list[tts.EspeakVoice], fraction: float,
                     train_stream: bool = False) -> dict[str, list[tts.EspeakVoice]]:
    """Reserve ``fraction`` of the pool for the streams (half val, half test); the rest render clips. With
    ``train_stream``, as many voices as the val stream has are reserved next for the training stream (the
    hard-negative mining material), so none of its voices speaks a clip of any split either."""
    n_res = max(2, round(fraction * len(pool)))
    n_train = n_res // 2 if train_stream else 0
    if len(pool) - n_res - n_train < 1:
        raise SynthError(
            f"synth.stream_voice_fraction = {fraction}: the espeak voice pool has only {len(pool)} voices, too "
            "few to reserve one for each stream and keep one for clips; raise synth.espeak_variants_per_accent"
        )
    n_val = n_res // 2
    return {"val": pool[:n_val], "test": pool[n_val:n_res], "train": pool[n_res:n_res + n_train],
            "clips": pool[n_res + n_train:]}


def _word_gap(lo_hi: tuple[int, int] | list[int], rng: np.random.Generator) -> int:
    """espeak-ng's extra pause between words (x 10 ms): digital silence between the words."""
    return int(rng.integers(int(lo_hi[0]), int(lo_hi[1]) + 1))


def _espeak_settings(params: SynthParams, rng: np.random.Generator, positive: bool) -> dict[str, Any]:
    """Rate, pitch, intonation range, pause between words and engine seed of one espeak clip. The pause is drawn
    for positives only unless ``uniform_kinds`` (then for every kind; a pause only positives have is a label
    cue, see the README's session 21)."""
    return {
        "rate_wpm": round(_uniform(rng, params.speed_wpm)),
        "pitch": round(_uniform(rng, params.pitch)),
        "pitch_range": round(_uniform(rng, PITCH_RANGE)),
        "word_gap": _word_gap(params.espeak_word_gap, rng) if positive or params.uniform_kinds else 0,
        "seed": _item_seed(rng),
    }


def heldout_voices(engine: str) -> tuple[str, ...]:
    """The built-in voices of a held-out engine (``synth.heldout_engines``)."""
    voices = {"pico": tts.PICO_VOICES, "dectalk": tts.DECTALK_VOICES}
    if engine not in voices:
        raise SynthError(f"synth.heldout_engines: {engine!r} is not a held-out engine ({', '.join(voices)})")
    return voices[engine]


def _heldout_settings(params: SynthParams, rng: np.random.Generator) -> dict[str, Any]:
    """Rate and pitch, in percent of the voice's own, of a held-out-engine utterance (Pico and DECtalk alike)."""
    return {"rate": round(_uniform(rng, params.heldout_rate)), "pitch": round(_uniform(rng, params.heldout_pitch))}


def _with_vtlp(settings: dict[str, Any], params: SynthParams, rng: np.random.Generator) -> dict[str, Any]:
    """With probability ``vtlp_prob`` add a formant warp factor: a new speaker-like voice from the same engine."""
    if rng.random() < params.vtlp_prob:
        settings["vtlp"] = round(_uniform(rng, params.vtlp_alpha), 4)
    return settings


def _with_revoice(settings: dict[str, Any], params: SynthParams, rng: np.random.Generator) -> dict[str, Any]:
    """With probability ``piper_revoice_prob`` make a Piper clip another speaker (:func:`wakeword.augment.revoice`):
    pitch uniform in ``piper_revoice_semitones``, formants following it by :data:`REVOICE_FORMANT_PER_OCTAVE`
    octaves per octave of pitch, +-4 %. Replaces the clip's VTLP warp (the formant move includes one)."""
    if rng.random() < params.piper_revoice_prob:
        st = _uniform(rng, params.piper_revoice_semitones)
        formant = 2.0 ** (REVOICE_FORMANT_PER_OCTAVE * st / 12.0) * _uniform(rng, (0.96, 1.04))
        settings["revoice"] = {"semitones": round(st, 3), "formant": round(formant, 4)}
        settings.pop("vtlp", None)
    return settings


def _piper_settings(params: SynthParams, rng: np.random.Generator) -> dict[str, Any]:
    return {
        "length_scale": round(_uniform(rng, params.piper_length_scale), 4),
        "noise_scale": round(_uniform(rng, params.piper_noise_scale), 4),
        "noise_w_scale": round(_uniform(rng, PIPER_NOISE_W), 4),
        "seed": _item_seed(rng),
    }


def check_piper_accents(params: SynthParams, tasks: list[dict[str, Any]]) -> None:
    """Fail before rendering when Piper clips are planned and one of ``synth.piper_accents`` is not a voice
    Piper's espeak-ng phonemizer knows (the error names the key and the accent)."""
    if not any(t["engine"] == "piper" for t in tasks):
        return
    engine = tts.get_piper()
    for accent in dict.fromkeys(params.piper_accents):
        try:
            engine.phonemes(params.phrase, accent)
        except tts.TTSEngineError as exc:
            raise SynthError(f"synth.piper_accents: {accent!r} cannot be used: {exc}") from None


def confusables_for(phrase: str, seed: int) -> list[str]:
    """Confusable phrases for ``phrase`` with espeak homophones of the phrase removed."""
    engine = tts.get_espeak()
    out = T.confusable_phrases(phrase, _rng(seed, KIND_CODES["hard_negative"], _PLAN_CODE),
                               same_sound=lambda s: engine.phonemes(s, "en-us"))
    if not out:
        raise SynthError(f"synth.phrase = {phrase!r}: no confusable phrases could be derived")
    return out


def plan_clips(params: SynthParams, seed: int, clip_voices: list[tts.EspeakVoice],
               confusables: list[str]) -> list[dict[str, Any]]:
    """One task per speech clip: text, engine, voice and every synthesis setting, fixed up front."""
    tasks: list[dict[str, Any]] = []
    counts = {"positive": params.n_positive, "negative": params.n_negative, "hard_negative": params.n_confusable}
    for kind, n in counts.items():
        code = KIND_CODES[kind]
        plan_rng = _rng(seed, code, _PLAN_CODE)
        n_piper = round(n * params.piper_fraction)
        piper_idx = {int(i) for i in plan_rng.permutation(n)[:n_piper]}
        voice_order = [clip_voices[int(i)] for i in plan_rng.permutation(len(clip_voices))]
        j = 0
        for i in range(n):
            r = _rng(seed, code, i)
            if kind == "positive":
                text = spoken_text(params.phrase, params.phrase, params.context_word_prob, r)
            elif kind == "negative":
                text = T.negative_text(params.phrase, r)
            elif params.uniform_kinds:  # spelled and framed like a positive: only the words differ
                text = spoken_text(confusables[i % len(confusables)], params.phrase, params.context_word_prob, r)
            else:
                text = confusables[i % len(confusables)]
            cid = f"{kind}-{i:06d}"
            task: dict[str, Any] = {"id": cid, "kind": kind, "text": text,
                                    "path": f"clips/{kind}/{cid}.wav"}
            if i in piper_idx:
                task.update(engine="piper", voice=tts.PIPER_VOICE_NAME, group=f"piper:{tts.PIPER_VOICE_NAME}",
                            settings=_piper_settings(params, r))
            else:
                v = voice_order[j % len(voice_order)]
                j += 1
                task.update(engine="espeak", voice=v.name, group=v.group,
                            settings=_espeak_settings(params, r, kind == "positive"))
            _with_vtlp(task["settings"], params, r)
            if task["engine"] == "piper":
                _with_revoice(task["settings"], params, r)
                if set(params.piper_accents) != {tts.PIPER_ACCENT}:  # absent: the voice's own accent
                    # last draw of the item: the other settings do not depend on the accent list
                    task["settings"]["accent"] = params.piper_accents[int(r.integers(len(params.piper_accents)))]
            tasks.append(task)
    return _with_minimal_pairs(tasks, params, seed)


def spoken_text(words: str, phrase: str, context_word_prob: float, rng: np.random.Generator) -> str:
    """What a clip or stream utterance says for ``words`` (the wake phrase or one of its confusables): one of
    :func:`wakeword.text.spelling_variants` (a comma after the first word, capitals, '?' / '!'), and with
    ``context_word_prob`` short words around it (:func:`wakeword.text.with_context_words`). The same draws for
    the phrase and a confusable, so a pause between the words, or a question's intonation, never tells the one
    from the other. A frame that would change whether the text contains ``phrase`` (a confusable "jarvis"
    after "hey") is not used: that text keeps its spelling without context words."""
    spellings = T.spelling_variants(words)
    text = spellings[int(rng.integers(len(spellings)))]
    if rng.random() < context_word_prob:
        framed = T.with_context_words(words, rng)
        if T.contains_phrase(framed, phrase) == T.contains_phrase(words, phrase):
            text = framed
    return text


def _with_minimal_pairs(tasks: list[dict[str, Any]], params: SynthParams, seed: int) -> list[dict[str, Any]]:
    """Re-voice ``round(confusable_pairs * n_confusable)`` confusable clips exactly like a positive clip.

    A paired confusable takes the engine, voice, group and every synthesis setting (rate, pitch, word gap, engine
    seed, formant warp, revoicing, accent) of one positive, so the two clips differ only in the words: a minimal
    pair ("hey jarvis" / "hey charvis" in one voice and prosody). Different confusables pair with different
    positives while there are enough of them. The choice comes from its own rng stream: with 0 the plan is the
    unpaired one, and the texts and the unpaired clips never depend on the share. The pair shares the positive's
    voice group, so the split keeps both in one partition.
    """
    n_pairs = round(params.confusable_pairs * params.n_confusable)
    if n_pairs == 0:
        return tasks
    positives = [t for t in tasks if t["kind"] == "positive"]
    confusable_idx = [i for i, t in enumerate(tasks) if t["kind"] == "hard_negative"]
    rng = _rng(seed, KIND_CODES["hard_negative"], _PAIR_CODE)
    chosen = sorted(int(k) for k in rng.permutation(len(confusable_idx))[:n_pairs])
    partners = rng.permutation(len(positives))
    for k, c in enumerate(chosen):
        i = confusable_idx[c]
        pos = positives[int(partners[k % len(partners)])]
        tasks[i] = {**tasks[i], "engine": pos["engine"], "voice": pos["voice"], "group": pos["group"],
                    "settings": copy.deepcopy(pos["settings"]), "pair_of": pos["id"]}
    return tasks


def plan_heldout(params: SynthParams, seed: int, confusables: list[str]) -> list[dict[str, Any]]:
    """Clips from the held-out engines (never in train/val/test): the generalisation check.

    The engines' own voices, varied in rate and pitch only (no formant warp: the point is to measure the
    model on voices as an unseen engine makes them). Every engine of ``heldout_engines`` gets the
    ``n_heldout_*`` counts, its voices in turn; items carry ``role = "heldout"``. With
    ``heldout_uniform_kinds`` (the default) its confusables are spelled and framed like its positives
    (:func:`spoken_text`), so no pause or intonation tells them apart: a yardstick without the label cue.
    """
    if not params.heldout_engines:
        return []
    counts = {"positive": params.n_heldout_positive, "negative": params.n_heldout_negative,
              "hard_negative": params.n_heldout_confusable}
    tasks: list[dict[str, Any]] = []
    for engine in params.heldout_engines:
        voices = heldout_voices(engine)
        ecode = HELDOUT_ENGINE_CODES[engine]
        for kind, n in counts.items():
            code = HELDOUT_CODES[kind]
            keys = (code,) if ecode is None else (code, ecode)
            for i in range(n):
                r = _rng(seed, *keys, i)
                if kind == "positive":
                    text = spoken_text(params.phrase, params.phrase, params.context_word_prob, r)
                elif kind == "negative":
                    text = T.negative_text(params.phrase, r)
                else:
                    text = confusables[int(r.integers(len(confusables)))]
                    if params.heldout_uniform_kinds:  # its own rng stream: the clip's rate and pitch stay the same
                        text = spoken_text(text, params.phrase, params.context_word_prob,
                                           _rng(seed, *keys, i, _SPELL_CODE))
                voice = voices[i % len(voices)]
                cid = f"heldout-{kind}-{i:06d}" if ecode is None else f"heldout-{engine}-{kind}-{i:06d}"
                tasks.append({"id": cid, "kind": kind, "text": text, "path": f"clips/heldout/{kind}/{cid}.wav",
                              "engine": engine, "voice": voice, "group": f"{engine}:{voice}", "role": "heldout",
                              "settings": _heldout_settings(params, r)})
    return tasks


def plan_backgrounds(params: SynthParams, seed: int, negative_paths: list[str]) -> list[dict[str, Any]]:
    """Background clips: kinds cycled for balance, a fifth of them a mix of two kinds."""
    code = KIND_CODES["background"]
    kinds = list(N.BACKGROUND_KINDS)
    order = [kinds[int(i)] for i in _rng(seed, code, _PLAN_CODE).permutation(len(kinds))]
    tasks = []
    for i in range(params.n_background):
        r = _rng(seed, code, i)
        mix = [order[i % len(order)]]
        if r.random() < 0.2:
            second = kinds[int(r.integers(len(kinds)))]
            if second not in mix:
                mix.append(second)
        babble_src: list[str] = []
        if "babble" in mix:
            if not negative_paths:
                mix = [k for k in mix if k != "babble"] or ["pink"]
            else:
                k = min(len(negative_paths), 12)
                babble_src = [negative_paths[int(x)] for x in r.choice(len(negative_paths), size=k, replace=False)]
        cid = f"background-{i:06d}"
        tasks.append({"id": cid, "kind": "background", "text": "", "engine": "noise", "voice": "+".join(mix),
                      "group": f"noise:{cid}", "path": f"clips/background/{cid}.wav",
                      "duration_s": params.background_s, "babble_src": babble_src, "seed": _item_seed(r)})
    return tasks


def plan_stream_blocks(params: SynthParams, seed: int, role: str, voices: list[tts.EspeakVoice] | list[str],
                       confusables: list[str], work_dir: str, engine: str = "espeak") -> list[dict[str, Any]]:
    """Cut a stream into fixed-length blocks (a short remainder joins the last block).

    ``engine`` speaks every utterance of the stream (espeak for val/test) with ``voices`` (espeak voices). The
    held-out stream's ``engine`` names its engines joined by ``+`` and its ``voices`` are ``engine:voice``
    (e.g. ``pico:en-US``): every utterance draws one of the held-out engines' voices.
    """
    hours = {"val": params.stream_val_h, "test": params.stream_test_h, "heldout": params.stream_heldout_h,
             "train": params.stream_train_h}[role]
    total = round(hours * 3600 * SR)
    block = int(STREAM_BLOCK_S * SR)
    cores = [block] * (total // block)
    rem = total - sum(cores)
    if rem:
        if cores and rem < 10 * SR:
            cores[-1] += rem
        else:
            cores.append(rem)
    bed_rng = _rng(seed, KIND_CODES["stream"], ROLE_CODES[role], _PLAN_CODE)
    w = bed_rng.dirichlet([1.0, 1.0])
    bed = {"level_dbfs": round(_uniform(bed_rng, STREAM_BED_DBFS), 3),
           "pink": round(float(w[0]) * 0.7, 4), "brown": round(float(w[1]) * 0.7, 4), "white": 0.3}
    tasks, start = [], 0
    for b, core in enumerate(cores):
        tasks.append({
            "role": role, "block": b, "start": start, "core": core,
            "tail": int(STREAM_FADE_S * SR) if b < len(cores) - 1 else 0, "head": int(STREAM_FADE_S * SR) if b else 0,
            "voices": [v if isinstance(v, str) else v.name for v in voices], "engine": engine,
            "confusables": confusables, "phrase": params.phrase,
            "speed_wpm": list(params.speed_wpm), "pitch": list(params.pitch), "bed": bed, "seed": seed,
            "espeak_word_gap": list(params.espeak_word_gap), "uniform_kinds": params.uniform_kinds,
            "spell_confusables": params.heldout_uniform_kinds if role == "heldout" else params.uniform_kinds,
            "context_word_prob": params.context_word_prob,
            "heldout_rate": list(params.heldout_rate), "heldout_pitch": list(params.heldout_pitch),
            "out": str(Path(work_dir) / f"{role}-{b:05d}.npy"),
        })
        start += core
    return tasks


# ----------------------------------------------------------------------------------------------------------
# Workers (top-level functions so a spawn pool can import them)
# ----------------------------------------------------------------------------------------------------------


def _render_speech(engine: str, voice: str, text: str, settings: dict[str, Any]) -> np.ndarray:
    if engine == "piper":
        x = tts.get_piper().synthesize(text, settings["length_scale"], settings["noise_scale"],
                                       settings["noise_w_scale"], seed=settings["seed"],
                                       accent=settings.get("accent"))
    elif engine == "pico":
        x = tts.get_pico().synthesize(text, voice, settings["rate"], settings["pitch"])
    elif engine == "dectalk":
        x = tts.get_dectalk().synthesize(text, voice, settings["rate"], settings["pitch"])
    else:
        x = tts.get_espeak().synthesize(text, voice, settings["rate_wpm"], settings["pitch"],
                                        settings["pitch_range"], settings["word_gap"], seed=settings["seed"])
    if x.size < int(0.05 * SR) or float(np.max(np.abs(x))) < 1e-3:
        raise SynthError(f"{engine} voice {voice!r} produced silence for text {text!r}")
    if "vtlp" in settings:
        x = A.vtlp(x, float(settings["vtlp"]))
    if "revoice" in settings:
        x = A.revoice(x, float(settings["revoice"]["semitones"]), float(settings["revoice"]["formant"]))
    return x


def render_clip(task: dict[str, Any], root: str) -> dict[str, Any]:
    """Synthesize one speech clip, level it to -20 dBFS RMS and write it; return its duration."""
    x = _render_speech(task["engine"], task["voice"], task["text"], task["settings"])
    x = _level(x, CLIP_LEVEL_DBFS)
    _write_wav(Path(root) / task["path"], x)
    return {"id": task["id"], "n_samples": int(x.size)}


def render_background(task: dict[str, Any], root: str) -> dict[str, Any]:
    """Generate one background clip (noise.py sounds; babble from already written negative clips)."""
    n = round(task["duration_s"] * SR)
    rng = np.random.default_rng(task["seed"])
    utts = [sf.read(str(Path(root) / p), dtype="float32")[0] for p in task["babble_src"]]
    x = np.zeros(n, dtype=np.float64)
    for k, kind in enumerate(task["voice"].split("+")):
        gain = 1.0 if k == 0 else 10 ** (float(rng.uniform(-12, 0)) / 20)
        x += gain * N.background(kind, n, rng, SR, utterances=utts)
    x = _level(x, CLIP_LEVEL_DBFS)
    _write_wav(Path(root) / task["path"], x)
    return {"id": task["id"], "n_samples": int(x.size)}


def _stream_bed(n: int, bed: dict[str, Any], rng: np.random.Generator) -> np.ndarray:
    """Continuous noise floor: pink/brown for colour plus a white share so it never rounds to zeros."""
    x = (np.sqrt(bed["pink"]) * N.pink_noise(n, rng) + np.sqrt(bed["brown"]) * N.brown_noise(n, rng)
         + np.sqrt(bed["white"]) * N.white_noise(n, rng))
    return N.set_level_dbfs(x, bed["level_dbfs"]).astype(np.float64)


def _stream_nonspeech(kind: str, n: int, rng: np.random.Generator, voices: list[str],
                      task: dict[str, Any]) -> tuple[np.ndarray, str]:
    if kind == "music":
        return N.music_like(n, rng, SR), "music"
    if kind == "noise":
        sub = str(rng.choice(["white", "pink", "brown"]))
        return N.background(sub, n, rng, SR), sub
    if kind == "household":
        sub = str(rng.choice(["fan", "water"]))
        return N.background(sub, n, rng, SR), sub
    if kind == "hum":
        return N.mains_hum(n, rng, SR), "hum"
    utts = []
    for _ in range(int(rng.integers(4, 8))):
        settings = _stream_speech_settings(task, rng)
        engine, voice = _stream_voice(task, str(rng.choice(voices)))
        utts.append(_render_speech(engine, voice, T.negative_text(task["phrase"], rng), settings))
    return N.babble(utts, n, rng, SR), "babble"


def _stream_voice(task: dict[str, Any], voice: str) -> tuple[str, str]:
    """(engine, voice) of a stream voice: the held-out stream's voices are ``engine:voice``."""
    if task["role"] == "heldout":
        engine, _, name = voice.partition(":")
        return engine, name
    return task["engine"], voice


def _stream_speech_settings(task: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    if task["role"] == "heldout":
        return {"rate": round(_uniform(rng, tuple(task["heldout_rate"]))),
                "pitch": round(_uniform(rng, tuple(task["heldout_pitch"])))}
    return {"rate_wpm": round(_uniform(rng, tuple(task["speed_wpm"]))),
            "pitch": round(_uniform(rng, tuple(task["pitch"]))),
            "pitch_range": round(_uniform(rng, PITCH_RANGE)),
            "word_gap": _word_gap(task["espeak_word_gap"], rng) if task["uniform_kinds"] else 0,
            "seed": _item_seed(rng)}


def _joins_into_phrase(prev_text: str | None, text: str, phrase: str) -> bool:
    """Would ``text`` said after ``prev_text`` contain the phrase (inside it or across the join)?

    ``prev_text=None`` means the preceding utterance is unknown (it lies in another block): then every
    partial phrase it could have ended with is tried, so "... hey" | next block "jarvis" cannot happen.
    """
    if prev_text is not None:
        return T.contains_phrase(f"{prev_text} {text}", phrase)
    compact = "".join(T.tokens(phrase))
    return any(T.contains_phrase(f"{compact[:k]} {text}", phrase) for k in range(len(compact)))


def render_stream_block(task: dict[str, Any]) -> dict[str, Any]:
    """Render one block of a stream: bed + utterances with gaps + non-speech segments.

    Events live in [head, core) so the cross-fade overlaps at both ends hold only bed noise. Utterances
    are redrawn when the previous utterance's text followed by this one would read as the wake phrase
    ("... hey" then "jarvis"), so the stream stays negative-only across utterance boundaries too.
    """
    role, b = task["role"], int(task["block"])
    rng = _rng(task["seed"], KIND_CODES["stream"], ROLE_CODES[role], b)
    spell_rng = _rng(task["seed"], KIND_CODES["stream"], ROLE_CODES[role], b, _SPELL_CODE)
    core, head, tail = int(task["core"]), int(task["head"]), int(task["tail"])
    x = _stream_bed(core + tail, task["bed"], rng)
    voices, phrase = list(task["voices"]), task["phrase"]
    segments: list[dict[str, Any]] = []
    t = head + int(_uniform(rng, (0.0, 1.0)) * SR)
    prev_text: str | None = None  # None: unknown (the previous block may have ended with any prefix)
    while True:
        t += int(_uniform(rng, STREAM_GAP_S) * SR)
        if t >= core:
            break
        if rng.random() < STREAM_P_NONSPEECH:
            kind = str(rng.choice(NONSPEECH_KINDS))
            n = int(_uniform(rng, STREAM_NONSPEECH_S) * SR)
            if t + n > core:
                n = core - t
                if n < SR:
                    break
            seg, label = _stream_nonspeech(kind, n, rng, voices, task)
            seg = _fade(_level(seg, _uniform(rng, STREAM_NONSPEECH_DBFS)), 0.05)
            segments.append({"start_s": (task["start"] + t) / SR, "end_s": (task["start"] + t + n) / SR,
                             "type": kind, "sound": label, "text": ""})
            x[t:t + n] += seg
            t += n
            prev_text = ""
            continue
        confusable = rng.random() < STREAM_P_CONFUSABLE
        for _ in range(20):
            if confusable:
                text = task["confusables"][int(rng.integers(len(task["confusables"])))]
                if task["spell_confusables"]:  # spelled like a positive, from its own rng: timing draws unchanged
                    text = spoken_text(text, phrase, task["context_word_prob"], spell_rng)
            else:
                text = T.negative_text(phrase, rng)
            if not _joins_into_phrase(prev_text, text, phrase):
                break
        else:
            raise SynthError(f"stream {role}: could not draw an utterance that avoids the phrase {phrase!r}")
        engine, voice = _stream_voice(task, str(rng.choice(voices)))
        speech = _render_speech(engine, voice, text, _stream_speech_settings(task, rng))
        if t + speech.size > core:
            break
        speech = _level(speech, _uniform(rng, STREAM_SPEECH_DBFS))
        x[t:t + speech.size] += speech
        segments.append({"start_s": (task["start"] + t) / SR, "end_s": (task["start"] + t + speech.size) / SR,
                         "type": "confusable" if confusable else "speech", "voice": f"{engine}:{voice}",
                         "text": text})
        t += speech.size
        prev_text = text
    np.save(task["out"], np.clip(x, -1.0, 1.0).astype(np.float32), allow_pickle=False)
    return {"role": role, "block": b, "out": task["out"], "segments": segments}


# ----------------------------------------------------------------------------------------------------------
# Orchestration
# ----------------------------------------------------------------------------------------------------------


def _run_chunk(fn: Callable[..., dict[str, Any]], argss: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    return [fn(*a) for a in argss]


def _worker_init(level: int) -> None:
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


class _Runner:
    """Run tasks in-process (workers=1) or on a spawn process pool, yielding results in task order.

    At most ``window`` chunks are in flight, so the ordered consumer (the stream writer) never has more
    than a few blocks waiting. Order of *execution* never matters for the output (per-item seeds).
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.executor: ProcessPoolExecutor | None = None
        if workers > 1:
            self.executor = ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                                                initializer=_worker_init,
                                                initargs=(logging.getLogger().getEffectiveLevel(),))

    def map(self, fn: Callable[..., dict[str, Any]], argss: list[tuple[Any, ...]], desc: str,
            chunksize: int = 8, window: int | None = None) -> Iterator[dict[str, Any]]:
        chunks = [argss[i:i + chunksize] for i in range(0, len(argss), chunksize)]
        with tqdm(total=len(argss), desc=desc, unit="item", disable=None, leave=False) as bar:
            if self.executor is None:
                for chunk in chunks:
                    for res in _run_chunk(fn, chunk):
                        bar.update(1)
                        yield res
                return
            limit = window or 256
            pending: deque[Future[list[dict[str, Any]]]] = deque()
            for chunk in chunks:
                pending.append(self.executor.submit(_run_chunk, fn, chunk))
                while len(pending) >= limit:
                    yield from self._take(pending, bar)
            while pending:
                yield from self._take(pending, bar)

    @staticmethod
    def _take(pending: deque[Future[list[dict[str, Any]]]], bar: Any) -> Iterator[dict[str, Any]]:
        try:
            results = pending.popleft().result()
        except BrokenProcessPool as exc:
            raise SynthError(
                f"a synthesis worker process died ({exc}); when calling synthesize_dataset from a script, "
                "guard the call with `if __name__ == '__main__':` (worker processes are spawned)"
            ) from None
        for res in results:
            bar.update(1)
            yield res

    def close(self, cancel: bool = False) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=cancel)
            self.executor = None


def _write_stream(runner: _Runner, tasks: list[dict[str, Any]], role: str, root: Path,
                  voice_groups: list[str]) -> dict[str, Any]:
    """Assemble a stream's blocks in order, cross-fading the overlaps, writing chunk by chunk."""
    wav_path = root / "streams" / f"{role}.wav"
    segments: list[dict[str, Any]] = []
    carry: np.ndarray | None = None
    n_written = 0
    with sf.SoundFile(str(wav_path), "w", samplerate=SR, channels=1, subtype="PCM_16", format="WAV") as fh:
        results = runner.map(render_stream_block, [(t,) for t in tasks], f"stream {role}", chunksize=1,
                             window=runner.workers + 1)
        for res, task in zip(results, tasks):
            if res["block"] != task["block"]:
                raise SynthError(f"stream {role}: blocks arrived out of order")
            x = np.load(res["out"], allow_pickle=False).astype(np.float64)
            os.unlink(res["out"])
            head, core = int(task["head"]), int(task["core"])
            if carry is not None:
                ang = np.linspace(0.0, np.pi / 2, head)
                x[:head] = carry * np.cos(ang) + x[:head] * np.sin(ang)
            fh.write(np.clip(x[:core], -1.0, 1.0).astype(np.float32))
            n_written += core
            carry = x[core:] if task["tail"] else None
            segments += res["segments"]
    for s in segments:
        s["start_s"], s["end_s"] = round(s["start_s"], 4), round(s["end_s"], 4)
    info = {"role": role, "sample_rate_hz": SR, "n_samples": n_written, "duration_s": round(n_written / SR, 4),
            "voices": voice_groups, "bed": tasks[0]["bed"] if tasks else {},
            "block_s": STREAM_BLOCK_S, "segments": segments}
    (root / "streams" / f"{role}.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    return info


def _manifest_entry(task: dict[str, Any], n_samples: int) -> dict[str, Any]:
    entry = {"id": task["id"], "path": task["path"], "kind": task["kind"], "text": task["text"],
             "engine": task["engine"], "voice": task["voice"], "group": task["group"],
             "duration_s": round(n_samples / SR, 6), "sample_rate_hz": SR}
    if task.get("role"):
        entry["role"] = task["role"]
    if "vtlp" in task.get("settings", {}):
        entry["vtlp"] = task["settings"]["vtlp"]
    if "revoice" in task.get("settings", {}):
        entry["revoice"] = dict(task["settings"]["revoice"])
    if "accent" in task.get("settings", {}):
        entry["accent"] = task["settings"]["accent"]
    if "pair_of" in task:
        entry["pair_of"] = task["pair_of"]
    return entry


def _report(entries: list[dict[str, Any]], streams: dict[str, dict[str, Any]], n_confusables: int,
            pools: dict[str, list[tts.EspeakVoice]], wall: float, workers: int) -> dict[str, Any]:
    held = [e for e in entries if e["kind"] != "stream" and e.get("role") == "heldout"]
    clips = [e for e in entries if e["kind"] != "stream" and e.get("role") != "heldout"]
    counts = Counter(e["kind"] for e in clips)
    secs: Counter[str] = Counter()
    for e in clips:
        secs[e["kind"]] += e["duration_s"]
    voices: dict[str, set[str]] = {}
    for e in clips:
        if e["engine"] != "noise":
            voices.setdefault(e["kind"], set()).add(e["group"])
    seg_counts = {role: dict(sorted(Counter(s["type"] for s in info["segments"]).items()))
                  for role, info in streams.items()}
    return {
        "counts": {k: int(counts.get(k, 0)) for k in CLIP_KINDS},
        "hours": {k: round(secs.get(k, 0.0) / 3600, 4) for k in CLIP_KINDS},
        "clips_per_engine": dict(sorted(Counter(e["engine"] for e in clips).items())),
        "voices_per_kind": {k: len(voices.get(k, ())) for k in CLIP_KINDS if k != "background"},
        "voice_pool": {k: len(v) for k, v in pools.items()},
        "stream_hours": {role: round(info["duration_s"] / 3600, 4) for role, info in streams.items()},
        "stream_segments": seg_counts,
        "confusable_phrases": n_confusables,
        "formant_warped_clips": sum(1 for e in clips if "vtlp" in e),
        "revoiced_clips": sum(1 for e in clips if "revoice" in e),
        "minimal_pair_clips": sum(1 for e in clips if "pair_of" in e),
        "piper_clips_per_accent": dict(sorted(Counter(e["accent"] for e in clips if "accent" in e).items())),
        "heldout": {
            "clips_per_engine": dict(sorted(Counter(e["engine"] for e in held).items())),
            "voices": len({e["group"] for e in held}),
            "counts": {k: sum(1 for e in held if e["kind"] == k) for k in HELDOUT_CODES},
            "hours": {k: round(sum(e["duration_s"] for e in held if e["kind"] == k) / 3600, 4) for k in HELDOUT_CODES},
        },
        "workers": workers,
        "wall_time_s": round(wall, 2),
    }


def synthesize_dataset(params: SynthParams, seed: int, out_dir: Path, sample_rate_hz: int = 16000,
                       workers: int | None = None) -> dict[str, Any]:
    """Synthesize the whole data set into ``out_dir`` (replaced atomically) and return a composition report.

    ``workers`` processes render in parallel (default: up to 2); the output is byte-identical for any
    worker count. Raises :class:`SynthError` / :class:`wakeword.tts.TTSEngineError` with the cause; on
    any failure nothing is left at ``out_dir`` that was not there before.
    """
    t0 = time.perf_counter()
    if sample_rate_hz != SR:
        raise SynthError(f"sample_rate_hz = {sample_rate_hz}: only {SR} Hz is supported (audio.sample_rate_hz)")
    if not isinstance(seed, int) or seed < 0:
        raise SynthError(f"seed = {seed!r}: must be a non-negative integer")
    n_workers = max(1, int(workers if workers is not None else min(2, os.cpu_count() or 1)))
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    runner: _Runner | None = None
    try:
        for sub in (*[f"clips/{k}" for k in CLIP_KINDS], *[f"clips/heldout/{k}" for k in HELDOUT_CODES],
                    "streams", "_work"):
            (tmp / sub).mkdir(parents=True, exist_ok=True)
        pool = build_voice_pool(params, seed)
        pools = split_voice_pool(pool, params.stream_voice_fraction, params.stream_train_h > 0)
        LOG.info("voices: %d clip, %d val-stream, %d test-stream, %d train-stream", len(pools["clips"]),
                 len(pools["val"]), len(pools["test"]), len(pools["train"]))
        confusables = confusables_for(params.phrase, seed)
        clip_tasks = plan_clips(params, seed, pools["clips"], confusables)
        check_piper_accents(params, clip_tasks)
        heldout_tasks = plan_heldout(params, seed, confusables)
        runner = _Runner(n_workers)
        done: dict[str, int] = {}
        # longest items (sentences) first so the pool's tail is short; results are keyed by id
        by_cost = sorted(clip_tasks, key=lambda t: (t["kind"] != "negative", t["id"]))
        for res in runner.map(render_clip, [(t, str(tmp)) for t in by_cost], "speech clips"):
            done[res["id"]] = res["n_samples"]
        LOG.info("speech clips: %d in %.1f s", len(clip_tasks), time.perf_counter() - t0)
        for res in runner.map(render_clip, [(t, str(tmp)) for t in heldout_tasks], "held-out engine clips"):
            done[res["id"]] = res["n_samples"]
        negative_paths = [t["path"] for t in clip_tasks if t["kind"] == "negative"]
        bg_tasks = plan_backgrounds(params, seed, negative_paths)
        for res in runner.map(render_background, [(t, str(tmp)) for t in bg_tasks], "background clips"):
            done[res["id"]] = res["n_samples"]
        LOG.info("background clips: %d, at %.1f s", len(bg_tasks), time.perf_counter() - t0)
        streams = {}
        stream_voices: dict[str, tuple[str, list[Any], list[str]]] = {
            role: ("espeak", pools[role], [v.group for v in pools[role]]) for role in ("val", "test", "train")
            if pools[role]}
        if heldout_tasks:
            held_voices = [f"{e}:{v}" for e in params.heldout_engines for v in heldout_voices(e)]
            stream_voices["heldout"] = ("+".join(params.heldout_engines), held_voices, held_voices)
        for role, (engine, voices, groups) in stream_voices.items():
            blocks = plan_stream_blocks(params, seed, role, voices, confusables, str(tmp / "_work"), engine)
            streams[role] = _write_stream(runner, blocks, role, tmp, groups)
            LOG.info("stream %s: %.2f h, at %.1f s", role, streams[role]["duration_s"] / 3600,
                     time.perf_counter() - t0)
        runner.close()
        runner = None
        entries = [_manifest_entry(t, done[t["id"]]) for t in clip_tasks + heldout_tasks + bg_tasks]
        for role, info in streams.items():
            entries.append({"id": f"stream-{role}", "path": f"streams/{role}.wav", "kind": "stream", "text": "",
                            "engine": stream_voices[role][0], "voice": "mixed", "group": f"stream-{role}",
                            "duration_s": info["duration_s"], "sample_rate_hz": SR, "role": role})
        entries.sort(key=lambda e: e["path"])
        with open(tmp / "manifest.jsonl", "w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(e, ensure_ascii=False) + "\n" for e in entries)
        shutil.rmtree(tmp / "_work")
        _replace_dir(tmp, out_dir)
    except BaseException:
        if runner is not None:
            runner.close(cancel=True)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report = _report(entries, streams, len(confusables), pools, time.perf_counter() - t0, n_workers)
    LOG.info("synthesized %s clips and %.2f h of streams in %.1f s", sum(report["counts"].values()),
             sum(report["stream_hours"].values()), report["wall_time_s"])
    return report


def _replace_dir(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``, replacing an old ``dst`` with two renames (never a half-written state)."""
    old = dst.parent / f".{dst.name}.old-{os.getpid()}"
    if dst.exists():
        if old.exists():
            shutil.rmtree(old)
        dst.rename(old)
    src.rename(dst)
    if old.exists():
        shutil.rmtree(old)

