"""The model card: one human-readable page about the model a run trained and deployed.

Every figure comes from the run's own metrics files (``metrics/*.json``) and its params; nothing is
estimated or filled in. :func:`load_card_inputs` reads the files (a missing or malformed one is an error
naming it), :func:`render_model_card` turns them into Markdown without touching the file system.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from wakeword.augment import frequency_warp_applies, random_eq_applies
from wakeword.params import Params
from wakeword.plots import _confusable_cell, _num, _pct  # the report's cell formats

KINDS = ("positive", "negative", "hard_negative", "background")
SPLITS = ("train", "val", "test", "heldout")


class ModelCardError(ValueError):
    """An input of the model card is missing, unreadable or lacks a figure the card needs."""


@dataclass(frozen=True)
class ModelCardInputs:
    """The parsed metrics files of one run, each under the name of the file it came from."""

    split: Mapping[str, Any]  # metrics/split.json (stage split): clips and hours per split and kind
    data: Mapping[str, Any]  # metrics/data.json (stage synth): the demo set, engines, held-out engine set
    data_report: Mapping[str, Any]  # metrics/data_report.json (stage ingest): own audio
    train: Mapping[str, Any]  # metrics/train.json (stage train)
    size: Mapping[str, Any]  # metrics/size.json (stage tflite)
    float_metrics: Mapping[str, Any]  # metrics/float.json (stage evaluate)
    int8_metrics: Mapping[str, Any]  # metrics/int8.json (stage tflite)
    calibration: Mapping[str, Any]  # metrics/calibration.json (stage calibrate)
    mining: Mapping[str, Any]  # metrics/mining.json (stage mine): hard negatives mined from the training stream
    finetune: Mapping[str, Any]  # metrics/finetune.json (stage finetune): fine-tuning with them

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ModelCardInputs:
        """From ``{"split": {...}, "float": {...}, ...}`` keyed by field name or by file stem."""
        values = {}
        for f in fields(cls):
            stem = INPUT_FILES[f.name].removesuffix(".json")
            value = data.get(f.name, data.get(stem))
            if not isinstance(value, Mapping):
                raise ModelCardError(f"model card input {INPUT_FILES[f.name]} is missing")
            values[f.name] = value
        return cls(**values)


#: field -> the file name it is read from; and the stage that writes that file (for error messages)
INPUT_FILES = {
    "split": "split.json", "data": "data.json", "data_report": "data_report.json", "train": "train.json",
    "size": "size.json", "float_metrics": "float.json", "int8_metrics": "int8.json",
    "calibration": "calibration.json", "mining": "mining.json", "finetune": "finetune.json",
}
_WRITTEN_BY = {
    "split.json": "split", "data.json": "synth", "data_report.json": "ingest", "train.json": "train",
    "size.json": "tflite", "float.json": "evaluate", "int8.json": "tflite", "calibration.json": "calibrate",
    "mining.json": "mine", "finetune.json": "finetune",
}


def read_json_input(path: str | Path) -> dict[str, Any]:
    """One input file as a JSON object; a missing, unreadable or non-object file raises naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        stage = _WRITTEN_BY.get(path.name)
        hint = f" (written by the {stage} stage: dvc repro {stage})" if stage else ""
        raise ModelCardError(f"{path}: model card input not found{hint}") from None
    except OSError as exc:
        raise ModelCardError(f"{path}: cannot read model card input ({exc.strerror})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelCardError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise ModelCardError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def load_card_inputs(paths: Iterable[str | Path]) -> ModelCardInputs:
    """Read the card's inputs, each recognised by its file name (``split.json``, ``float.json``, ...).
    Every one of :data:`INPUT_FILES` must be given exactly once; an unknown name is an error."""
    by_name = {name: field for field, name in INPUT_FILES.items()}
    found: dict[str, dict[str, Any]] = {}
    for p in map(Path, paths):
        field = by_name.get(p.name)
        if field is None:
            expected = ", ".join(INPUT_FILES.values())
            raise ModelCardError(f"{p}: not a model card input; expected files named {expected}")
        if field in found:
            raise ModelCardError(f"{p}: {p.name} given twice")
        found[field] = read_json_input(p)
    missing = [INPUT_FILES[f] for f in INPUT_FILES if f not in found]
    if missing:
        raise ModelCardError(f"model card input(s) not given: {', '.join(missing)}")
    return ModelCardInputs(**found)


# --------------------------------------------------------------------------------------------- format


def _fix(x: Any, digits: int = 2) -> str:
    v = _num(x)
    return "–" if v is None else f"{round(v, digits) + 0.0:.{digits}f}"  # + 0.0: no "-0.00"


def _int(x: Any) -> str:
    v = _num(x)
    return "–" if v is None else f"{round(v):,}"


def _mega(x: Any) -> str:
    v = _num(x)
    return "–" if v is None else f"{v / 1e6:.2f} M"


def _g(x: Any) -> str:
    """A param value as written in params.yaml (3.0e-3 -> 0.003; lists and strings kept readable)."""
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, float):
        return re.sub(r"e([+-])0*(\d)", r"e\1\2", f"{x:g}")
    if isinstance(x, (list, tuple)):
        return "[" + ", ".join(_g(v) for v in x) + "]"
    return str(x)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(r) + " |" for r in rows)]


