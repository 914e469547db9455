"""Training losses (SPEC 5): cross entropy with label smoothing or focal loss, class and hard-negative
weights, a triplet loss on embeddings, knowledge distillation from a teacher's logits, and the auxiliary word
loss (one binary target per word of the phrase, -1 = unknown).

Conventions: logits are ``(B, 2)`` with index 1 = the wake phrase; ``target`` is ``(B,)`` with values 0/1;
``kind`` is ``(B,)`` with the window-kind codes of :data:`wakeword.featureset.KIND_CODES`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wakeword.featureset import KIND_CODES
from wakeword.params import LossParams

HARD_NEGATIVE = KIND_CODES["hard_negative"]


def balanced_class_weights(labels: np.ndarray | torch.Tensor, n_classes: int = 2) -> torch.Tensor:
    """Inverse class frequency, as sklearn's ``class_weight="balanced"``: ``w_c = n / (n_classes * n_c)``.

    ``labels`` are the training targets (ints in ``[0, n_classes)``); returns a float32 tensor of
    ``n_classes`` weights. A balanced set gets all ones. A class without windows has no finite weight:
    ValueError naming ``train.loss.class_weights``.
    """
    y = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels).reshape(-1)
    y = y.to(torch.long).cpu()
    if y.numel() == 0:
        raise ValueError("train.loss.class_weights: balanced weights need training labels, got none")
    if int(y.min()) < 0 or int(y.max()) >= n_classes:
        raise ValueError(f"train.loss.class_weights: labels must lie in [0, {n_classes}), "
                         f"got {int(y.min())}..{int(y.max())}")
    counts = torch.bincount(y, minlength=n_classes).to(torch.float64)
    missing = [c for c in range(n_classes) if counts[c] == 0]
    if missing:
        raise ValueError(f"train.loss.class_weights: 'balanced' needs every class in the training windows; "
                         f"class {missing} has none (counts {counts.to(torch.long).tolist()})")
    return (y.numel() / (n_classes * counts)).to(torch.float32)


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float, gamma: float,
               reduction: Literal["none", "mean", "sum"] = "none") -> torch.Tensor:
    """Focal loss (Lin et al. 2017) on 2-class logits.

    ``p_t = softmax(logits)[target]``, ``alpha_t = alpha`` for target 1 and ``1 - alpha`` for target 0,
    ``loss = -alpha_t * (1 - p_t)^gamma * log(p_t)``. ``log p_t`` comes from ``log_softmax`` and
    ``1 - p_t = -expm1(log p_t)`` (no cancellation when ``p_t`` is near 1); ``1 - p_t`` is clamped at the
    smallest positive float so that ``gamma < 1`` has a finite gradient at ``p_t = 1``. ``gamma = 0`` and
    ``alpha = 0.5`` give ``0.5 * cross_entropy``.
    """
    if logits.ndim != 2 or logits.shape[1] != 2:
        raise ValueError(f"focal_loss: logits must be (B, 2), got {tuple(logits.shape)}")
    target = target.to(torch.long)
    logp_t = F.log_softmax(logits.float(), dim=1).gather(1, target[:, None]).squeeze(1)
    one_minus_p = (-torch.expm1(logp_t)).clamp_min(torch.finfo(logp_t.dtype).tiny)
    alpha_t = torch.where(target == 1, logp_t.new_tensor(alpha), logp_t.new_tensor(1.0 - alpha))
    loss = -alpha_t * one_minus_p.pow(gamma) * logp_t
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    raise ValueError(f"focal_loss: reduction must be none, mean or sum, got {reduction!r}")


class ClassificationLoss(nn.Module):
    """The main-phase classification loss configured by ``train.loss``.

    Per window ``i``: ``l_i`` = cross entropy with ``label_smoothing`` (type ``cross_entropy``) or
    :func:`focal_loss` (type ``focal``; label smoothing does not apply), and a weight
    ``w_i = class_weight[target_i] * (hard_negative_weight if kind_i is hard_negative else 1)``.
    The batch loss is the weighted mean ``sum_i(w_i * l_i) / sum_i(w_i)``.

    With all weights 1 this is exactly ``F.cross_entropy(logits, target, label_smoothing=...)``; with class
    weights and no smoothing it equals ``F.cross_entropy(..., weight=class_weights)`` (torch also divides
    by the summed target weights). With both, the smoothing term is not class-weighted here (torch weights
    each class's share of it): the whole per-window loss is scaled by the window's weight.
    Raising ``hard_negative_weight`` thus raises hard negatives' share of the batch loss, not its scale.
    """

    class_weights: torch.Tensor | None

    def __init__(self, p: LossParams, class_weights: torch.Tensor | None) -> None:
        super().__init__()
        if p.class_weights == "balanced" and class_weights is None:
            raise ValueError("train.loss.class_weights is 'balanced' but no class weights were given "
                             "(compute them with balanced_class_weights(train labels))")
        if p.class_weights == "none" and class_weights is not None:
            raise ValueError("class weights were given but train.loss.class_weights is 'none'")
        if class_weights is not None:
            class_weights = torch.as_tensor(class_weights, dtype=torch.float32).reshape(-1)
            if class_weights.numel() != 2 or not bool(torch.all(class_weights > 0)):
                raise ValueError(f"train.loss.class_weights: need 2 positive weights, got {class_weights.tolist()}")
        self.p = p
        self.register_buffer("class_weights", class_weights)

    def per_sample(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Unweighted per-window loss ``l_i`` (B,), float32."""
        if self.p.type == "focal":
            return focal_loss(logits, target, self.p.focal_alpha, self.p.focal_gamma)
        return F.cross_entropy(logits.float(), target.to(torch.long), reduction="none",
                               label_smoothing=self.p.label_smoothing)

    def weights(self, target: torch.Tensor, kind: torch.Tensor | None) -> torch.Tensor:
        """Per-window weights ``w_i`` (B,), float32."""
        target = target.to(torch.long)
        if self.class_weights is not None:
            w = self.class_weights.to(target.device)[target]
        else:
            w = torch.ones(target.shape, dtype=torch.float32, device=target.device)
        if kind is not None and self.p.hard_negative_weight != 1.0:
            hard = kind.to(target.device) == HARD_NEGATIVE
            w = torch.where(hard, w * self.p.hard_negative_weight, w)
        return w

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                kind: torch.Tensor | None = None) -> torch.Tensor:
        """Scalar weighted-mean loss of a batch: logits (B, 2), target (B,), kind (B,) window-kind codes
        (None: no hard-negative weighting, e.g. for clips without kinds)."""
        if logits.ndim != 2 or logits.shape[1] != 2 or target.shape != logits.shape[:1]:
            raise ValueError(f"ClassificationLoss: need logits (B, 2) and target (B,), "
                             f"got {tuple(logits.shape)} and {tuple(target.shape)}")
        if kind is not None and kind.shape != target.shape:
            raise ValueError(f"ClassificationLoss: kind {tuple(kind.shape)} does not match target {tuple(target.shape)}")
        losses = self.per_sample(logits, target)
        w = self.weights(target, kind)
        return (w * losses).sum() / w.sum()


