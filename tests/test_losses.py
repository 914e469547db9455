"""wakeword.losses against values computed by hand with ``math`` (not through the same torch formulas)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from wakeword.featureset import KIND_CODES
from wakeword.losses import (
    ClassificationLoss,
    balanced_class_weights,
    combine,
    distillation_loss,
    focal_loss,
    triplet_loss,
)
from wakeword.params import LossParams

POS, NEG, HARD = KIND_CODES["positive"], KIND_CODES["negative"], KIND_CODES["hard_negative"]


def softmax2(z0: float, z1: float) -> tuple[float, float]:
    e0, e1 = math.exp(z0), math.exp(z1)
    return e0 / (e0 + e1), e1 / (e0 + e1)


def ce(z: list[float], y: int, eps: float = 0.0) -> float:
    """Cross entropy with label smoothing eps over 2 classes: (1 - eps) * -log p_y + eps / 2 * sum_c -log p_c."""
    p = softmax2(*z)
    return (1 - eps) * -math.log(p[y]) + eps / 2 * (-math.log(p[0]) - math.log(p[1]))


LOGITS = [[2.0, -1.0], [0.5, 0.3], [-1.0, 1.5], [0.0, 0.0]]
TARGET = [1, 0, 1, 0]


def test_focal_loss_by_hand() -> None:
    alpha, gamma = 0.25, 2.0
    want = []
    for z, y in zip(LOGITS, TARGET, strict=True):
        p_t = softmax2(*z)[y]
        a_t = alpha if y == 1 else 1 - alpha
        want.append(-a_t * (1 - p_t) ** gamma * math.log(p_t))
    got = focal_loss(torch.tensor(LOGITS), torch.tensor(TARGET), alpha, gamma)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5)
    assert focal_loss(torch.tensor(LOGITS), torch.tensor(TARGET), alpha, gamma, "mean").item() == pytest.approx(
        sum(want) / len(want), rel=1e-5)
    assert focal_loss(torch.tensor(LOGITS), torch.tensor(TARGET), alpha, gamma, "sum").item() == pytest.approx(
        sum(want), rel=1e-5)


def test_focal_gamma0_alpha_half_is_half_cross_entropy() -> None:
    logits, target = torch.tensor(LOGITS), torch.tensor(TARGET)
    got = focal_loss(logits, target, alpha=0.5, gamma=0.0)
    torch.testing.assert_close(got, 0.5 * F.cross_entropy(logits, target, reduction="none"))


def test_focal_is_finite_for_confident_logits_and_small_gamma() -> None:
    logits = torch.tensor([[-200.0, 200.0], [300.0, -300.0]], requires_grad=True)
    loss = focal_loss(logits, torch.tensor([1, 1]), alpha=0.25, gamma=0.5, reduction="sum")
    loss.backward()
    assert torch.isfinite(loss) and torch.all(torch.isfinite(logits.grad))
    assert loss.item() == pytest.approx(0.25 * 600.0, rel=1e-5)  # p_t = e^-600: loss = alpha * 600


def test_balanced_class_weights_by_hand() -> None:
    w = balanced_class_weights(np.array([0, 0, 0, 1], dtype=np.int8))
    torch.testing.assert_close(w, torch.tensor([4 / (2 * 3), 4 / (2 * 1)]))
    torch.testing.assert_close(balanced_class_weights(torch.tensor([1, 0])), torch.tensor([1.0, 1.0]))
    with pytest.raises(ValueError, match=r"train\.loss\.class_weights"):
        balanced_class_weights(np.zeros(5, dtype=np.int64))


@pytest.mark.parametrize("smoothing", [0.0, 0.05])
def test_all_weights_one_equals_torch_cross_entropy(smoothing: float) -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 2, generator=g)
    target = torch.randint(0, 2, (16,), generator=g)
    kind = torch.randint(0, 5, (16,), generator=g)
    loss = ClassificationLoss(LossParams(label_smoothing=smoothing, hard_negative_weight=1.0), None)
    want = F.cross_entropy(logits, target, label_smoothing=smoothing)
    torch.testing.assert_close(loss(logits, target, kind), want)
    torch.testing.assert_close(loss(logits, target), want)


def test_hard_negative_weight_by_hand() -> None:
    z = [[0.2, 1.0], [1.0, -0.5], [0.1, 0.4]]
    y = [1, 0, 0]
    kind = [POS, NEG, HARD]
    loss = ClassificationLoss(LossParams(label_smoothing=0.0, hard_negative_weight=3.0), None)
    got = loss(torch.tensor(z), torch.tensor(y), torch.tensor(kind, dtype=torch.int8))
    l0, l1, l2 = (ce(zi, yi) for zi, yi in zip(z, y, strict=True))
    assert got.item() == pytest.approx((l0 + l1 + 3 * l2) / (1 + 1 + 3), rel=1e-6)
    plain = ClassificationLoss(LossParams(label_smoothing=0.0, hard_negative_weight=1.0), None)(
        torch.tensor(z), torch.tensor(y), torch.tensor(kind))
    assert plain.item() == pytest.approx((l0 + l1 + l2) / 3, rel=1e-6)


def test_label_smoothing_and_class_weights_by_hand() -> None:
    z = [[0.2, 1.0], [1.0, -0.5], [0.1, 0.4]]
    y = [1, 0, 0]
    kind = [POS, HARD, NEG]
    w = [0.75, 1.5]  # class weights
    eps, hn = 0.1, 2.0
    loss = ClassificationLoss(LossParams(label_smoothing=eps, class_weights="balanced", hard_negative_weight=hn),
                              torch.tensor(w))
    got = loss(torch.tensor(z), torch.tensor(y), torch.tensor(kind))
    wi = [w[1], w[0] * hn, w[0]]
    li = [ce(zi, yi, eps) for zi, yi in zip(z, y, strict=True)]
    assert got.item() == pytest.approx(sum(a * b for a, b in zip(wi, li, strict=True)) / sum(wi), rel=1e-6)


def test_class_weights_without_smoothing_equal_torch_weighted_cross_entropy() -> None:
    g = torch.Generator().manual_seed(1)
    logits, target = torch.randn(12, 2, generator=g), torch.randint(0, 2, (12,), generator=g)
    w = torch.tensor([0.6, 3.0])
    got = ClassificationLoss(LossParams(label_smoothing=0.0, class_weights="balanced"), w)(logits, target)
    torch.testing.assert_close(got, F.cross_entropy(logits, target, weight=w))


def test_focal_with_class_and_hard_negative_weights_by_hand() -> None:
    z = [[0.2, 1.0], [1.0, -0.5], [0.1, 0.4]]
    y = [1, 0, 0]
    kind = [POS, NEG, HARD]
    w, hn, alpha, gamma = [0.5, 2.0], 4.0, 0.25, 2.0
    p = LossParams(type="focal", focal_alpha=alpha, focal_gamma=gamma, class_weights="balanced",
                   hard_negative_weight=hn, label_smoothing=0.3)  # smoothing does not apply to focal
    got = ClassificationLoss(p, torch.tensor(w))(torch.tensor(z), torch.tensor(y), torch.tensor(kind))
    li = []
    for zi, yi in zip(z, y, strict=True):
        p_t = softmax2(*zi)[yi]
        li.append(-(alpha if yi == 1 else 1 - alpha) * (1 - p_t) ** gamma * math.log(p_t))
    wi = [w[1], w[0], w[0] * hn]
    assert got.item() == pytest.approx(sum(a * b for a, b in zip(wi, li, strict=True)) / sum(wi), rel=1e-5)


def test_classification_loss_rejects_inconsistent_weights() -> None:
    with pytest.raises(ValueError, match=r"train\.loss\.class_weights"):
        ClassificationLoss(LossParams(class_weights="balanced"), None)
    with pytest.raises(ValueError, match=r"train\.loss\.class_weights"):
        ClassificationLoss(LossParams(), torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="logits"):
        ClassificationLoss(LossParams(), None)(torch.zeros(3, 3), torch.zeros(3, dtype=torch.long))


def _unit(v: tuple[float, float]) -> tuple[float, float]:
    n = math.hypot(*v)
    return v[0] / n, v[1] / n


def _dist(a: tuple[float, float], b: tuple[float, float]) -> float:
    return math.hypot(a[0] - b[0], a[1] - b[1])


def test_triplet_batch_hard_by_hand() -> None:
    emb = [(1.0, 0.0), (0.0, 2.0), (3.0, 4.0), (-1.0, 0.0), (0.8, -0.6)]
    target = [1, 1, 1, 0, 0]
    margin = 0.5
    u = [_unit(v) for v in emb]
    pos, neg = [0, 1, 2], [3, 4]
    # anchor 0 = (1, 0): positives at sqrt(2) and sqrt(0.8), negatives at 2 and sqrt(0.4)
    assert max(_dist(u[0], u[j]) for j in (1, 2)) == pytest.approx(math.sqrt(2))
    assert min(_dist(u[0], u[k]) for k in neg) == pytest.approx(math.sqrt(0.4))
    want = sum(
        max(0.0, max(_dist(u[a], u[j]) for j in pos if j != a) - min(_dist(u[a], u[k]) for k in neg) + margin)
        for a in pos
    ) / len(pos)
    x = torch.tensor(emb, requires_grad=True)
    got = triplet_loss(x, torch.tensor(target), margin, torch.Generator().manual_seed(0))
    assert got.item() == pytest.approx(want, rel=1e-5)
    got.backward()
    assert torch.all(torch.isfinite(x.grad)) and x.grad.abs().sum() > 0


def test_triplet_zero_when_margin_satisfied() -> None:
    emb = torch.tensor([[1.0, 0.01], [1.0, -0.02], [2.0, 0.0], [-1.0, 0.0], [-1.0, 0.1]])
    assert triplet_loss(emb, torch.tensor([1, 1, 1, 0, 0]), 1.0).item() == 0.0


@pytest.mark.parametrize("target", [[1, 0, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]])
def test_triplet_degenerate_batch_is_zero_with_grad(target: list[int]) -> None:
    x = torch.randn(4, 3, requires_grad=True)
    loss = triplet_loss(x, torch.tensor(target), 1.0, torch.Generator())
    assert loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.all(x.grad == 0)


def test_triplet_random_mining_with_a_single_choice_equals_batch_hard() -> None:
    emb, target = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, -0.8]]), torch.tensor([1, 1, 0])
    hard = triplet_loss(emb, target, 1.0)
    rand = triplet_loss(emb, target, 1.0, torch.Generator().manual_seed(3), mining="random")
    assert rand.item() == pytest.approx(hard.item(), rel=1e-6)
    with pytest.raises(ValueError, match="mining"):
        triplet_loss(emb, target, 1.0, mining="semi")  # type: ignore[arg-type]


def test_distillation_zero_for_equal_logits() -> None:
    z = torch.randn(5, 2)
    assert distillation_loss(z, z.clone(), 2.0).item() == pytest.approx(0.0, abs=1e-7)


def test_distillation_by_hand() -> None:
    s, t, T = [[1.0, 0.0], [0.0, 2.0]], [[0.0, 1.0], [3.0, 0.0]], 2.0
    kl = 0.0
    for si, ti in zip(s, t, strict=True):
        ps, pt = softmax2(si[0] / T, si[1] / T), softmax2(ti[0] / T, ti[1] / T)
        kl += sum(pt[c] * (math.log(pt[c]) - math.log(ps[c])) for c in range(2))
    want = T * T * kl / 2
    student = torch.tensor(s, requires_grad=True)
    teacher = torch.tensor(t, requires_grad=True)
    got = distillation_loss(student, teacher, T)
    assert got.item() == pytest.approx(want, rel=1e-5)
    got.backward()
    assert student.grad is not None and teacher.grad is None  # no gradient into the teacher


def test_combine() -> None:
    base, kd = torch.tensor(2.0), torch.tensor(6.0)
    assert combine(base, kd, 0.25).item() == pytest.approx(0.25 * 6 + 0.75 * 2)
    assert combine(base, kd, 0.0).item() == 2.0
    with pytest.raises(ValueError, match=r"train\.distill\.alpha"):
        combine(base, kd, 1.5)