def _need(data: Mapping[str, Any], file: str, *keys: str) -> None:
    """The figures the card cannot do without: absent ones are an error naming the file and key."""
    missing = [k for k in keys if _num(data.get(k)) is None]
    if missing:
        raise ModelCardError(f"{file}: missing or non-numeric {', '.join(missing)} "
                             f"(re-run the {_WRITTEN_BY.get(file, 'upstream')} stage)")


def _engines(counts: Mapping[str, Any]) -> str:
    ordered = sorted(counts.items(), key=lambda kv: -(_num(kv[1]) or 0.0))
    return ", ".join(f"{name} {_int(n)}" for name, n in ordered)


# ---------------------------------------------------------------------------------------------- render


def arch_section(params: Params) -> tuple[str, dict[str, Any]]:
    """``(section name, knobs)`` of the chosen architecture: ``model.<arch>``, ``model.rnn`` for gru/lstm."""
    arch = params.model.arch
    name = "rnn" if arch in ("gru", "lstm") else arch
    section = getattr(params.model, name, None)
    return name, (section.model_dump() if section is not None and hasattr(section, "model_dump") else {})


def _reproduce(params: Params) -> str:
    section, knobs = arch_section(params)
    sets: list[tuple[str, Any]] = [
        ("seed", params.seed),
        *((("train.seed_offset", params.train.seed_offset),) if params.train.seed_offset else ()),
        ("synth.phrase", params.synth.phrase), ("data.source", params.data.source),
        ("features.type", params.features.type), ("audio.clip_s", params.audio.clip_s),
        ("synth.uniform_kinds", params.synth.uniform_kinds),
        ("audio.step_ms", params.audio.step_ms), ("model.arch", params.model.arch),
        *((f"model.{section}.{k}", v) for k, v in knobs.items()),
        ("model.subtract_window_mean", params.model.subtract_window_mean),
        ("train.epochs", params.train.epochs), ("train.lr", params.train.lr),
        ("train.loss.type", params.train.loss.type), ("calibrate.target_fah", params.calibrate.target_fah),
    ]

    def arg(key: str, value: Any) -> str:
        text = _g(value).replace(" ", "")
        if isinstance(value, str) and not re.fullmatch(r"[A-Za-z0-9_.\-]+", value):
            text = "'" + value.replace("'", "'\\''") + "'"
        return f"-S {key}={text}"

    return "dvc exp run " + " ".join(arg(k, v) for k, v in sets)


def _groups(inputs: ModelCardInputs) -> list[tuple[str, str, Mapping[str, Any]]]:
    """``(set, model, metrics)`` columns: test float, test int8, then the held-out engine set if present."""
    cols: list[tuple[str, str, Mapping[str, Any]]] = [
        ("test", "float", inputs.float_metrics), ("test", "int8", inputs.int8_metrics)]
    for model, m in (("float", inputs.float_metrics), ("int8", inputs.int8_metrics)):
        held = m.get("heldout")
        if isinstance(held, Mapping) and held:
            cols.append(("heldout", model, held))
    return cols


def _fah_cell(m: Mapping[str, Any]) -> str:
    fah = _num(m.get("fah"))
    if fah is None:
        return "–"
    lo, hi = _num(m.get("fah_ci_low")), _num(m.get("fah_ci_high"))
    ci = f" [{lo:.2f}, {hi:.2f}]" if lo is not None and hi is not None else ""
    n, h = _num(m.get("false_alarms")), _num(m.get("negative_hours"))
    events = f" ({round(n)} in {h:.2f} h)" if n is not None and h is not None else ""
    return f"{fah:.2f}{ci}{events}"


def _latency_cell(m: Mapping[str, Any]) -> str:
    lat = m.get("latency")
    if not isinstance(lat, Mapping) or _num(lat.get("median_s")) is None:
        return "–"
    return f"{_fix(lat.get('median_s'))} / {_fix(lat.get('p95_s'))}"


def _recall_keys(cols: list[tuple[str, str, Mapping[str, Any]]]) -> list[tuple[float, str]]:
    """``recall_at_<a>p<b>_fah`` keys present in any column, by FA/h."""
    keys = set()
    for _, _, m in cols:
        for k in m:
            if (hit := re.fullmatch(r"recall_at_(\d+)p(\d+)_fah", k)):
                keys.add((float(f"{hit.group(1)}.{hit.group(2)}"), k))
    return sorted(keys)


def _getter(key: str, fmt: Any) -> Any:
    return lambda m: fmt(m.get(key))


