from __future__ import annotations

from pathlib import Path

import pytest

from wakeword.params import Params, ParamsError, load_params, merge_overrides, parse_params

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_load() -> None:
    assert load_params(ROOT / "params.yaml") == Params()


@pytest.mark.parametrize(
    "data, key, fragment",
    [
        ({"train": {"lr": -1}}, "train.lr = -1", "greater than 0"),
        ({"train": {"lerning_rate": 0.1}}, "train.lerning_rate", "allowed keys: balanced_batches, batch_ratio, batch_size"),
        ({"trian": {}}, "trian", "unknown key in the top level"),
        ({"split": {"train": 0.8, "val": 0.15, "test": 0.15}}, "split", "must be 1.0"),
        ({"detector": {"vote_threshold": 6}}, "detector", "must not exceed vote_window"),
        ({"augment": {"snr_db": [20, 5]}}, "augment", "low <= high"),
        ({"model": {"ds_tcn": {"kernel_size": 4}}}, "model.ds_tcn", "kernel_size must be odd"),
        ({"model": {"arch": "transformer"}}, "model.arch = 'transformer'", "'ds_tcn', 'tiny_conv'"),
        ({"model": {"rnn": {"hidden": 3}}}, "model.rnn.hidden", "allowed keys: bidirectional, hidden_size"),
        ({"train": {"qat": {"enabled": True, "start_epoch": 20}}}, "train", "qat.start_epoch (20) must be < epochs"),
        ({"train": {"batch_ratio": [1, -1, 1]}}, "train", "batch_ratio must be three non-negative"),
        ({"train": {"balanced_batches": True, "batch_ratio": [0, 1, 1]}}, "train", "positive share must be > 0"),
        ({"train": {"distill": {"teacher": "../elsewhere/model.pt"}}}, "train", "relative path inside the repository"),
        ({"train": {"loss": {"type": "hinge"}}}, "train.loss.type = 'hinge'", "'cross_entropy' or 'focal'"),
        ({"synth": {"phrase": "hey 123"}}, "synth.phrase = 'hey 123'", "pattern"),
        ({"synth": {"heldout_engines": ["pico", "pico"]}}, "synth", "lists an engine twice: ['pico', 'pico']"),
        ({"synth": {"heldout_engines": ["flite"]}}, "synth.heldout_engines.0 = 'flite'", "'pico' or 'dectalk'"),
        ({"synth": {"piper_accents": ["en-us", "EN GB"]}}, "synth", "'EN GB' is not an espeak-ng voice name"),
        ({"synth": {"piper_accents": []}}, "synth.piper_accents", "at least 1 item"),
        ({"synth": {"espeak_word_gap": [3, 1]}}, "synth", "espeak_word_gap must be [low, high] with 0 <= low"),
        ({"synth": {"espeak_word_gap": [0, 25]}}, "synth", "<= 20 (x 10 ms), got [0, 25]"),
        ({"audio": {"clip_s": 3.0}}, "audio.clip_s = 3.0", "less than or equal to 2"),
        ({"train": {"epochs": "many"}}, "train.epochs = 'many'", "integer"),
        ({"audio": {"step_ms": 105}}, "audio.step_ms (105)", "whole number of feature hops"),
        ({"deploy": {"platforms": {"pico": {"name": "Pico", "flash_kb": 2048, "ram_kb": 264, "max_ram_kb": 300}}}},
         "deploy.platforms.pico", "max_ram_kb (300) must not exceed the device's ram_kb (264)"),
        ({"deploy": {"platforms": {"esp-32": {"name": "E", "flash_kb": 4096, "ram_kb": 512}}}},
         "deploy", "platform key 'esp-32'"),
        ({"deploy": {"platforms": {"pico": {"name": "Pico", "ram_kb": 264}}}}, "deploy.platforms.pico.flash_kb",
         "Field required"),
        ({"deploy": {"website": "example.org"}}, "deploy.website = 'example.org'", "pattern"),
    ],
)
def test_bad_values_name_key_value_and_rule(data: dict, key: str, fragment: str) -> None:
    with pytest.raises(ParamsError) as info:
        parse_params(data)
    msg = str(info.value)
    assert key in msg and fragment in msg, msg


def test_unreadable_and_non_mapping(tmp_path: Path) -> None:
    with pytest.raises(ParamsError, match="cannot read"):
        load_params(tmp_path / "missing.yaml")
    (tmp_path / "p.yaml").write_text("- a\n- b\n")
    with pytest.raises(ParamsError, match="mapping"):
        load_params(tmp_path / "p.yaml")
    (tmp_path / "q.yaml").write_text("train: {lr: [\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(tmp_path / "q.yaml")


def test_merge_overrides_is_deep_and_validated() -> None:
    base = {"train": {"lr": 0.1, "epochs": 3}, "seed": 1}
    merged = merge_overrides(base, {"train": {"epochs": 1}})
    assert merged == {"train": {"lr": 0.1, "epochs": 1}, "seed": 1}
    assert base["train"]["epochs"] == 3
    assert parse_params(merged).train.epochs == 1


def test_tiny_profile_is_valid() -> None:
    import yaml

    tiny = yaml.safe_load((ROOT / "profiles" / "tiny.yaml").read_text())
    full = yaml.safe_load((ROOT / "params.yaml").read_text())
    p = parse_params(merge_overrides(full, tiny))
    assert p.synth.n_positive < Params().synth.n_positive


def test_no_choice_is_a_yaml_boolean_word() -> None:
    """`dvc exp run -S` rewrites params.yaml without quotes: a choice spelled off/on/yes/no would come back as
    a boolean and fail validation (YAML 1.1)."""
    import typing

    from pydantic import BaseModel

    from wakeword.params import Params

    yaml_bools = {"on", "off", "yes", "no", "y", "n", "true", "false"}
    found: list[str] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, field in model.model_fields.items():
            stack = [field.annotation]
            while stack:
                t = stack.pop()
                if isinstance(t, type) and issubclass(t, BaseModel):
                    walk(t, f"{prefix}{name}.")
                    continue
                if typing.get_origin(t) is typing.Literal:
                    found.extend(f"{prefix}{name}={a}" for a in typing.get_args(t)
                                 if isinstance(a, str) and a.lower() in yaml_bools)
                stack.extend(typing.get_args(t))

    walk(Params, "")
    assert not found, found
