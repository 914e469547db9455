"""Calibration (SPEC 4.6): temperature scaling and the operating threshold for a target FAH."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize_scalar

from wakeword.calibration import choose_threshold, fit_temperature, nll_at_temperature, threshold_grid
from wakeword.metrics import expected_calibration_error


def synthetic(t0: float, n: int = 20_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits z and labels drawn from softmax(z / t0): the true temperature is t0."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, (n, 2))
    p1 = 1.0 / (1.0 + np.exp(-(z[:, 1] - z[:, 0]) / t0))
    return z, (rng.random(n) < p1).astype(np.int64)


@pytest.mark.parametrize("t0", [0.5, 2.0])
def test_fit_temperature_recovers_known_temperature(t0: float) -> None:
    z, y = synthetic(t0, seed=int(t0 * 10))
    t = fit_temperature(z, y)
    assert t == pytest.approx(t0, rel=0.06)
    # And it is the minimiser of the NLL, checked with an independent bounded scalar search in log T.
    margin = (z[:, 1] - z[:, 0]) * np.where(y == 1, 1.0, -1.0)
    ref = minimize_scalar(
        lambda u: float(np.mean(np.logaddexp(0.0, -margin / np.exp(u)))),  # the same NLL, in numpy
        bounds=(-4, 4),
        method="bounded",
        options={"xatol": 1e-7},
    )
    assert nll_at_temperature(z, y, t) == pytest.approx(ref.fun, abs=1e-9)
    assert t == pytest.approx(float(np.exp(ref.x)), rel=1e-3)

    # Scaling makes the probabilities better calibrated than the raw (T = 1) ones.
    def probs(temp: float) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-(z[:, 1] - z[:, 0]) / temp))

    assert expected_calibration_error(probs(t), y) < expected_calibration_error(probs(1.0), y)


def test_fit_temperature_clamps_and_validates() -> None:
    rng = np.random.default_rng(1)
    z = rng.normal(0.0, 3.0, (200, 2))
    separable = (z[:, 1] > z[:, 0]).astype(int)
    assert fit_temperature(z, separable) == pytest.approx(0.01)  # NLL keeps falling as T -> 0: clamp
    assert fit_temperature(np.zeros((10, 2)), np.array([0, 1] * 5)) == 1.0  # flat objective: stays at 1
    with pytest.raises(ValueError, match="shape"):
        fit_temperature(np.zeros(10), np.zeros(10, dtype=int))
    with pytest.raises(ValueError, match="NaN"):
        fit_temperature(np.array([[0.0, np.nan]]), np.array([1]))
    with pytest.raises(ValueError, match="class indices"):
        fit_temperature(np.zeros((2, 2)), np.array([0, 2]))
    with pytest.raises(ValueError, match="zero examples"):
        fit_temperature(np.zeros((0, 2)), np.zeros(0, dtype=int))


def test_threshold_grid() -> None:
    g = threshold_grid(0.01)
    assert len(g) == 99 and g[0] == 0.01 and g[-1] == 0.99
    assert g.tolist() == [round(i / 100, 2) for i in range(1, 100)]  # no float drift: 0.07 * 3 == 0.21
    assert threshold_grid(0.07).tolist() == [round(0.07 * i, 2) for i in range(1, 15)]
    assert threshold_grid(0.05).tolist() == [round(0.05 * i, 2) for i in range(1, 20)]
    assert threshold_grid(0.5).tolist() == [0.5]
    for bad in (0.0, -0.1, 0.6, float("nan")):
        with pytest.raises(ValueError, match="step"):
            threshold_grid(bad)


def curve(thresholds: list[float], fah: list[float], recall: list[float]) -> dict[str, np.ndarray]:
    return {"threshold": np.array(thresholds), "fah": np.array(fah), "recall": np.array(recall)}


def test_choose_threshold_highest_recall_within_target() -> None:
    c = curve([0.3, 0.5, 0.7, 0.9], [3.0, 1.0, 0.5, 0.0], [0.9, 0.8, 0.6, 0.2])
    assert choose_threshold(c, 1.0) == {
        "threshold": 0.5,
        "fah": 1.0,
        "recall": 0.8,
        "target_fah": 1.0,
        "met": True,
    }
    assert choose_threshold(c, 0.5)["threshold"] == 0.7
    assert choose_threshold(c, 0.1)["threshold"] == 0.9
    assert choose_threshold(c, 2.0)["threshold"] == 0.5


def test_choose_threshold_ties() -> None:
    # Same recall: the lower FAH wins (0.6, 0.7 over 0.4); equal FAH too: the higher threshold (0.7).
    c = curve([0.4, 0.6, 0.7], [0.8, 0.2, 0.2], [0.7, 0.7, 0.7])
    assert choose_threshold(c, 1.0)["threshold"] == 0.7
    # FAH not monotone in the threshold (hysteresis/lockout can do that): still the best recall under target.
    c = curve([0.2, 0.3, 0.4, 0.5], [0.9, 1.5, 0.4, 0.1], [0.95, 0.9, 0.8, 0.5])
    assert choose_threshold(c, 1.0)["threshold"] == 0.2


def test_choose_threshold_unreachable_target_does_not_crash() -> None:
    c = curve([0.3, 0.5, 0.7, 0.8], [3.0, 2.0, 1.5, 1.5], [0.9, 0.8, 0.6, 0.5])
    r = choose_threshold(c, 1.0)
    assert r == {"threshold": 0.8, "fah": 1.5, "recall": 0.5, "target_fah": 1.0, "met": False}
    with pytest.raises(ValueError, match="target_fah"):
        choose_threshold(c, float("nan"))


def test_fit_temperature_multiclass_path_matches_binary() -> None:
    # A third class that never wins leaves the objective unchanged: the general softmax path must agree
    # with the two-class shortcut.
    z, y = synthetic(1.7, n=4000, seed=3)
    z3 = np.c_[z, np.full(z.shape[0], -60.0)]
    assert fit_temperature(z3, y) == pytest.approx(fit_temperature(z, y), rel=1e-5)
