"""The model card: rendered from small hand-written metrics, every figure in its row and column; missing inputs
name the file; the stage writes the card; and the repo's real metrics/ files render (their key names)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from stages.card import main as card_main
from wakeword.modelcard import (
    INPUT_FILES,
    ModelCardError,
    ModelCardInputs,
    load_card_inputs,
    read_json_input,
    render_model_card,
)
from wakeword.params import Params, load_params

ROOT = Path(__file__).resolve().parents[1]


def _group(recall: float, fah: float, r05: float, r1: float, eer: float, auc: float) -> dict:
    return {
        "fah": fah, "fah_ci_low": 0.01, "fah_ci_high": 5.5, "false_alarms": round(fah * 2), "negative_hours": 2.0,
        "recall_at_target": recall, "recall_at_0p5_fah": r05, "recall_at_1p0_fah": r1, "eer": eer,
        "pauc_norm_fpr10": 0.8125, "pauc_std_fpr10": 0.9, "roc_auc": auc, "confusable_false_accept_rate": 0.05,
        "counts": {"confusable_clips": 40}, "latency": {"median_s": 0.12, "p95_s": 0.48},
        "threshold": 0.777, "target_fah": 1.0,
    }


def small_inputs(heldout: bool = True) -> dict[str, dict]:
    float_m = _group(recall=0.7, fah=1.5, r05=0.61, r1=0.72, eer=0.081, auc=0.9811)
    int8_m = _group(recall=0.6, fah=2.5, r05=0.52, r1=0.63, eer=0.092, auc=0.9722)
    int8_m["fidelity_vs_float"] = {"decision_agreement": 0.987, "recall_drop": 0.1, "mean_abs_prob_diff": 0.004,
                                   "max_abs_prob_diff": 0.2}
    if heldout:
        float_m["heldout"] = _group(recall=0.211, fah=0.0, r05=0.123, r1=0.301, eer=0.17, auc=0.9)
        int8_m["heldout"] = _group(recall=0.222, fah=0.5, r05=0.456, r1=0.402, eer=0.18, auc=0.91)
        int8_m["heldout"]["by_voice"] = {
            "pico:en-US": {"positive_clips": 15, "confusable_clips": 15, "recall_at_target": 0.1333,
                           "recall_at_0p1_fah": 0.0, "recall_at_0p5_fah": 0.4, "recall_at_1p0_fah": 0.3333,
                           "recall_at_2p0_fah": 0.6, "confusable_false_accept_rate": 0.0,
                           "confusable_false_accept_rate_at_0p5_fah": 0.0667},
            "pico:en-GB": {"positive_clips": 15, "confusable_clips": 15, "recall_at_target": 0.3111,
                           "recall_at_0p1_fah": 0.0, "recall_at_0p5_fah": 0.5111, "recall_at_1p0_fah": 0.4667,
                           "recall_at_2p0_fah": 0.8, "confusable_false_accept_rate": 0.1333,
                           "confusable_false_accept_rate_at_0p5_fah": 0.2},
        }
    data = {"clips_per_engine": {"espeak": 480, "piper": 120, "noise": 20}, "formant_warped_clips": 300,
            "revoiced_clips": 96, "minimal_pair_clips": 64, "piper_clips_per_accent": {"en-us": 70, "en-gb-x-rp": 50},
            "stream_hours": {"val": 2.0, "test": 2.0}}
    if heldout:
        data["heldout"] = {"clips_per_engine": {"pico": 90}, "voices": 2}
        data["stream_hours"]["heldout"] = 1.25
    split = {
        "train": {"positive_clips": 201.0, "negative_clips": 202.0, "hard_negative_clips": 83.0,
                  "background_clips": 14.0, "positive_hours": 0.1, "negative_hours": 0.2, "groups": 40},
        "val": {"positive_clips": 31.0, "negative_clips": 32.0, "groups": 9, "stream_clips": 1.0, "stream_hours": 2.0},
        "test": {"positive_clips": 41.0, "negative_clips": 42.0, "hard_negative_clips": 43.0, "groups": 9,
                 "stream_clips": 1.0, "stream_hours": 2.0},
    }
    if heldout:
        split["heldout"] = {"positive_clips": 30.0, "negative_clips": 30.0, "hard_negative_clips": 30.0,
                            "groups": 2, "stream_clips": 1.0, "stream_hours": 1.25}
    return {
        "split": split, "data": data,
        "data_report": {"accepted": 0, "rejected": 0, "counts": {}, "hours": {}},
        "train": {"epochs": 12, "best_epoch": 9, "train_wall_s": 123.4, "parameters": 4321, "macs_per_window": 100000,
                  "best": {"val_recall_at_target_fah": 0.765, "val_loss": 0.1234}},
        "size": {"flash_kb": 33.33, "arena_kb": 11.11, "detector_buffers_kb": 6.39, "ram_kb": 17.5,
                 "parameters": 4321, "macs_per_window": 100000, "macs_per_second": 1000000,
                 "float": {"flash_kb": 90.5, "arena_kb": 50.25, "ram_kb": 56.64},
                 "platforms": {"esp32_s3": {"fits": True, "flash_kb": 33.33, "max_flash_kb": 64, "ram_kb": 17.5,
                                            "max_ram_kb": 48, "flash_share_of_device": 0.0081,
                                            "ram_share_of_device": 0.0342}}},
        "float": float_m, "int8": int8_m,
        "calibration": {"threshold": 0.777, "temperature": 0.9123, "target_fah": 1.0, "val_fah": 0.5,
                        "val_recall": 0.8, "val_negative_hours": 2.0, "target_met": True, "ece_before": 0.02,
                        "ece_after": 0.01, "detector": {"threshold_on": 0.777, "threshold_off": 0.677,
                                                        "vote_window": 5, "vote_threshold": 3, "lockout_ms": 1500,
                                                        "step_ms": 100}},
        "mining": {"enabled": True, "stream_hours": 6.0, "threshold": 0.1, "mined": 1048,
                   "fah_before_at": {"0.5": 3.5, "0.9": 0.6667}},
        "finetune": {"fine_tuned": True, "epochs": 4, "kept": "epoch 1",
                     "train_stream_fah_after_at": {"0.5": 1.1667, "0.9": 0.0}},
    }


def write_inputs(dir_: Path, inputs: dict[str, dict]) -> list[Path]:
    dir_.mkdir(parents=True, exist_ok=True)
    paths = []
    for stem, data in inputs.items():
        (p := dir_ / f"{stem}.json").write_text(json.dumps(data))
        paths.append(p)
    return paths


def row(card: str, label: str) -> list[str]:
    """The cells after the label of the table row starting with ``label``."""
    hits = [line for line in card.splitlines() if line.startswith(f"| {label}")]
    assert len(hits) == 1, f"no single row {label!r} in:\n{card}"
    return [c.strip() for c in hits[0].strip().strip("|").split("|")][1:]


def test_render_puts_each_figure_in_its_row_and_column():
    card = render_model_card(small_inputs(), Params())
    assert card.startswith('# Model card: "hey jarvis" wake-word detector (tcn)')
    header = row(card, "metric")
    assert header == ["float, test", "int8, test", "float, held-out (pico)", "int8, held-out (pico)"]
    # float before int8 in each set: the columns are not swapped
    assert row(card, "recall at the threshold") == ["70.0%", "60.0%", "21.1%", "22.2%"]
    assert row(card, "recall at 0.5 FA/h") == ["61.0%", "52.0%", "12.3%", "45.6%"]
    assert row(card, "recall at 1 FA/h") == ["72.0%", "63.0%", "30.1%", "40.2%"]
    assert row(card, "EER") == ["8.1%", "9.2%", "17.0%", "18.0%"]
    assert row(card, "ROC-AUC")[:2] == ["0.9811", "0.9722"]
    assert row(card, "FA/h at the threshold")[0] == "1.50 [0.01, 5.50] (3 in 2.00 h)"
    assert row(card, "FA/h at the threshold")[1].startswith("2.50 ")
    assert row(card, "confusable false-accept rate")[0] == "5.0% (2/40)"
    assert row(card, "latency, phrase end to detection")[0] == "0.12 / 0.48"
    # size: the int8 model's flash, arena, buffers and RAM; the platform fit
    assert row(card, "int8 TFLite (deployed)") == ["33.33", "11.11", "6.39", "17.50"]
    assert row(card, "float TFLite (reference)")[0] == "90.50"
    assert row(card, "ESP32-S3") == ["yes", "33.33 / 64", "17.50 / 48", "0.8% / 3.4%"]
    # data per split and kind, streams, engines, the held-out engine called out
    assert row(card, "train") == ["201", "202", "83", "14", "0.30", "40", "–"]
    assert row(card, "test") == ["41", "42", "43", "0", "0.00", "9", "2.00"]
    assert row(card, "held-out engine (pico)")[:3] == ["30", "30", "30"]
    assert "espeak 480, piper 120, noise 20 (noise = synthetic background sounds); 300 clips formant-warped; " \
           "96 Piper clips revoiced; 64 confusables voiced like a positive (minimal pairs)." in card
    assert "Piper clips per pronunciation accent (`synth.piper_accents`): en-us 70, en-gb-x-rp 50." in card
    assert "pico 90 clips, 2 voices, 1.25 h negative stream): **never trained on**" in card
    # threshold, temperature, detector, compute, training
    assert "**0.777**" in card and "0.9123" in card and "`threshold_off` 0.677" in card
    assert "3 of the last 5 steps vote, lockout 1500 ms" in card
    assert "Parameters: 4,321. MACs per window: 100,000 (0.10 M); per second of audio: 1,000,000 (1.00 M)" in card
    assert "Epochs run 12 (`train.epochs` 20); best epoch 9" in card and "123 s of training" in card
    assert "validation recall at the target FA/h 76.5%" in card
    assert "Optimizer adamw, lr 0.003" in card and "EMA: on, decay 0.999" in card and "QAT: off" in card
    assert "`model.tcn`: channels 24, levels 4, kernel_size 3" in card
    assert "-S synth.phrase='hey jarvis'" in card and "-S model.arch=tcn" in card
    assert "22.2% on the held-out engine (pico)" in card  # the honest generalisation line
    assert "int8 vs float: decision agreement 98.7%, recall drop 10.00 points" in card
    # the held-out set per voice (int8), in name order; the word loss (on in the default params)
    assert row(card, "`pico:en-GB`") == ["15", "31.1%", "51.1%", "46.7%", "80.0%", "13.3% / 20.0% of 15"]
    assert row(card, "`pico:en-US`") == ["15", "13.3%", "40.0%", "33.3%", "60.0%", "0.0% / 6.7% of 15"]
    assert card.index("`pico:en-GB`") < card.index("`pico:en-US`")
    assert "hard-negative weight 3; auxiliary word loss weight 3 (a training-only head per word" in card
    off = render_model_card(small_inputs(), Params.model_validate({"train": {"loss": {"word_weight": 0.0}}}))
    assert "word loss" not in off and "hard-negative weight 3." in off


def test_engine_table_appears_with_two_or_more_held_out_engines():
    inputs = small_inputs()
    assert "per engine" not in render_model_card(inputs, Params())  # one engine: the voice table says it all
    eng = {"positive_clips": 30, "confusable_clips": 30, "recall_at_0p5_fah": 0.4556,
           "recall_at_0p5_fah_without_confusables": 0.6, "confusable_false_accept_rate_at_0p5_fah": 0.1,
           "confusable_false_accept_rate_at_0p5_fah_without_confusables": 0.2333}
    inputs["int8"]["heldout"]["by_engine"] = {"pico": eng, "dectalk": {**eng, "recall_at_0p5_fah": 0.1,
                                                                         "positive_clips": 27}}
    inputs["data"]["heldout"]["clips_per_engine"] = {"pico": 90, "dectalk": 90}
    card = render_model_card(inputs, Params())
    assert "Int8 on the held-out engines (dectalk/pico) per engine" in card
    assert "per engine" in card and card.index("per engine") < card.index("per voice")
    assert row(card, "`dectalk`") == ["27", "10.0%", "60.0%", "10.0% / 23.3%"]
    assert row(card, "`pico`") == ["30", "45.6%", "60.0%", "10.0% / 23.3%"]
    assert card.index("`dectalk`") < card.index("`pico`")


def test_half_fah_line_pairs_recall_with_confusable_false_accepts():
    inputs = small_inputs()
    assert "at 0.5 FA/h: recall" not in render_model_card(inputs, Params())  # metrics from before the keys
    held = inputs["int8"]["heldout"]
    held["confusable_false_accept_rate_at_0p5_fah"] = 0.0333
    card = render_model_card(inputs, Params())
    assert "Int8 on the held-out engine (pico) at 0.5 FA/h: recall 45.6%, confusable false accepts 3.3%." in card
    held["without_confusables"] = {"negative_hours": 1.2, "recall_at_0p5_fah": 0.84, "threshold_at_0p5_fah": 0.114,
                                   "confusable_false_accept_rate_at_0p5_fah": 0.1367}
    card = render_model_card(inputs, Params())
    assert ("at 0.5 FA/h: recall 45.6%, confusable false accepts 3.3%; with the stream's confusable phrases left "
            "out (they are measured per clip): recall 84.0%, confusable false accepts 13.7% (threshold 0.11).") in card


def test_rnn_arch_uses_the_rnn_section_and_later_train_keys_do_not_break():
    inputs = small_inputs()
    inputs["train"].update(qat_epochs_run=4, stopped_early=True, arch="gru")  # keys training may add later
    inputs["train"]["best"]["val_fah"] = 0.25
    params = Params.model_validate({"model": {"arch": "gru"}, "train": {"qat": {"enabled": True, "start_epoch": 5}}})
    card = render_model_card(inputs, params)
    assert "`model.arch: gru`; `model.rnn`: hidden_size 64" in card and "-S model.rnn.hidden_size=64" in card
    assert "QAT: on from epoch 5" in card
    assert "`qat_epochs_run` 4" in card and "Epochs run 12 (stopped early)" in card
    assert "validation FA/h 0.25" in card and "Mismatch" not in card
    assert "**Mismatch**: metrics/train.json is from arch `gru`" in render_model_card(inputs, Params())
    assert "seed_offset" not in card  # the default offset stays out of the reproduce command
    offset = render_model_card(inputs, Params.model_validate({"model": {"arch": "gru"}, "train": {"seed_offset": 3}}))
    assert "-S seed=1234 -S train.seed_offset=3 -S synth.phrase=" in offset


def test_mining_line_states_what_mining_found_and_the_fah_before_and_after():
    card = render_model_card(small_inputs(), Params())
    line = next(x for x in card.splitlines() if x.startswith("- Hard-negative mining"))
    assert line == ("- Hard-negative mining: 1,048 windows scoring >= 0.1 (local peaks 500 ms apart, at most 4,000) in "
                    "the 6.00 h training stream; fine-tuned 4 epochs at lr 0.0005 with them, kept: epoch 1. FA/h of "
                    "the training stream before -> after fine-tuning: 3.5 -> 1.2 at threshold 0.5, 0.7 -> 0.0 at "
                    "threshold 0.9.")
    inputs = small_inputs()
    inputs["int8"]["fidelity_vs_float"]["recall_drop"] = -0.0  # int8 and float recall equal, as in real runs
    assert ", recall drop 0.00 points," in render_model_card(inputs, Params())
    aug = next(x for x in card.splitlines() if x.startswith("- Augmentation"))
    assert aug.endswith(", random EQ p 0.5 (tilt up to 30 dB, 2 bands of up to ±6 dB).")
    assert "pause between words" not in aug
    paused = Params.model_validate({"augment": {"pause_prob": 0.5, "pause_s": [0.1, 0.4]}})
    assert ("pitch shift p 0.6, a pause between words p 0.5 (0.1-0.4 s), a frequency warp p 0.5"
            in render_model_card(small_inputs(), paused))
    assert "pitch shift p 0.6, a frequency warp p 0.5 (factor 0.84-1.19), SpecAugment p 0.5" in aug  # default
    unwarped = Params.model_validate({"augment": {"warp_prob": 0.0}})
    assert "frequency warp" not in render_model_card(small_inputs(), unwarped)
    micro = Params.model_validate({"features": {"type": "micro", "win_ms": 30.0}, "augment": {"warp_prob": 0.5}})
    micro_card = render_model_card(small_inputs(), micro)
    assert ", random EQ off." in micro_card  # its gain control undoes a static EQ
    assert "frequency warp" not in micro_card  # and its state would not follow a warped frame
    inputs = small_inputs()
    inputs["mining"] = {"enabled": False, "mined": 0}
    assert "- Hard-negative mining: off (`mine.enabled` false)" in render_model_card(inputs, Params())
    inputs["mining"] = {"enabled": True, "stream_hours": 2.0, "threshold": 0.5, "mined": 0}
    inputs["finetune"] = {"fine_tuned": False, "reason": "no mined windows"}
    assert ("0 windows scoring >= 0.5 (local peaks 500 ms apart, at most 4,000) in the 2.00 h training stream; "
            "nothing to fine-tune with, the trained model is kept.") in render_model_card(inputs, Params())


def test_card_names_the_spelling_cue_the_yardstick_and_the_window_mean():
    """Whether the training data had the pause/comma cue, which held-out yardstick the figures come from, and
    whether the model subtracts the window mean: each stated from its params key, both ways."""
    def lines(params: Params) -> list[str]:
        return render_model_card(small_inputs(), params).splitlines()

    default = lines(Params())
    assert any(x.startswith("- Spelling and pauses (`synth.uniform_kinds: true`)") for x in default)
    held = next(x for x in default if x.startswith("- **Held-out engine**"))
    assert held.endswith("spelled and framed like its positives (`synth.heldout_uniform_kinds: true`): no pause "
                         "or comma tells them apart.")
    window = next(x for x in default if x.startswith("- Input:"))
    assert "CMVN-normalised; one window every 100 ms" in window
    old = lines(Params.model_validate({"synth": {"uniform_kinds": False, "heldout_uniform_kinds": False},
                                       "model": {"subtract_window_mean": True}}))
    assert any(x.startswith("- Spelling and pauses (`synth.uniform_kinds: false`): only positives") for x in old)
    held = next(x for x in old if x.startswith("- **Held-out engine**"))
    assert "(`synth.heldout_uniform_kinds: false`, the yardstick before session 22)" in held
    window = next(x for x in old if x.startswith("- Input:"))
    assert "CMVN-normalised, less its per-bin mean over the window (`model.subtract_window_mean`" in window
    own = lines(Params.model_validate({"data": {"source": "own"}}))
    assert not any(x.startswith("- Spelling and pauses") for x in own)  # no demo data trained on


def test_without_a_heldout_set():
    card = render_model_card(small_inputs(heldout=False), Params())
    assert row(card, "metric") == ["float, test", "int8, test"]
    assert "no held-out engine set" in card
    assert "held-out engine (pico)" not in card.split("## Data")[1].split("## Architecture")[0].split("|---")[1]


def test_missing_input_file_and_key_are_named(tmp_path):
    paths = write_inputs(tmp_path, small_inputs())
    (tmp_path / "size.json").unlink()
    with pytest.raises(ModelCardError, match=r"size\.json: model card input not found.*tflite"):
        load_card_inputs(paths)
    present = [p for p in paths if p.name != "size.json"]
    with pytest.raises(ModelCardError, match=r"not given: size\.json"):
        load_card_inputs(present)
    with pytest.raises(ModelCardError, match=r"onnx\.json: not a model card input"):
        load_card_inputs([*present, tmp_path / "onnx.json"])
    (tmp_path / "calibration.json").write_text("{nope")
    with pytest.raises(ModelCardError, match=r"calibration\.json: not valid JSON"):
        read_json_input(tmp_path / "calibration.json")
    inputs = small_inputs()
    del inputs["int8"]["recall_at_target"]
    with pytest.raises(ModelCardError, match=r"int8\.json: missing or non-numeric recall_at_target"):
        render_model_card(inputs, Params())
    with pytest.raises(ModelCardError, match=r"train\.json is missing"):
        ModelCardInputs.from_mapping({k: v for k, v in small_inputs().items() if k != "train"})


def test_stage_writes_the_card(tmp_path):
    paths = write_inputs(tmp_path / "metrics", small_inputs())
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(Params().model_dump(mode="json"), sort_keys=False))
    out = tmp_path / "metrics" / "model_card.md"
    result = CliRunner().invoke(card_main, [*map(str, paths), str(out), "--params", str(params)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text == render_model_card(load_card_inputs(paths), Params())
    assert not list(out.parent.glob("*.tmp"))
    (tmp_path / "metrics" / "float.json").unlink()
    again = CliRunner().invoke(card_main, [*map(str, paths), str(out), "--params", str(params)])
    assert again.exit_code != 0 and "float.json" in again.output and "evaluate" in again.output


@pytest.mark.skipif(not all((ROOT / "metrics" / f).is_file() for f in INPUT_FILES.values()),
                    reason="no full set of metrics files in this checkout")
def test_renders_the_repos_real_metrics():
    files = [ROOT / "metrics" / f for f in INPUT_FILES.values()]
    inputs = load_card_inputs(files)
    card = render_model_card(inputs, load_params(ROOT / "params.yaml"))
    size, cal = inputs.size, inputs.calibration
    assert row(card, "int8 TFLite (deployed)")[0] == f"{size['flash_kb']:.2f}"
    assert f"**{cal['threshold']:.3f}**" in card
    assert row(card, "recall at the threshold")[0] == f"{100 * inputs.float_metrics['recall_at_target']:.1f}%"
    if "heldout" in inputs.int8_metrics:
        held = inputs.int8_metrics["heldout"]
        assert row(card, "recall at the threshold")[3] == f"{100 * held['recall_at_target']:.1f}%"
    for label in ("EER", "ROC-AUC", "FA/h at the threshold", "confusable false-accept rate"):
        assert "–" not in row(card, label), f"{label}: a real key was not found"
    assert "–" not in card.split("## Architecture")[1].split("## Size")[0]


def test_own_audio_is_listed_when_the_source_uses_it():
    inputs = small_inputs()
    inputs["data_report"] = {"accepted": 40, "rejected": 3, "counts": {"positive": 24, "negative": 16, "rir": 0},
                             "hours": {"positive": 0.0123, "negative": 0.02}}
    both = render_model_card(inputs, Params.model_validate({"data": {"source": "both"}}))
    assert "40 files accepted: positive 24 (0.01 h), negative 16 (0.02 h); 3 rejected" in both
    assert "espeak 480" in both and "synthetic speech only" not in both
    demo = render_model_card(inputs, Params())
    assert "Own audio" not in demo and "synthetic speech only" in demo