def _metrics_section(inputs: ModelCardInputs, heldout_name: str) -> list[str]:
    for file, m in (("float.json", inputs.float_metrics), ("int8.json", inputs.int8_metrics)):
        _need(m, file, "fah", "recall_at_target")
    cols = _groups(inputs)
    target = _num(inputs.calibration.get("target_fah"))
    target_txt = f"{target:g} FA/h" if target is not None else "the target FA/h"
    rows: list[tuple[str, Any]] = [
        ("FA/h at the threshold [95% CI] (false alarms in hours)", _fah_cell),
        (f"recall at the threshold (chosen on validation for {target_txt})", _getter("recall_at_target", _pct)),
        *((f"recall at {fah:g} FA/h", _getter(key, _pct)) for fah, key in _recall_keys(cols)),
        ("EER (per clip)", _getter("eer", _pct)),
        ("pAUC, FPR <= 0.1 (norm: 1 = perfect)", lambda m: _fix(m.get("pauc_norm_fpr10", m.get("pauc")), 3)),
        ("pAUC, FPR <= 0.1 (McClish std: 0.5 = chance)", _getter("pauc_std_fpr10", lambda x: _fix(x, 3))),
        ("ROC-AUC (per clip)", _getter("roc_auc", lambda x: _fix(x, 4))),
        ("confusable false-accept rate", _confusable_cell),
        ("latency, phrase end to detection, median / p95 (s)", _latency_cell),
    ]
    set_names = {"test": "test", "heldout": heldout_name.replace(" engine", "")}
    header = ["metric", *(f"{model}, {set_names[s]}" for s, model, _ in cols)]
    intro = ("Float (PyTorch) and deployed int8 (TFLite) side by side. **Test**: voices never trained on (of the training engines), with "
             f"continuous negative audio for FA/h. **{heldout_name.capitalize()}**: a speech engine no "
             "training, validation or test clip comes from, scored at the same threshold. FA/h counts detector "
             "events on negative-only streams (SPEC 4.4); EER, pAUC and ROC-AUC are per clip (SPEC 4.5).")
    lines = [
        "## Detection metrics",
        "",
        intro,
        "",
        *_table(header, [[label, *(fn(m) for _, _, m in cols)] for label, fn in rows]),
    ]
    fid = inputs.int8_metrics.get("fidelity_vs_float")
    if isinstance(fid, Mapping) and fid:
        drop = _num(fid.get("recall_drop"))
        lines += ["", f"int8 vs float: decision agreement {_pct(fid.get('decision_agreement'))}"
                  + (f", recall drop {_fix(100 * drop)} points" if drop is not None else "")
                  + f", mean |Δp| {_fix(fid.get('mean_abs_prob_diff'), 4)}, max |Δp| "
                  f"{_fix(fid.get('max_abs_prob_diff'), 4)}."]
    if len(cols) == 2:
        lines += ["", "This run has no held-out engine set (`synth.heldout_engines: []`)."]
    lines += _half_fah_lines(inputs.int8_metrics.get("heldout"), heldout_name)
    lines += _by_voice_lines(inputs.int8_metrics.get("heldout"), heldout_name)
    return lines


def _half_fah_lines(held: Any, heldout_name: str) -> list[str]:
    """Recall and confusable false accepts at one operating point, 0.5 FA/h, on the held-out set (int8): with the
    stream as it is, and with its confusable phrases left out (``without_confusables``), the kind of evaluation
    that measures confusables per clip only."""
    if not isinstance(held, Mapping) or "confusable_false_accept_rate_at_0p5_fah" not in held:
        return []
    text = (f"Int8 on the {heldout_name} at 0.5 FA/h: recall {_pct(held.get('recall_at_0p5_fah'))}, confusable "
            f"false accepts {_pct(held.get('confusable_false_accept_rate_at_0p5_fah'))}")
    wo = held.get("without_confusables")
    if isinstance(wo, Mapping) and "confusable_false_accept_rate_at_0p5_fah" in wo:
        text += (f"; with the stream's confusable phrases left out (they are measured per clip): recall "
                 f"{_pct(wo.get('recall_at_0p5_fah'))}, confusable false accepts "
                 f"{_pct(wo.get('confusable_false_accept_rate_at_0p5_fah'))} (threshold "
                 f"{_fix(wo.get('threshold_at_0p5_fah'), 2)})")
    return ["", text + "."]