def triplet_loss(embeddings: torch.Tensor, target: torch.Tensor, margin: float,
                 generator: torch.Generator | None = None,
                 mining: Literal["batch_hard", "random"] = "batch_hard") -> torch.Tensor:
    """Triplet margin loss on L2-normalised embeddings (SPEC 5, ``train.triplet``).

    Anchors are the wake-phrase windows (target 1); the positive of an anchor is another target-1 window,
    its negative a target-0 window. With ``e = embeddings / ||embeddings||`` and Euclidean distance
    ``d(i, j) = ||e_i - e_j||`` (in [0, 2], so ``margin`` is on that scale), for every anchor ``a``:

    - ``batch_hard`` (default; Hermans et al. 2017): ``p = argmax_{j != a, target 1} d(a, j)`` (hardest
      positive), ``n = argmin_{target 0} d(a, n)`` (hardest negative);
    - ``random``: ``p`` and ``n`` drawn uniformly with ``generator`` (the only use of ``generator``).

    ``loss = mean_a max(0, d(a, p) - d(a, n) + margin)``. A batch with fewer than 2 wake-phrase windows or
    no other window has no triplet: the result is 0, still attached to the graph (``embeddings.sum() * 0``)
    so that ``backward`` works.
    """
    if embeddings.ndim != 2 or target.shape != embeddings.shape[:1]:
        raise ValueError(f"triplet_loss: need embeddings (B, D) and target (B,), "
                         f"got {tuple(embeddings.shape)} and {tuple(target.shape)}")
    pos = target.to(embeddings.device) == 1
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos < 2 or n_neg < 1:
        return embeddings.sum() * 0.0
    e = F.normalize(embeddings.float(), dim=1)
    # squared distances from the Gram matrix (unit vectors); the clamp keeps sqrt's gradient finite at 0
    d = (2.0 - 2.0 * e @ e.T).clamp_min(1e-12).sqrt()
    d_ap_all = d[pos][:, pos]  # (P, P)
    d_an_all = d[pos][:, ~pos]  # (P, N)
    if mining == "batch_hard":
        not_self = ~torch.eye(n_pos, dtype=torch.bool, device=d.device)
        d_ap = d_ap_all.masked_fill(~not_self, float("-inf")).amax(dim=1)
        d_an = d_an_all.amin(dim=1)
    elif mining == "random":
        # a random other positive: offset 1..P-1 from the anchor's own index, mod P
        gen_device = generator.device if generator is not None else torch.device("cpu")
        offs = torch.randint(1, n_pos, (n_pos,), generator=generator, device=gen_device).to(d.device)
        j = (torch.arange(n_pos, device=d.device) + offs) % n_pos
        k = torch.randint(0, n_neg, (n_pos,), generator=generator, device=gen_device).to(d.device)
        rows = torch.arange(n_pos, device=d.device)
        d_ap, d_an = d_ap_all[rows, j], d_an_all[rows, k]
    else:
        raise ValueError(f"triplet_loss: mining must be batch_hard or random, got {mining!r}")
    return F.relu(d_ap - d_an + margin).mean()


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                      temperature: float) -> torch.Tensor:
    """Hinton et al. 2015 knowledge distillation: ``T^2 * KL(softmax(t / T) || softmax(s / T))``, summed over
    classes and averaged over the batch (``batchmean``). The ``T^2`` keeps the gradient scale independent of
    ``T``. The teacher logits are detached (no gradient into the teacher)."""
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"distillation_loss: student {tuple(student_logits.shape)} and teacher "
                         f"{tuple(teacher_logits.shape)} logits differ in shape")
    if temperature <= 0:
        raise ValueError(f"train.distill.temperature must be > 0, got {temperature}")
    t = temperature
    log_s = F.log_softmax(student_logits.float() / t, dim=1)
    log_t = F.log_softmax(teacher_logits.detach().float() / t, dim=1)
    return t * t * F.kl_div(log_s, log_t, reduction="batchmean", log_target=True)


def combine(base_loss: torch.Tensor, kd_loss: torch.Tensor, alpha: float) -> torch.Tensor:
    """Distillation mix (``train.distill.alpha``): ``alpha * kd_loss + (1 - alpha) * base_loss``;
    ``alpha = 0`` is plain training, ``alpha = 1`` learns from the teacher only."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"train.distill.alpha must lie in [0, 1], got {alpha}")
    return alpha * kd_loss + (1.0 - alpha) * base_loss


def word_loss(word_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross entropy of word-head logits ``(B, n_words)`` against targets ``(B, n_words)`` of 0, 1 or
    -1 (unknown: no loss), averaged over the known entries; 0 (with a gradient path) when none is known."""
    known = targets >= 0
    if not bool(known.any()):
        return word_logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(word_logits[known], targets[known].to(word_logits.dtype))
