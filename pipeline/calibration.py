"""Temperature scaling of class probabilities, fitted on out-of-fold predictions."""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar

_EPS = 1e-12


def apply_temperature(proba: np.ndarray, temperature: float) -> np.ndarray:
    """Soften (T > 1) or sharpen (T < 1) probabilities: p_i^(1/T), renormalised."""
    if temperature == 1.0:
        return proba
    logits = np.log(np.clip(proba, _EPS, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    scaled = np.exp(logits)
    return scaled / scaled.sum(axis=1, keepdims=True)


def fit_temperature(proba: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising negative log-likelihood of integer labels `y`."""
    def nll(log_t: float) -> float:
        p = apply_temperature(proba, float(np.exp(log_t)))
        return -np.mean(np.log(np.clip(p[np.arange(len(y)), y], _EPS, 1.0)))

    result = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))


def expected_calibration_error(proba: np.ndarray, y: np.ndarray, n_bins: int = 10) -> tuple[float, list[dict]]:
    """ECE of the top-class confidence, and the reliability table (one row per non-empty bin)."""
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y).astype(float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    ece, table = 0.0, []
    for b in range(n_bins):
        mask = bins == b
        if not mask.any():
            continue
        conf, acc = float(confidence[mask].mean()), float(correct[mask].mean())
        ece += mask.mean() * abs(acc - conf)
        table.append({"bin": b, "confidence": round(conf, 4), "accuracy": round(acc, 4), "count": int(mask.sum())})
    return float(ece), table