def _by_voice_lines(held: Any, heldout_name: str) -> list[str]:
    """The deployed int8 model per voice of the held-out set (``by_voice`` of metrics/int8.json)."""
    voices = held.get("by_voice") if isinstance(held, Mapping) else None
    if not isinstance(voices, Mapping) or not voices:
        return []
    header = ["voice", "positive clips", "recall at the threshold", "at 0.5 FA/h", "at 1 FA/h", "at 2 FA/h",
              "confusable false accepts (at the threshold / at 0.5 FA/h)"]
    body = []
    for name, v in sorted(voices.items()):
        if not isinstance(v, Mapping):
            continue
        conf = (f"{_pct(v.get('confusable_false_accept_rate'))} / "
                f"{_pct(v.get('confusable_false_accept_rate_at_0p5_fah'))} of {_int(v.get('confusable_clips'))}")
        body.append([f"`{name}`", _int(v.get("positive_clips")), _pct(v.get("recall_at_target")),
                     _pct(v.get("recall_at_0p5_fah")), _pct(v.get("recall_at_1p0_fah")),
                     _pct(v.get("recall_at_2p0_fah")), conf])
    intro = (f"Int8 on the {heldout_name} per voice: the FA/h thresholds are those of the whole stream, only the "
             "clips are split.")
    return [*_by_engine_lines(held, heldout_name), "", intro, "", *_table(header, body)]


def _by_engine_lines(held: Mapping[str, Any], heldout_name: str) -> list[str]:
    """The deployed int8 model per engine of a held-out set with two or more engines (``by_engine``)."""
    engines = held.get("by_engine")
    if not isinstance(engines, Mapping) or len(engines) < 2:
        return []
    header = ["engine", "positive clips", "recall at 0.5 FA/h", "without the stream's confusables",
              "confusable false accepts at 0.5 FA/h (with / without them)"]
    body = [[f"`{name}`", _int(v.get("positive_clips")), _pct(v.get("recall_at_0p5_fah")),
             _pct(v.get("recall_at_0p5_fah_without_confusables")),
             (f"{_pct(v.get('confusable_false_accept_rate_at_0p5_fah'))} / "
              f"{_pct(v.get('confusable_false_accept_rate_at_0p5_fah_without_confusables'))}")]
            for name, v in sorted(engines.items()) if isinstance(v, Mapping)]
    intro = (f"Int8 on the {heldout_name} per engine (the thresholds are the whole stream's, spoken by every "
             "engine's voices; only the clips are split):")
    return ["", intro, "", *_table(header, body)]


def _data_section(inputs: ModelCardInputs, params: Params, heldout_name: str) -> list[str]:
    split = inputs.split
    if not isinstance(split.get("train"), Mapping):
        raise ModelCardError("split.json: no 'train' split")
    rows = []
    for name in SPLITS:
        s = split.get(name)
        if not isinstance(s, Mapping):
            continue
        clip_h = sum(_num(s.get(f"{k}_hours")) or 0.0 for k in KINDS)
        stream_h = _num(s.get("stream_hours"))
        label = heldout_name if name == "heldout" else name
        rows.append([label, *(_int(s.get(f"{k}_clips", 0)) for k in KINDS), _fix(clip_h, 2),
                     _int(s.get("groups")), "–" if stream_h is None else _fix(stream_h, 2)])
    intro = (f"Source `data.source: {params.data.source}`. Clips per split and kind (metrics/split.json); a "
             "kind absent from a split has 0 clips. Splits are grouped by voice/speaker: no group is in two "
             "splits. Long negative streams are continuous negative-only audio for FA/h (validation: threshold "
             "choice; test and held-out: measurement only).")
    lines = [
        "## Data",
        "",
        intro,
        "",
        *_table(["split", *KINDS, "clip hours", "voice groups", "negative stream h"], rows),
        "",
    ]
    data = inputs.data
    if params.data.source in ("demo", "both"):
        engines = data.get("clips_per_engine")
        if isinstance(engines, Mapping) and engines:
            warped = _num(data.get("formant_warped_clips"))
            revoiced = _num(data.get("revoiced_clips"))
            pairs = _num(data.get("minimal_pair_clips"))
            accents = data.get("piper_clips_per_accent")
            lines.append(f"- Demo set engines (clips in train/val/test): {_engines(engines)} (noise = synthetic "
                         "background sounds)" + (f"; {_int(warped)} clips formant-warped" if warped else "")
                         + (f"; {_int(revoiced)} Piper clips revoiced" if revoiced else "")
                         + (f"; {_int(pairs)} confusables voiced like a positive (minimal pairs)" if pairs else "")
                         + ".")
            if isinstance(accents, Mapping) and len(accents) > 1:
                lines.append(f"- Piper clips per pronunciation accent (`synth.piper_accents`): {_engines(accents)}.")
            lines.append(
                "- Spelling and pauses (`synth.uniform_kinds: true`): every kind is spelled and paused alike, so "
                "only the words tell a positive from a confusable." if params.synth.uniform_kinds else
                "- Spelling and pauses (`synth.uniform_kinds: false`): only positives get commas, '?', '!', "
                "context words and word pauses; confusables are plain text, a label cue a model can learn "
                "instead of the words.")
        pinned = ", ".join(f"`{p}`" for p in params.split.pin_to_train)
        if pinned:
            lines.append(f"- Groups pinned to train (`split.pin_to_train`: single-speaker engines, whose one voice "
                         f"would otherwise cross splits): {pinned}.")
    if params.data.source in ("own", "both"):
        rep = inputs.data_report
        counts = rep.get("counts") if isinstance(rep.get("counts"), Mapping) else {}
        hours = rep.get("hours") if isinstance(rep.get("hours"), Mapping) else {}
        own = ", ".join(f"{k} {_int(v)} ({_fix(hours.get(k), 2)} h)" for k, v in counts.items() if _num(v))
        lines.append(f"- Own audio (data/raw, metrics/data_report.json): {_int(rep.get('accepted'))} files "
                     f"accepted{': ' + own if own else ''}; {_int(rep.get('rejected'))} rejected.")
    held = data.get("heldout")
    if isinstance(held, Mapping) and held:
        per_engine = held.get("clips_per_engine")
        engines_txt = _engines(per_engine) if isinstance(per_engine, Mapping) else heldout_name
        stream_h = _num((data.get("stream_hours") or {}).get("heldout"))
        lines.append(f"- **Held-out engine** ({engines_txt} clips, {_int(held.get('voices'))} voices"
                     + (f", {stream_h:.2f} h negative stream" if stream_h is not None else "")
                     + "): **never trained on**, nor used for validation, calibration or test. "
                     + ("Its confusables are spelled and framed like its positives "
                        "(`synth.heldout_uniform_kinds: true`): no pause or comma tells them apart."
                        if params.synth.heldout_uniform_kinds else
                        "Its confusables are plain text while its positives carry commas and pauses "
                        "(`synth.heldout_uniform_kinds: false`, the yardstick before session 22): figures on it "
                        "flatter a model that learned that cue (`synth.uniform_kinds: false`)."))
    return lines


