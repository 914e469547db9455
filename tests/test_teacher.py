"""wakeword.teacher: a pipeline checkpoint re-normalised to its own CMVN, and a tiny transformers AST."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from wakeword.checkpoint import save_checkpoint
from wakeword.cmvn import CMVN
from wakeword.models import build_model, count_parameters
from wakeword.params import ModelParams
from wakeword.teacher import TeacherError, load_teacher

N_FEATURES, WINDOW = 10, 50
RNG = np.random.default_rng(0)
STUDENT = CMVN(RNG.normal(-5, 1, N_FEATURES).astype(np.float32), RNG.uniform(1, 3, N_FEATURES).astype(np.float32),
               "log_mel", 1000)
TEACHER = CMVN(RNG.normal(-3, 1, N_FEATURES).astype(np.float32), RNG.uniform(0.5, 2, N_FEATURES).astype(np.float32),
               "log_mel", 1000)
RAW = RNG.normal(-4, 2, size=(3, WINDOW, N_FEATURES)).astype(np.float32)  # un-normalised log-mel windows


def _checkpoint(path: Path, cmvn: CMVN | None, n_features: int = N_FEATURES, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    p = ModelParams(arch="ds_tcn", ds_tcn={"channels": 8, "blocks": 1})
    model = build_model(p, n_features, WINDOW)
    model.train()(torch.randn(8, WINDOW, n_features))  # non-trivial batch-norm statistics
    meta = {"model": p.model_dump(), "n_features": n_features, "window_frames": WINDOW, "step_frames": 5}
    if cmvn is not None:
        meta["cmvn"] = cmvn.to_dict()
    save_checkpoint(path, model, meta)
    return model.eval()


def test_checkpoint_teacher_sees_its_own_cmvn(tmp_path: Path) -> None:
    model = _checkpoint(tmp_path / "t.pt", TEACHER)
    teacher = load_teacher(tmp_path / "t.pt", "checkpoint", STUDENT, N_FEATURES, WINDOW)
    got = teacher(torch.from_numpy(STUDENT.apply(RAW)))
    with torch.no_grad():
        want = model(torch.from_numpy(TEACHER.apply(RAW)))
        wrong = model(torch.from_numpy(STUDENT.apply(RAW)))
    assert got.shape == (3, 2) and not got.requires_grad
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(got, wrong, atol=1e-3)  # the re-normalisation matters in this test
    assert teacher.parameters == count_parameters(model)
    assert "ds_tcn" in teacher.description and str(tmp_path / "t.pt") in teacher.description


def test_directory_of_checkpoints_is_an_ensemble_of_mean_probabilities(tmp_path: Path) -> None:
    ens = tmp_path / "ens"
    ens.mkdir()
    a = _checkpoint(ens / "a.pt", TEACHER, seed=1)
    b = _checkpoint(ens / "b.pt", STUDENT, seed=2)  # members may carry different CMVN
    (ens / "notes.txt").write_text("not a checkpoint: ignored")
    teacher = load_teacher(ens, "checkpoint", STUDENT, N_FEATURES, WINDOW)
    got = teacher(torch.from_numpy(STUDENT.apply(RAW)))
    with torch.no_grad():
        pa = torch.softmax(a(torch.from_numpy(TEACHER.apply(RAW))), dim=-1).numpy()
        pb = torch.softmax(b(torch.from_numpy(STUDENT.apply(RAW))), dim=-1).numpy()
    want = np.log((pa + pb) / 2)  # by hand: the mean of the two members' probabilities
    assert not np.allclose(pa, pb, atol=1e-3)  # the members differ, so the mean is not either one
    np.testing.assert_allclose(got.numpy(), want, atol=1e-4)
    np.testing.assert_allclose(torch.softmax(got, dim=-1).numpy(), (pa + pb) / 2, atol=1e-5)
    assert teacher.parameters == count_parameters(a) + count_parameters(b)
    assert "ensemble of 2" in teacher.description and "a.pt" in teacher.description and "b.pt" in teacher.description

    one = tmp_path / "one"
    one.mkdir()
    _checkpoint(one / "a.pt", TEACHER, seed=1)
    single = load_teacher(one, "checkpoint", STUDENT, N_FEATURES, WINDOW)
    torch.testing.assert_close(single(torch.from_numpy(STUDENT.apply(RAW))),
                               a(torch.from_numpy(TEACHER.apply(RAW))).detach(), atol=1e-4, rtol=1e-4)

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(TeacherError, match=r"train\.distill\.teacher.*holds no \.pt checkpoint"):
        load_teacher(empty, "checkpoint", STUDENT, N_FEATURES, WINDOW)
    _checkpoint(ens / "c12.pt", None, n_features=12)
    with pytest.raises(TeacherError, match="c12.pt"):  # a member that does not fit names itself
        load_teacher(ens, "checkpoint", STUDENT, N_FEATURES, WINDOW)


def test_checkpoint_without_cmvn_assumes_the_students(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = _checkpoint(tmp_path / "old.pt", None)
    with caplog.at_level(logging.WARNING, logger="wakeword.teacher"):
        teacher = load_teacher(tmp_path / "old.pt", "checkpoint", STUDENT, N_FEATURES, WINDOW)
    assert "no CMVN" in caplog.text
    x = torch.from_numpy(STUDENT.apply(RAW))
    with torch.no_grad():
        torch.testing.assert_close(teacher(x), model(x), atol=1e-5, rtol=1e-5)


def test_checkpoint_shape_mismatch(tmp_path: Path) -> None:
    _checkpoint(tmp_path / "t12.pt", None, n_features=12)
    with pytest.raises(TeacherError, match=r"train\.distill\.teacher") as exc:
        load_teacher(tmp_path / "t12.pt", "checkpoint", STUDENT, N_FEATURES, WINDOW)
    msg = str(exc.value)
    assert str(tmp_path / "t12.pt") in msg and "(50, 12)" in msg and "(50, 10)" in msg


def test_checkpoint_feature_type_mismatch_and_bad_files(tmp_path: Path) -> None:
    mfcc = CMVN(TEACHER.mean, TEACHER.std, "mfcc", 10)
    _checkpoint(tmp_path / "mfcc.pt", mfcc)
    with pytest.raises(TeacherError, match="mfcc"):
        load_teacher(tmp_path / "mfcc.pt", "checkpoint", STUDENT, N_FEATURES, WINDOW)
    with pytest.raises(TeacherError, match=r"train\.distill\.teacher.*does not exist"):
        load_teacher(tmp_path / "nope.pt", "checkpoint", STUDENT, N_FEATURES, WINDOW)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(TeacherError, match=r"train\.distill\.teacher"):
        load_teacher(tmp_path / "junk.pt", "checkpoint", STUDENT, N_FEATURES, WINDOW)


def test_teacher_checks_its_input_shape(tmp_path: Path) -> None:
    _checkpoint(tmp_path / "t.pt", TEACHER)
    teacher = load_teacher(tmp_path / "t.pt", "checkpoint", STUDENT, N_FEATURES, WINDOW)
    with pytest.raises(TeacherError, match=r"\(B, 50, 10\)"):
        teacher(torch.zeros(2, 40, N_FEATURES))


def _ast_config(**overrides: object) -> object:
    transformers = pytest.importorskip("transformers")
    kw: dict[str, object] = {
        "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 32,
        "patch_size": 4, "frequency_stride": 4, "time_stride": 4, "num_mel_bins": N_FEATURES,
        "max_length": WINDOW, "num_labels": 2,
    }
    return transformers.ASTConfig(**(kw | overrides))


def _ast(path: Path, **overrides: object) -> torch.nn.Module:
    """A tiny AST classifier saved with save_pretrained at ``path`` (random weights, eval mode)."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = transformers.ASTForAudioClassification(_ast_config(**overrides)).eval()
    model.save_pretrained(path)
    return model


