"""The auxiliary word loss: targets from clip texts (hand-written expectations), the loss against a hand
computation, and the ``train.loss.word_weight`` switch in training (it changes the model, is deterministic,
the exported checkpoint has no word head, and without targets the run is one without it)."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from wakeword.checkpoint import load_checkpoint
from wakeword.cmvn import CMVN
from wakeword.featureset import KIND_CODES, FeatureSet
from wakeword.losses import word_loss
from wakeword.manifest import Item, write_manifest
from wakeword.params import AudioParams, CalibrateParams, DetectorParams, ModelParams, TrainParams
from wakeword.train import TrainData, TrainSetup, train_model
from wakeword.words import (
    WordTargetError,
    clip_word_targets,
    phrase_words,
    training_word_targets,
    window_word_targets,
)

P, N, H, B, Q = (KIND_CODES[k] for k in ("positive", "negative", "hard_negative", "background", "partial"))

ITEMS = [
    Item("p", "p.wav", "positive", "g", 0.9, text="Um, hey Jarvis again?"),
    Item("c1", "c1.wav", "hard_negative", "g", 0.8, text="hey starvis"),
    Item("c2", "c2.wav", "hard_negative", "g", 0.8, text="Pey jarvis"),
    Item("c3", "c3.wav", "hard_negative", "g", 0.8, text="jarvis, hey!"),
    Item("n1", "n1.wav", "negative", "g", 1.2, text="Say hey to me."),
    Item("n2", "n2.wav", "negative", "g", 3.0, text="Hey you walked on this bottle when a shop looks bright."),
    Item("n3", "n3.wav", "negative", "g", 2.0, text="Every apple grows."),
    Item("n4", "n4.wav", "negative", "g", 1.0),  # own audio: no text
    Item("b", "b.wav", "background", "noise", 6.0),
    Item("s", "s.wav", "stream", "g", 3600.0),
]
WANT = [[1, 1], [1, 0], [0, 1], [1, 1], [1, 0], [-1, 0], [0, 0], [-1, -1], [0, 0], [-1, -1]]


def test_phrase_words_are_distinct_tokens_in_order() -> None:
    assert phrase_words("Hey, Jarvis!") == ["hey", "jarvis"]
    assert phrase_words("hey hey jarvis") == ["hey", "jarvis"]
    with pytest.raises(WordTargetError, match="no words"):
        phrase_words(" ,! ")


def test_clip_targets_by_hand() -> None:
    # n2 is longer than the 1.5 s window: its "hey" may be cropped away (unknown), its missing "jarvis" is not
    assert clip_word_targets(ITEMS, "hey jarvis", 1.5).tolist() == WANT


def test_window_targets_follow_kind_and_source_row() -> None:
    table = clip_word_targets(ITEMS, "hey jarvis", 1.5)
    clip = np.array([0, 0, 1, 2, 6, 8, -1, -1, -1, 7])
    kind = np.array([P, Q, H, H, N, B, B, H, P, N], dtype=np.int8)
    got = window_word_targets(table, clip, kind, "t")
    # partial: unknown; background without a row: 0; a mined window (no row): unknown; a positive without a
    # row (own audio): 1; own negative without text: unknown
    assert got.tolist() == [[1, 1], [-1, -1], [1, 0], [0, 1], [0, 0], [0, 0], [0, 0], [-1, -1], [1, 1], [-1, -1]]
    assert got.dtype == np.int8
    with pytest.raises(WordTargetError, match="past the manifest's 10 rows"):
        window_word_targets(table, np.array([10]), np.array([N]), "t")
    with pytest.raises(WordTargetError, match="2 source rows for 1 windows"):
        window_word_targets(table, np.array([1, 2]), np.array([N]), "t")


def test_training_word_targets_read_the_train_manifest(tmp_path: Path) -> None:
    write_manifest(tmp_path / "train.jsonl", ITEMS)
    fn = training_word_targets(tmp_path, "hey jarvis", 1.5)
    assert fn(np.array([1, 2]), np.array([H, H])).tolist() == [[1, 0], [0, 1]]
    assert fn(np.zeros(0, np.int32), np.zeros(0, np.int8)).shape == (0, 2)
    with pytest.raises(WordTargetError, match="train.jsonl"):
        fn(np.array([99]), np.array([N]))


def test_word_loss_by_hand() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.5, 3.0]], requires_grad=True)
    targets = torch.tensor([[1, -1], [0, 1]], dtype=torch.int8)

    def bce(z: float, t: int) -> float:
        p = 1.0 / (1.0 + math.exp(-z))
        return -(t * math.log(p) + (1 - t) * math.log(1 - p))

    want = (bce(2.0, 1) + bce(0.5, 0) + bce(3.0, 1)) / 3  # the unknown entry is left out
    got = word_loss(logits, targets)
    assert float(got) == pytest.approx(want, rel=1e-6)
    got.backward()
    assert logits.grad is not None and float(logits.grad[0, 1]) == 0.0
    none = word_loss(logits, torch.full((2, 2), -1, dtype=torch.int8))
    assert float(none) == 0.0 and none.requires_grad


WINDOW, EVAL, F = 40, 80, 8


def _data(word_targets=None) -> TrainData:
    rng = np.random.default_rng(0)

    def fs(n: int, frames: int, spans: bool) -> FeatureSet:
        y = (np.arange(n) % 2).astype(np.int8)
        x = rng.standard_normal((n, frames, F)).astype(np.float32) + y[:, None, None]
        kind = np.where(y == 1, P, np.where(np.arange(n) % 4 == 0, H, N)).astype(np.int8)
        start = np.where(y == 1, 10, -1).astype(np.int32) if spans else np.full(n, -1, np.int32)
        end = np.where(y == 1, 60, -1).astype(np.int32) if spans else np.full(n, -1, np.int32)
        return FeatureSet(x, y, kind, start, end, clip=np.arange(n, dtype=np.int32) % 3)

    cmvn = CMVN(np.zeros(F, np.float32), np.ones(F, np.float32), "log_mel", 1)
    index = {"window_frames": WINDOW, "step_frames": 10, "n_features": F}
    return TrainData(fs(64, WINDOW, False), fs(12, EVAL, True), rng.standard_normal((2000, F)).astype(np.float32),
                     0.01, cmvn, index, word_targets=word_targets)


def _train(tmp: Path, weight: float, word_targets=None) -> dict[str, torch.Tensor]:
    setup = TrainSetup(ModelParams(arch="ds_tcn", ds_tcn={"channels": 8, "blocks": 1}),
                       TrainParams(epochs=2, batch_size=16, warmup_epochs=0, loss={"word_weight": weight}),
                       DetectorParams(), CalibrateParams(), AudioParams(), 5)
    train_model(_data(word_targets), setup, tmp / "model.pt")
    model, _ = load_checkpoint(tmp / "model.pt")
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_word_weight_switch_changes_training_and_leaves_the_model_alone(tmp_path: Path, caplog) -> None:
    table = np.array([[1, 0], [0, 1], [0, 0]], dtype=np.int8)  # three source rows, each its own words

    def targets(clip: np.ndarray, kind: np.ndarray) -> np.ndarray:
        return window_word_targets(table, clip, kind)

    off = _train(tmp_path / "off", 0.0)
    off_with_targets = _train(tmp_path / "off2", 0.0, targets)  # weight 0: the targets are not used
    on = _train(tmp_path / "on", 1.0, targets)
    again = _train(tmp_path / "on2", 1.0, targets)
    assert all(torch.equal(off[k], off_with_targets[k]) for k in off)
    assert all(torch.equal(on[k], again[k]) for k in on)  # deterministic
    assert any(not torch.equal(off[k], on[k]) for k in off)  # the word loss reached the shared layers
    assert on.keys() == off.keys()  # the word head is training-only: not in the checkpoint
    # a weight without targets (a library call that gives none): a run without the word loss, and a warning
    with caplog.at_level(logging.WARNING, logger="wakeword.train"):
        missing = _train(tmp_path / "missing", 1.0)
    assert all(torch.equal(off[k], missing[k]) for k in off)
    assert "no word targets" in caplog.text