def _arch_section(inputs: ModelCardInputs, params: Params) -> list[str]:
    section, knobs = arch_section(params)
    size, train = inputs.size, inputs.train
    n_params = size.get("parameters", train.get("parameters"))
    macs = size.get("macs_per_window", train.get("macs_per_window"))
    windows_per_s = 1000.0 / params.audio.step_ms
    macs_s = size.get("macs_per_second")
    if _num(macs_s) is None and _num(macs) is not None:
        macs_s = _num(macs) * windows_per_s  # type: ignore[operator]
    knob_txt = ", ".join(f"{k} {_g(v)}" for k, v in knobs.items()) or "no size knobs"
    feat = params.features
    feat_txt = f"{feat.n_mfcc if feat.type == 'mfcc' else feat.n_mels}-bin {feat.type}"
    arch = f"- `model.arch: {params.model.arch}`; `model.{section}`: {knob_txt}; dropout {_g(params.model.dropout)}."
    window = (f"- Input: {_g(params.audio.clip_s)} s window of {feat_txt} features ({_g(feat.win_ms)} ms / "
              f"{_g(feat.hop_ms)} ms hop), CMVN-normalised"
              + (", less its per-bin mean over the window (`model.subtract_window_mean`: a static EQ cancels)"
                 if params.model.subtract_window_mean else "")
              + f"; one window every {params.audio.step_ms} ms "
              f"({windows_per_s:g} windows per second of audio).")
    compute = (f"- Parameters: {_int(n_params)}. MACs per window: {_int(macs)} ({_mega(macs)}); per second of "
               f"audio: {_int(macs_s)} ({_mega(macs_s)}).")
    return ["## Architecture", "", arch, window, compute]


def _size_section(inputs: ModelCardInputs, params: Params) -> list[str]:
    size = inputs.size
    _need(size, "size.json", "flash_kb", "arena_kb", "ram_kb")
    rows = [["int8 TFLite (deployed)", _fix(size.get("flash_kb")), _fix(size.get("arena_kb")),
             _fix(size.get("detector_buffers_kb")), _fix(size.get("ram_kb"))]]
    fl = size.get("float")
    if isinstance(fl, Mapping) and fl:
        rows.append(["float TFLite (reference)", _fix(fl.get("flash_kb")), _fix(fl.get("arena_kb")),
                     _fix(size.get("detector_buffers_kb")) if _num(fl.get("ram_kb")) is not None else "–",
                     _fix(fl.get("ram_kb"))])
    intro = ("Flash: the model file's bytes (the C array is the same size). RAM: the TFLite-Micro tensor "
             "arena, measured by allocating and invoking the model, plus the detector's audio and feature "
             "buffers (SPEC 4.7).")
    lines = [
        "## Size",
        "",
        intro,
        "",
        *_table(["model", "flash KB", "tensor arena KB", "detector buffers KB", "RAM total KB"], rows),
    ]
    platforms = size.get("platforms")
    if isinstance(platforms, Mapping) and platforms:
        prow = []
        for key, p in platforms.items():
            if not isinstance(p, Mapping):
                continue
            prof = params.deploy.platforms.get(key)
            name = prof.name if prof is not None else key

            def limit(x: Any) -> str:
                return "no limit" if _num(x) == 0 else f"{_fix(x, 0)}"

            fits = p.get("fits")
            shares = f"{_pct(p.get('flash_share_of_device'))} / {_pct(p.get('ram_share_of_device'))}"
            prow.append([name, "yes" if fits is True else "no" if fits is False else "–",
                         f"{_fix(p.get('flash_kb'))} / {limit(p.get('max_flash_kb'))}",
                         f"{_fix(p.get('ram_kb'))} / {limit(p.get('max_ram_kb'))}", shares])
        lines += ["", *_table(["platform", "fits", "flash KB / target", "RAM KB / target",
                               "share of device flash / RAM"], prow)]
    return lines


