"""Learning-rate range test (Smith 2017; SPEC 5: 1e-6..1e-2, 100 steps, smoothed, steepest descent).

The learning rate grows exponentially from ``start`` to ``end`` over ``steps`` optimizer steps on training
batches while the loss is recorded. The curve is smoothed with an exponential moving average (beta 0.98,
bias-corrected); the suggestion is the rate where the smoothed loss falls fastest per unit of log lr,
``argmin d(smoothed)/d(log lr)``, looked for after the first 10% of the points and before the loss blows up
(a smoothed loss over 4x its minimum stops the test). The test works on copies: the caller's model and
optimizer are untouched.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

StepLoss = Callable[[nn.Module, int], torch.Tensor]


@dataclass
class LRFinderResult:
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggestion: float

    def rows(self) -> list[dict[str, float]]:
        return [{"lr": a, "loss": b, "smoothed_loss": c} for a, b, c in zip(self.lrs, self.losses, self.smoothed)]


def suggest_lr(lrs: list[float], smoothed: list[float]) -> float:
    """Steepest descent of the smoothed loss against log lr, skipping the first 10% of the points."""
    if len(lrs) < 5:
        raise ValueError(f"the LR range test stopped after {len(lrs)} steps; too few to suggest a rate")
    x, y = np.log(np.asarray(lrs)), np.asarray(smoothed)
    grad = np.gradient(y, x)
    skip = max(1, len(lrs) // 10)
    return float(lrs[skip + int(np.argmin(grad[skip:]))])


def lr_range_test(model: nn.Module, make_optimizer: Callable[[list[nn.Parameter]], torch.optim.Optimizer],
                  step_loss: StepLoss, start: float = 1e-6, end: float = 1e-2, steps: int = 100,
                  beta: float = 0.98, blowup: float = 4.0) -> LRFinderResult:
    """Run the test on a copy of ``model``; ``step_loss(model, i)`` returns the loss of the i-th batch."""
    if not (0 < start < end) or steps < 5:
        raise ValueError(f"LR range test needs 0 < start < end and >= 5 steps, got {start}, {end}, {steps}")
    m = copy.deepcopy(model).train()
    opt = make_optimizer(list(m.parameters()))
    factor = (end / start) ** (1.0 / (steps - 1))
    lrs: list[float] = []
    losses: list[float] = []
    smoothed: list[float] = []
    avg, best = 0.0, math.inf
    for i in range(steps):
        lr = start * factor**i
        for g in opt.param_groups:
            g["lr"] = lr
        loss = step_loss(m, i)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            break
        avg = beta * avg + (1 - beta) * value
        s = avg / (1 - beta ** (i + 1))
        lrs.append(lr)
        losses.append(value)
        smoothed.append(s)
        best = min(best, s)
        if s > blowup * best and i > steps // 10:
            break
    return LRFinderResult(lrs, losses, smoothed, suggest_lr(lrs, smoothed))