def test_transformers_ast_teacher(tmp_path: Path) -> None:
    model = _ast(tmp_path / "ast")
    teacher = load_teacher(tmp_path / "ast", "transformers", STUDENT, N_FEATURES, WINDOW)
    x = torch.from_numpy(STUDENT.apply(RAW))
    got = teacher(x)
    with torch.no_grad():
        want = model(input_values=x).logits
    assert got.shape == (3, 2)
    torch.testing.assert_close(got, want)
    assert teacher.parameters == sum(p.numel() for p in model.parameters())
    assert "ASTForAudioClassification" in teacher.description


def test_transformers_wake_label_first_is_moved_to_index_1(tmp_path: Path) -> None:
    model = _ast(tmp_path / "ast", id2label={0: "wake", 1: "other"}, label2id={"wake": 0, "other": 1})
    teacher = load_teacher(tmp_path / "ast", "transformers", STUDENT, N_FEATURES, WINDOW)
    x = torch.from_numpy(STUDENT.apply(RAW))
    with torch.no_grad():
        torch.testing.assert_close(teacher(x), model(input_values=x).logits[:, [1, 0]])


def test_transformers_longer_max_length_pads_with_zeros(tmp_path: Path) -> None:
    model = _ast(tmp_path / "ast", max_length=WINDOW + 14)
    teacher = load_teacher(tmp_path / "ast", "transformers", STUDENT, N_FEATURES, WINDOW)
    x = torch.from_numpy(STUDENT.apply(RAW))
    padded = torch.cat([x, torch.zeros(3, 14, N_FEATURES)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(teacher(x), model(input_values=padded).logits)


def test_transformers_errors(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    _ast(tmp_path / "ast")
    student12 = CMVN(np.zeros(12, np.float32), np.ones(12, np.float32), "log_mel", 1)
    with pytest.raises(TeacherError, match=r"train\.distill\.teacher.*num_mel_bins 10.*12"):
        load_teacher(tmp_path / "ast", "transformers", student12, 12, WINDOW)
    with pytest.raises(TeacherError, match="max_length"):
        load_teacher(tmp_path / "ast", "transformers", STUDENT, N_FEATURES, WINDOW + 1)

    transformers.BertConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=32).save_pretrained(tmp_path / "bert")
    with pytest.raises(TeacherError, match="'bert'.*audio-spectrogram-transformer"):
        load_teacher(tmp_path / "bert", "transformers", STUDENT, N_FEATURES, WINDOW)

    _ast(tmp_path / "ast3", num_labels=3)
    with pytest.raises(TeacherError, match="3 labels"):
        load_teacher(tmp_path / "ast3", "transformers", STUDENT, N_FEATURES, WINDOW)

    (tmp_path / "empty").mkdir()
    for missing in (tmp_path / "empty", tmp_path / "absent"):
        with pytest.raises(TeacherError, match=r"train\.distill\.teacher") as exc:
            load_teacher(missing, "transformers", STUDENT, N_FEATURES, WINDOW)
        assert str(missing) in str(exc.value)


def test_transformers_backbone_without_classifier_is_rejected(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    transformers.ASTModel(_ast_config()).save_pretrained(tmp_path / "base")
    with pytest.raises(TeacherError, match="classifier"):
        load_teacher(tmp_path / "base", "transformers", STUDENT, N_FEATURES, WINDOW)