def _operating_section(inputs: ModelCardInputs, params: Params) -> list[str]:
    cal = inputs.calibration
    _need(cal, "calibration.json", "threshold", "temperature")
    det = cal.get("detector") if isinstance(cal.get("detector"), Mapping) else {}
    p = params.detector

    def pick(key: str, default: Any) -> Any:
        return det.get(key, default)

    on = _num(pick("threshold_on", cal.get("threshold")))
    off = _num(pick("threshold_off", None if on is None else on - p.hysteresis))
    met = cal.get("target_met")
    threshold = (f"- Threshold (`threshold_on`) **{_fix(cal.get('threshold'), 3)}**, chosen on the validation "
                 f"stream ({_fix(cal.get('val_negative_hours'))} h) as the highest-recall threshold with FA/h <= "
                 f"`calibrate.target_fah` = {_g(cal.get('target_fah', params.calibrate.target_fah))}: validation "
                 f"FA/h {_fix(cal.get('val_fah'))}, recall {_pct(cal.get('val_recall'))}"
                 + ("" if met is None else f", target {'met' if met else 'NOT met'}") + ".")
    temperature = (f"- Temperature (softmax scaling of the logits) {_fix(cal.get('temperature'), 4)}; ECE "
                   f"{_fix(cal.get('ece_before'), 4)} before, {_fix(cal.get('ece_after'), 4)} after.")
    detector = (f"- Detector (SPEC 4.3): `threshold_off` {_fix(off, 3)} (hysteresis {_g(p.hysteresis)}), fires "
                f"when {_g(pick('vote_threshold', p.vote_threshold))} of the last "
                f"{_g(pick('vote_window', p.vote_window))} steps vote, lockout "
                f"{_g(pick('lockout_ms', p.lockout_ms))} ms, step {_g(pick('step_ms', params.audio.step_ms))} ms.")
    return ["## Operating point and detector", "", threshold, temperature, detector]


_BEST_LABELS = {
    "val_recall_at_target_fah": ("validation recall at the target FA/h", _pct),
    "val_fah": ("validation FA/h", lambda x: _fix(x, 2)),
    "val_roc_auc": ("validation ROC-AUC", lambda x: _fix(x, 4)),
    "val_loss": ("validation loss", lambda x: _fix(x, 4)),
    "train_loss": ("training loss", lambda x: _fix(x, 4)),
    "train_accuracy": ("training accuracy", _pct),
    "lr": ("learning rate", lambda x: f"{_num(x):.3g}" if _num(x) is not None else "–"),
}


