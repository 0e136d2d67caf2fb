"""Calibration: the ECE and reliability table against a hand computation and scikit-learn, and
temperature scaling on predictions whose miscalibration is known."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import calibration_curve

from pipeline.calibration import apply_temperature, expected_calibration_error, fit_temperature


def test_ece_equals_a_hand_computation():
    # top-class confidences 0.9, 0.9, 0.6, 0.6 (bins (0.8, 0.9] and (0.5, 0.6] of 10); right: yes, no, yes, yes
    proba = np.array([[0.9, 0.1], [0.1, 0.9], [0.6, 0.4], [0.4, 0.6]])
    y = np.array([0, 0, 0, 1])
    ece, table = expected_calibration_error(proba, y, n_bins=10)
    # bin 0.9: accuracy 1/2, confidence 0.9; bin 0.6: accuracy 2/2, confidence 0.6; each holds half the rows
    assert ece == pytest.approx(0.5 * abs(0.5 - 0.9) + 0.5 * abs(1.0 - 0.6))
    assert [(row["confidence"], row["accuracy"], row["count"]) for row in table] == [(0.6, 1.0, 2), (0.9, 0.5, 2)]


def test_reliability_table_matches_sklearn_calibration_curve():
    rng = np.random.default_rng(0)
    positive = rng.uniform(size=500)
    proba = np.column_stack([1 - positive, positive])
    y = (rng.uniform(size=500) < positive ** 2).astype(int)  # overconfident towards class 1
    # on binary problems with the top class always class 1 the reliability table is sklearn's curve
    ones = proba[:, 1] >= 0.5
    ece, table = expected_calibration_error(proba[ones], y[ones], n_bins=10)
    accuracy, confidence = calibration_curve(y[ones], proba[ones, 1], n_bins=10, strategy="uniform")
    assert [row["accuracy"] for row in table] == pytest.approx(np.round(accuracy, 4), abs=1e-4)
    assert [row["confidence"] for row in table] == pytest.approx(np.round(confidence, 4), abs=1e-4)
    counts = np.array([row["count"] for row in table])
    assert ece == pytest.approx(float(np.sum(counts / counts.sum() * np.abs(accuracy - confidence))), abs=1e-9)


def test_a_perfectly_calibrated_model_has_zero_ece():
    proba = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert expected_calibration_error(proba, np.array([0, 1, 0]))[0] == 0.0


def test_temperature_one_is_the_identity_and_scaling_keeps_the_ranking():
    proba = np.array([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4]])
    assert apply_temperature(proba, 1.0) is proba
    softer = apply_temperature(proba, 2.0)
    assert np.allclose(softer.sum(axis=1), 1) and (softer.argmax(axis=1) == proba.argmax(axis=1)).all()
    assert softer.max() < proba.max()


def test_fitted_temperature_softens_overconfident_and_sharpens_underconfident_predictions():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, size=400)
    right = rng.uniform(size=400) < 0.7  # the predicted class is right 70% of the time
    predicted = np.where(right, y, 1 - y)
    for confidence, softer in ((0.99, True), (0.55, False)):
        proba = np.where(predicted[:, None] == np.arange(2), confidence, 1 - confidence)
        temperature = fit_temperature(proba, y)
        assert (temperature > 1) == softer
        assert expected_calibration_error(apply_temperature(proba, temperature), y)[0] < \
            expected_calibration_error(proba, y)[0]
