"""Which training windows make up each batch.

Plain shuffling: one permutation of all windows per epoch, cut into ``n // batch_size`` batches.
Balanced batches (SPEC 5): every batch holds ``n_k = floor(B * r_k / sum(r))`` windows of each group
k in (positive, negative, hard_negative) for the ratio ``r`` (background and partial-phrase windows count as
negative). Each group is drawn without replacement from its own shuffled pool, reshuffled whenever it runs
out, so small groups (positives) repeat within an epoch while large ones are sub-sampled. A group that has
no windows gives its share to ``negative`` (with a warning); a positive group without windows is an error.
Everything is drawn from the generator passed in, at the start of each epoch, so an epoch's batches depend
only on the generator's state then (which makes resuming exact).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from wakeword.featureset import KIND_CODES

log = logging.getLogger(__name__)

GROUPS = ("positive", "negative", "hard_negative")


def group_of(kind: np.ndarray) -> np.ndarray:
    """0 positive, 1 negative (negative, background, partial), 2 hard_negative, per window."""
    k = np.asarray(kind)
    out = np.ones(k.shape, dtype=np.int64)
    out[k == KIND_CODES["positive"]] = 0
    out[k == KIND_CODES["hard_negative"]] = 2
    return out


def batch_counts(batch_size: int, ratio: tuple[float, float, float], available: tuple[int, int, int]) -> list[int]:
    """Windows per group in each balanced batch; an empty group's share moves to negative."""
    total = float(sum(ratio))
    if total <= 0:
        raise ValueError(f"train.batch_ratio must have a positive sum, got {list(ratio)}")
    counts = [int(np.floor(batch_size * r / total)) for r in ratio]
    if available[0] == 0 and counts[0] > 0:
        raise ValueError("train.balanced_batches: the training set has no positive windows")
    for g in (2, 1):
        if counts[g] > 0 and available[g] == 0:
            target = 1 if g == 2 and available[1] > 0 else 0
            log.warning("balanced batches: no %s windows in the training set; their share (%d per batch) goes to %s",
                        GROUPS[g], counts[g], GROUPS[target])
            counts[target] += counts[g]
            counts[g] = 0
    if sum(counts) == 0:
        raise ValueError(f"train.batch_ratio {list(ratio)} with batch_size {batch_size} gives empty batches")
    return counts


def epoch_batches(n: int, batch_size: int, steps: int, gen: torch.Generator, kind: np.ndarray | None = None,
                  ratio: tuple[float, float, float] | None = None) -> list[torch.Tensor]:
    """Index tensors of the ``steps`` batches of one epoch (balanced when ``ratio`` is given)."""
    if ratio is None:
        perm = torch.randperm(n, generator=gen)
        return [perm[b * batch_size:(b + 1) * batch_size] for b in range(steps) if b * batch_size < n]
    if kind is None or len(kind) != n:
        raise ValueError("balanced batches need the kind of every training window")
    groups = group_of(kind)
    pools = [np.flatnonzero(groups == g) for g in range(3)]
    counts = batch_counts(batch_size, ratio, (len(pools[0]), len(pools[1]), len(pools[2])))
    parts: list[torch.Tensor] = []
    for g in range(3):
        need = counts[g] * steps
        if need == 0:
            parts.append(torch.zeros((steps, 0), dtype=torch.long))
            continue
        pool = torch.from_numpy(pools[g])
        chunks, have = [], 0
        while have < need:
            chunks.append(pool[torch.randperm(len(pool), generator=gen)])
            have += len(pool)
        parts.append(torch.cat(chunks)[:need].reshape(steps, counts[g]))
    batches = torch.cat(parts, dim=1)
    shuffle = torch.argsort(torch.rand(batches.shape, generator=gen), dim=1)  # mix groups inside each batch
    return list(torch.gather(batches, 1, shuffle))
