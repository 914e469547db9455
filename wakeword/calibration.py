"""Calibration (SPEC 4.6): temperature scaling of validation logits and the operating threshold for a
target false-alarm rate (SPEC 4.4). Both results travel with the exported model.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from wakeword.metrics import select_operating_point

__all__ = [
    "MAX_ROUNDS",
    "MIN_TEMPERATURE",
    "choose_threshold",
    "fit_temperature",
    "nll_at_temperature",
    "threshold_grid",
]

log = logging.getLogger(__name__)

#: Lower clamp of the fitted temperature (SPEC 4.6).
MIN_TEMPERATURE = 0.01
#: Upper bound on LBFGS calls (each of ``iters`` iterations) in :func:`fit_temperature`.
MAX_ROUNDS = 20
_GRAD_TOL = 1e-7


def _check_logits(logits: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"logits must have shape (N, C) with C >= 2, got {z.shape}")
    if z.shape[0] == 0:
        raise ValueError("cannot fit a temperature on zero examples")
    if not np.isfinite(z).all():
        raise ValueError(f"logits contain {int((~np.isfinite(z)).sum())} NaN/inf value(s)")
    if y.ndim != 1 or y.shape[0] != z.shape[0]:
        raise ValueError(f"labels must be 1-D with {z.shape[0]} entries, got shape {y.shape}")
    if y.dtype == bool:
        y = y.astype(np.int64)
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= z.shape[1]:
        raise ValueError(f"labels must be integer class indices in [0, {z.shape[1]})")
    return z, y.astype(np.int64)


def nll_at_temperature(logits: Any, labels: Any, temperature: float) -> float:
    """Mean negative log-likelihood of ``softmax(logits / T)`` (the objective :func:`fit_temperature` minimises)."""
    z, y = _check_logits(logits, labels)
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be > 0, got {temperature}")
    with torch.no_grad():
        return float(F.cross_entropy(torch.from_numpy(z) / temperature, torch.from_numpy(y)))


def fit_temperature(logits: Any, labels: Any, iters: int = 50, lr: float = 0.01) -> float:
    """T* = argmin_T NLL(softmax(z / T)) on validation logits ``(N, C)`` (SPEC 4.6), clamped to >= 0.01.

    Optimises ``u = log T`` (starting at T = 1) with torch LBFGS at the spec's ``lr`` (0.01) and ``iters``
    (50) iterations per LBFGS call, float64 throughout. Working in log T keeps T positive and makes the
    problem equally well scaled for T < 1 and T > 1.

    Why more than the plain reference recipe: with a fixed step of lr = 0.01 LBFGS moves only 1% of each
    quasi-Newton step, so one call of 50 iterations ends well short of the optimum (from T = 1 it gets about
    40% of the way). We therefore (a) use the strong-Wolfe line search, which starts from the lr step and
    extends it (each iteration then removes at least ~10% of the gradient), and (b) repeat the LBFGS call,
    keeping its curvature history, until ``|dNLL/dlog T| < 1e-7`` or :data:`MAX_ROUNDS` calls. Tests check
    the result against a bounded scalar minimiser and recover a known temperature from synthetic data.
    Perfectly separated logits drive T towards 0; the search stops once T < 0.01 and the clamp gives 0.01.
    If the optimiser ends on a non-finite value or on a worse NLL than T = 1, T = 1 is returned (logged).
    """
    z_np, y_np = _check_logits(logits, labels)
    if isinstance(iters, bool) or not isinstance(iters, (int, np.integer)) or iters < 1:
        raise ValueError(f"iters must be a positive integer, got {iters!r}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be > 0, got {lr}")
    z = torch.from_numpy(z_np)
    y = torch.from_numpy(y_np)
    if z_np.shape[1] == 2:
        # Two classes: NLL = mean softplus(-s * (z1 - z0) / T) with s = +-1, the same objective as the
        # softmax cross entropy on half the data and a fraction of the work per evaluation.
        signed = torch.from_numpy((z_np[:, 1] - z_np[:, 0]) * np.where(y_np == 1, 1.0, -1.0))

        def nll(temperature: torch.Tensor) -> torch.Tensor:
            return F.softplus(-signed / temperature).mean()
    else:

        def nll(temperature: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(z / temperature, y)

    log_t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [log_t],
        lr=float(lr),
        max_iter=int(iters),
        line_search_fn="strong_wolfe",
        tolerance_grad=_GRAD_TOL,
        tolerance_change=1e-12,
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nll(torch.exp(log_t))
        loss.backward()
        return loss

    for _ in range(MAX_ROUNDS):
        opt.step(closure)
        closure()
        grad = log_t.grad
        if grad is None or not torch.isfinite(log_t).all() or abs(float(grad.item())) < _GRAD_TOL:
            break
        if float(log_t.item()) < math.log(MIN_TEMPERATURE):  # heading for T -> 0 (separable data): clamp
            break
    with torch.no_grad():
        t = float(torch.exp(log_t.detach()).item())
        if not math.isfinite(t):
            log.warning("temperature fit diverged (T=%s); using T=1", t)
            return 1.0
        t = max(MIN_TEMPERATURE, t)
        nll_fit = float(nll(torch.tensor(t, dtype=torch.float64)))
        nll_one = float(nll(torch.tensor(1.0, dtype=torch.float64)))
    if not math.isfinite(nll_fit) or nll_fit > nll_one:
        log.warning(
            "temperature fit (T=%.4g, NLL %.6g) is worse than T=1 (NLL %.6g); using T=1", t, nll_fit, nll_one
        )
        return 1.0
    if t > 100.0:
        log.warning(
            "fitted temperature T=%.4g is very large: are the logits anti-correlated with the labels?", t
        )
    return t


def threshold_grid(step: float) -> np.ndarray:
    """All multiples of ``step`` strictly inside (0, 1): ``step, 2*step, ...`` (0.01 -> 0.01 .. 0.99).

    Values are rounded to 10 decimals so that 0.07 * 3 is 0.21, not 0.21000000000000002, and a threshold read
    back from JSON equals the one evaluated.
    """
    s = float(step)
    if not (math.isfinite(s) and 0.0 < s <= 0.5):
        raise ValueError(f"threshold step must lie in (0, 0.5], got {step}")
    n = math.floor(1.0 / s + 1e-9)
    grid = np.round(np.arange(1, n + 1, dtype=np.float64) * s, 10)
    return grid[grid < 1.0 - 1e-9]


def choose_threshold(curve: Mapping[str, Any], target_fah: float) -> dict[str, float | bool]:
    """The operating threshold for ``target_fah`` on an operating curve (``wakeword.metrics.operating_curve``).

    Among grid thresholds with FAH <= target: the highest recall; ties go to the lower FAH, then the higher
    threshold (fewer false alarms for the same recall). If no threshold meets the target, the one with the
    lowest FAH (highest threshold on ties) is returned with ``met = False``; the caller logs a warning, the
    pipeline goes on. Returns ``{threshold, fah, recall, target_fah, met}``.
    """
    idx, met = select_operating_point(curve, target_fah)
    return {
        "threshold": float(np.asarray(curve["threshold"], dtype=np.float64)[idx]),
        "fah": float(np.asarray(curve["fah"], dtype=np.float64)[idx]),
        "recall": float(np.asarray(curve["recall"], dtype=np.float64)[idx]),
        "target_fah": float(target_fah),
        "met": bool(met),
    }