def _training_section(inputs: ModelCardInputs, params: Params) -> list[str]:
    train = inputs.train
    _need(train, "train.json", "epochs", "best_epoch")
    t = params.train
    wall = _num(train.get("train_wall_s"))
    wall_txt = f"; {wall:.0f} s of training ({wall / 60:.1f} min)" if wall is not None else ""
    stopped = " (stopped early)" if train.get("stopped_early") is True else ""
    epochs = (f"- Epochs run {_int(train.get('epochs'))}{stopped} (`train.epochs` {t.epochs}); best epoch "
              f"{_int(train.get('best_epoch'))} (the checkpoint kept){wall_txt}.")
    lines = ["## Training", "", epochs]
    if isinstance(train.get("arch"), str) and train["arch"] != params.model.arch:
        lines.append(f"- **Mismatch**: metrics/train.json is from arch `{train['arch']}`, params.yaml says "
                     f"`{params.model.arch}`: the metrics are from another run; re-run the pipeline.")
    best = train.get("best")
    if isinstance(best, Mapping) and best:
        parts = [f"{label} {fmt(best[k])}" for k, (label, fmt) in _BEST_LABELS.items() if k in best]
        parts += [f"{k} {_g(v)}" for k, v in best.items() if k not in _BEST_LABELS and _num(v) is not None]
        lines.append("- At the best epoch: " + ", ".join(parts) + ".")
    shown = {"epochs", "best_epoch", "train_wall_s", "best", "parameters", "macs_per_window", "arch",
             "stopped_early"}
    extra = [f"`{k}` {_g(v)}" for k, v in train.items()
             if k not in shown and (isinstance(v, str) or _num(v) is not None)]
    if extra:
        lines.append("- Also recorded (metrics/train.json): " + ", ".join(extra) + ".")
    sched = {"cosine": f"cosine, {t.warmup_epochs} warm-up epoch(s), min lr {_g(t.min_lr)}",
             "plateau": f"plateau (x{_g(t.plateau_factor)} after {t.plateau_patience} epochs), "
                        f"{t.warmup_epochs} warm-up epoch(s), min lr {_g(t.min_lr)}",
             "constant": "constant"}[t.schedule]
    opt = f"{t.optimizer}" + (f" (momentum {_g(t.momentum)})" if t.optimizer == "sgd" else "")
    balanced = f" balanced {_g(list(t.batch_ratio))} (pos:neg:hard)" if t.balanced_batches else ""
    clip = _g(t.grad_clip) if t.grad_clip else "off"
    stop = f"after {t.early_stopping} epochs without a better checkpoint" if t.early_stopping else "off"
    lines.append(f"- Optimizer {opt}, lr {_g(t.lr)}, weight decay {_g(t.weight_decay)}, schedule {sched}; "
                 f"batch {t.batch_size}{balanced}; gradient-norm clip {clip}; early stopping {stop}.")
    loss = t.loss
    loss_txt = (f"cross entropy, label smoothing {_g(loss.label_smoothing)}" if loss.type == "cross_entropy"
                else f"focal, alpha {_g(loss.focal_alpha)}, gamma {_g(loss.focal_gamma)}")
    word_txt = (f"; auxiliary word loss weight {_g(loss.word_weight)} (a training-only head per word of the "
                f"phrase, targets from the clip texts)" if loss.word_weight > 0 else "")
    lines.append(f"- Loss: {loss_txt}; class weights {loss.class_weights}; hard-negative weight "
                 f"{_g(loss.hard_negative_weight)}{word_txt}.")
    ema, qat, tri, dis = t.ema, t.qat, t.triplet, t.distill
    ema_txt = (f"on, decay {_g(ema.decay)} ({_g(ema.final_decay)} in the last {ema.final_epochs} epochs); "
               "validation and export use the EMA weights" if ema.enabled else "off")
    qat_txt = (f"on from epoch {qat.start_epoch} (0-based), "
               f"{'per-channel' if qat.per_channel else 'per-tensor'} weight scales" if qat.enabled else "off")
    tri_txt = (f"{tri.epochs} epochs, margin {_g(tri.margin)}, weight {_g(tri.weight)}, lr {_g(tri.lr)}"
               if tri.epochs else "off")
    dis_txt = (f"from `{dis.teacher}` ({dis.kind}), temperature {_g(dis.temperature)}, alpha {_g(dis.alpha)}"
               if dis.teacher else "off")
    lines.append(f"- EMA: {ema_txt}. QAT: {qat_txt}. Triplet phase: {tri_txt}. Distillation: {dis_txt}.")
    lines.append(_mining_line(inputs.mining, inputs.finetune, params))
    a = params.augment
    eq_on = random_eq_applies(a, params.features.type)
    eq_txt = (f"random EQ p {_g(a.eq_prob)} (tilt up to {_g(a.eq_tilt_db)} dB, {a.eq_bands} bands of up to "
              f"±{_g(a.eq_band_db)} dB)" if eq_on else "random EQ off")
    lines.append(
        f"- Augmentation ({a.mode}, training windows only): background noise p {_g(a.noise_prob)} at "
        f"{_g(a.snr_db[0])}-{_g(a.snr_db[1])} dB SNR, room reverb p {_g(a.rir_prob)}, time stretch p "
        f"{_g(a.stretch_prob)}, pitch shift p {_g(a.pitch_prob)}, "
        + (f"a pause between words p {_g(a.pause_prob)} ({_g(a.pause_s[0])}-{_g(a.pause_s[1])} s), "
           if a.pause_prob > 0 else "")
        + (f"a frequency warp p {_g(a.warp_prob)} (factor {_g(a.warp_range[0])}-{_g(a.warp_range[1])}), "
           if frequency_warp_applies(a, params.features.type) else "")
        + f"SpecAugment p {_g(a.spec_prob)}, {eq_txt}.")
    return lines


def _mining_line(mining: Mapping[str, Any], finetune: Mapping[str, Any], params: Params) -> str:
    """SPEC 5's phases 2 and 3: what mining found and the training stream's FA/h before and after fine-tuning,
    at the fixed report thresholds (metrics/mining.json ``fah_before_at``, finetune.json
    ``train_stream_fah_after_at``)."""
    if mining.get("enabled") is not True:
        return "- Hard-negative mining: off (`mine.enabled` false); the trained model is the deployed one."
    _need(mining, "mining.json", "mined", "stream_hours", "threshold")
    m = params.mine
    found = (f"- Hard-negative mining: {_int(mining['mined'])} windows scoring >= {_g(mining['threshold'])} "
             f"(local peaks {m.min_gap_ms} ms apart, at most {_int(m.max_windows)}) in the {_fix(mining['stream_hours'])} h "
             f"training stream")
    if finetune.get("fine_tuned") is not True:
        return found + "; nothing to fine-tune with, the trained model is kept."
    found += (f"; fine-tuned {_int(finetune.get('epochs'))} epochs at lr {_g(m.lr)} with them, kept: "
              f"{finetune.get('kept', 'not recorded')}")
    before, after = mining.get("fah_before_at"), finetune.get("train_stream_fah_after_at")
    if isinstance(before, Mapping) and isinstance(after, Mapping) and before.keys() == after.keys() and before:
        at = ", ".join(f"{_fix(before[t], 1)} -> {_fix(after[t], 1)} at threshold {t}" for t in before)
        found += f". FA/h of the training stream before -> after fine-tuning: {at}"
    return found + "."


def _use_section(inputs: ModelCardInputs, params: Params, heldout_name: str) -> list[str]:
    platforms = inputs.size.get("platforms")
    names = [params.deploy.platforms[k].name if k in params.deploy.platforms else k
             for k in (platforms if isinstance(platforms, Mapping) else {})]
    on = f" ({', '.join(names)})" if names else ""
    use = (f"- Always-on detection of the phrase \"{params.synth.phrase}\" on small devices{on}, as the "
           "trigger of a larger voice pipeline: `wakeword detect models/deploy <audio>` runs the deployed model "
           "with the calibrated threshold and detector.")
    lines = [
        "## Intended use",
        "",
        use,
        "- Not for speaker verification, security or anything where a missed or false trigger is harmful.",
        "",
        "## Limitations",
        "",
    ]
    if params.data.source == "demo":
        lines.append("- Trained and evaluated on **synthetic speech only** (the demo set: text-to-speech voices, "
                     "generated background sounds), no real recordings: real microphones, rooms and speakers "
                     "will differ.")
    else:
        lines.append(f"- Trained on `data.source: {params.data.source}` data; the held-out engine set is still "
                     "synthetic speech.")
    langs = ", ".join(params.deploy.trained_languages)
    accents = (f" (espeak-ng accents {', '.join(params.synth.espeak_accents)})"
               if params.data.source in ("demo", "both") else "")
    lines.append(f"- Language: {langs} only{accents}.")
    test, held = inputs.int8_metrics, inputs.int8_metrics.get("heldout")
    if isinstance(held, Mapping) and held:
        lines.append(
            "- The held-out engine result is the honest generalisation figure: the deployed model's recall at "
            f"the threshold is {_pct(test.get('recall_at_target'))} on test (engines it was trained on) but "
            f"{_pct(held.get('recall_at_target'))} on the {heldout_name}, which it never heard.")
    hours = _num(test.get("negative_hours"))
    if hours is not None:
        hi = _num(test.get("fah_ci_high"))
        lines.append(f"- FA/h rests on {hours:.2f} h of negative audio per set, so its interval is wide"
                     + (f" (test upper 95% bound {hi:.2f} FA/h)" if hi is not None else "")
                     + "; measure on hours of your own audio before relying on it.")
    lines.append("- The threshold was calibrated on a synthetic validation stream; re-calibrate on own data "
                 "(`data.source: own`) for a device's real false-alarm rate.")
    return lines


def render_model_card(inputs: ModelCardInputs | Mapping[str, Any], params: Params) -> str:
    """The model card as Markdown, from the run's metrics (``inputs``) and ``params``. Pure: no file I/O."""
    if not isinstance(inputs, ModelCardInputs):
        inputs = ModelCardInputs.from_mapping(inputs)
    held_engines = (inputs.data.get("heldout") or {}).get("clips_per_engine") if isinstance(
        inputs.data.get("heldout"), Mapping) else None
    engines = (sorted(held_engines) if isinstance(held_engines, Mapping) and held_engines
               else list(params.synth.heldout_engines))
    heldout_name = (f"held-out engine{'s' if len(engines) > 1 else ''} ({'/'.join(engines)})" if engines
                    else "held-out engine")
    flash = _fix(inputs.size.get("flash_kb"))
    intro = (f"A `{params.model.arch}` model that detects \"{params.synth.phrase}\" in 16 kHz audio, deployed "
             f"as a full-int8 TFLite model ({flash} KB). Every figure below is read from this run's metrics "
             "files (metrics/*.json) and params.yaml; none is estimated.")
    lines = [
        f"# Model card: \"{params.synth.phrase}\" wake-word detector ({params.model.arch})",
        "",
        intro,
        "",
        ("**How to reproduce**: `dvc repro` with this commit's params.yaml; as an experiment, the params that "
         "shape this model:"),
        "",
        f"    {_reproduce(params)}",
        "",
    ]
    for section in (_data_section(inputs, params, heldout_name), _arch_section(inputs, params),
                    _size_section(inputs, params), _metrics_section(inputs, heldout_name),
                    _operating_section(inputs, params), _training_section(inputs, params),
                    _use_section(inputs, params, heldout_name)):
        lines += [*section, ""]
    return "\n".join(lines).rstrip() + "\n"
