"""Evaluation that can tell: repeated cross-validation grouped by article, scored on real text only.

No paragraph of a test article is ever in training, so a model cannot score well by
memorising an article's wording. Text the team wrote for training (origin `authored`) is
always in training and never tested: the headline is measured on real (scraped) paragraphs,
(b) by this cross-validation and (a) by `transfer` (train on authored text only, test on all
real text). Macro-F1 is averaged over repeats and given a bootstrap confidence interval
(whole articles resampled with replacement); calibration
is measured on out-of-fold probabilities, with the temperature itself cross-fitted
so the reported calibrated ECE is not measured on the data it was fitted on.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
from sklearn.model_selection import StratifiedGroupKFold

from pipeline.calibration import apply_temperature, expected_calibration_error, fit_temperature

if TYPE_CHECKING:
    from pipeline.models.base import StanceClassifier


@dataclass
class CVResult:
    """Out-of-fold probabilities of the test-eligible paragraphs: `proba[r, i]` for repeat r, paragraph i;
    `fold[r, i]` its test fold; `groups[i]` its article (the bootstrap resamples articles)."""
    proba: np.ndarray
    fold: np.ndarray
    y: np.ndarray
    classes: list[str]
    groups: np.ndarray
    train_sizes: list[int]


def n_folds(y: np.ndarray, groups: np.ndarray, n_splits: int) -> int:
    """Fewer folds than asked when there are fewer groups (articles) than folds."""
    return min(n_splits, len(np.unique(groups)))


def grouped_splits(y: np.ndarray, groups: np.ndarray, n_splits: int, seed: int, testable: np.ndarray):
    """Stratified folds that never split a group. Only `testable` rows form test folds; the others
    (text written for training) are always in training, so every score is measured on real text."""
    test_rows, always_train = np.flatnonzero(testable), np.flatnonzero(~testable)
    folds = StratifiedGroupKFold(n_splits=n_folds(y[test_rows], groups[test_rows], n_splits), shuffle=True,
                                 random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "least populated class has only n members": expected here
        splits = list(folds.split(np.zeros(len(test_rows)), y[test_rows], groups[test_rows]))
    for train, test in splits:
        yield np.concatenate([test_rows[train], always_train]), test_rows[test]


def cross_validate(estimator: StanceClassifier, texts: Sequence[str], y: np.ndarray, groups: np.ndarray,
                   classes: list[str], n_splits: int, n_repeats: int, seed: int,
                   testable: np.ndarray | None = None, on_fold: Callable[[], None] | None = None) -> CVResult:
    """Fit a fresh classifier (an unfitted `clone` of `estimator`) per fold and repeat; collect out-of-fold
    class probabilities of the `testable` rows (default: all rows)."""
    texts = np.asarray(list(texts), dtype=object)
    testable = np.ones(len(y), dtype=bool) if testable is None else np.asarray(testable, dtype=bool)
    proba = np.zeros((n_repeats, len(y), len(classes)))
    fold = np.full((n_repeats, len(y)), -1)
    train_sizes = []
    for repeat in range(n_repeats):
        for k, (train, test) in enumerate(grouped_splits(y, groups, n_splits, seed + repeat, testable)):
            proba[repeat, test] = fit_predict(estimator, texts[train], y[train], texts[test], classes)
            fold[repeat, test] = k
            train_sizes.append(len(train))
            if on_fold:
                on_fold()
    return CVResult(proba=proba[:, testable], fold=fold[:, testable], y=y[testable], classes=classes,
                    groups=np.asarray(groups)[testable], train_sizes=train_sizes)


def fit_predict(estimator: StanceClassifier, train_texts: Sequence[str], train_y: np.ndarray,
                test_texts: Sequence[str], classes: list[str]) -> np.ndarray:
    """Class probabilities for `test_texts` from a fresh classifier fitted on the training rows."""
    proba = np.zeros((len(test_texts), len(classes)))
    if len(set(train_y.tolist())) == 1:  # one class in training: predict it, nothing to learn
        proba[:, train_y[0]] = 1.0
        return proba
    clf = clone(estimator).fit(list(train_texts), [classes[i] for i in train_y])
    return clf.predict_proba(list(test_texts))


def transfer(estimator: StanceClassifier, texts: Sequence[str], y: np.ndarray, groups: np.ndarray,
             classes: list[str], testable: np.ndarray) -> CVResult | None:
    """Train on the non-testable rows only (authored text), test on every testable (real) row; None
    when either side is empty."""
    testable = np.asarray(testable, dtype=bool)
    if testable.all() or not testable.any():
        return None
    texts = np.asarray(list(texts), dtype=object)
    proba = fit_predict(estimator, texts[~testable], y[~testable], texts[testable], classes)
    return CVResult(proba=proba[None], fold=np.zeros((1, int(testable.sum())), dtype=int), y=y[testable],
                    classes=classes, groups=np.asarray(groups)[testable], train_sizes=[int((~testable).sum())])


def learning_curve(estimator: StanceClassifier, texts: Sequence[str], y: np.ndarray, groups: np.ndarray,
                   classes: list[str], testable: np.ndarray, fractions: Sequence[float], n_splits: int,
                   seed: int, on_fold: Callable[[], None] | None = None) -> list[dict]:
    """Headline macro-F1 (one repeat of the real-text CV) with a growing share of the always-in-training
    articles, so one can see whether more labels still pay. Articles are added, never paragraphs."""
    testable = np.asarray(testable, dtype=bool)
    extra_groups = np.unique(np.asarray(groups)[~testable])
    order = np.random.default_rng(seed).permutation(extra_groups)
    points = []
    for fraction in fractions:
        kept = set(order[:int(round(fraction * len(order)))].tolist())
        rows = testable | np.isin(groups, list(kept))
        cv = cross_validate(estimator, np.asarray(list(texts), dtype=object)[rows], y[rows],
                            np.asarray(groups)[rows], classes, n_splits, 1, seed, testable[rows], on_fold)
        points.append({"fraction": fraction, "train_labels": int(round(np.mean(cv.train_sizes))),
                       "macro_f1": round(_macro_f1(cv.y, cv.proba[0].argmax(axis=1), len(classes)), 4)})
    return points


def _macro_f1(y: np.ndarray, pred: np.ndarray, k: int) -> float:
    """Macro-F1 over all k classes (a class never seen nor predicted scores 0), as sklearn's
    f1_score(average="macro", zero_division=0) but fast enough for thousands of bootstrap draws."""
    counts = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    tp = np.diag(counts).astype(float)
    denom = counts.sum(axis=0) + counts.sum(axis=1)
    f1 = np.divide(2 * tp, denom, out=np.zeros(k), where=denom > 0)
    return float(f1.mean())


def bootstrap_macro_f1(cv: CVResult, n_bootstrap: int, confidence: float, seed: int) -> tuple[float, float, float]:
    """Mean macro-F1 over repeats, and its percentile bootstrap interval over articles: paragraphs of
    one article are not independent, so whole articles are resampled with replacement."""
    k = len(cv.classes)
    preds = cv.proba.argmax(axis=2)
    point = float(np.mean([_macro_f1(cv.y, p, k) for p in preds]))
    names, group_index = np.unique(cv.groups, return_inverse=True)
    members = [np.flatnonzero(group_index == g) for g in range(len(names))]
    rng = np.random.default_rng(seed)
    stats = np.empty(n_bootstrap)
    for b in range(n_bootstrap):
        idx = np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])
        stats[b] = np.mean([_macro_f1(cv.y[idx], p[idx], k) for p in preds])
    tail = (1 - confidence) / 2
    return point, float(np.quantile(stats, tail)), float(np.quantile(stats, 1 - tail))


def headline(cv: CVResult, n_bootstrap: int, confidence: float, seed: int) -> dict:
    """Macro-F1 with its article-bootstrap CI and per-class F1 and support: what every metric reports."""
    k = len(cv.classes)
    macro_f1, low, high = bootstrap_macro_f1(cv, n_bootstrap, confidence, seed)
    pooled_y = np.tile(cv.y, cv.proba.shape[0])
    pooled_pred = cv.proba.reshape(-1, k).argmax(axis=1)
    precision, recall, f1, _ = precision_recall_fscore_support(pooled_y, pooled_pred, labels=list(range(k)),
                                                               zero_division=0)
    return {
        "macro_f1": round(macro_f1, 4),
        "macro_f1_ci_low": round(low, 4),
        "macro_f1_ci_high": round(high, 4),
        "accuracy": round(float((pooled_pred == pooled_y).mean()), 4),
        "n": int(len(cv.y)),
        "articles": int(len(np.unique(cv.groups))),
        "per_class": {
            name: {"precision": round(float(precision[i]), 4), "recall": round(float(recall[i]), 4),
                   "f1": round(float(f1[i]), 4), "support": int((cv.y == i).sum())}
            for i, name in enumerate(cv.classes)
        },
    }


def cross_fitted_calibration(cv: CVResult) -> np.ndarray:
    """Out-of-fold probabilities after temperature scaling fitted on the *other* folds."""
    calibrated = np.empty_like(cv.proba)
    for r in range(cv.proba.shape[0]):
        for k in np.unique(cv.fold[r]):
            test, rest = cv.fold[r] == k, cv.fold[r] != k
            t = fit_temperature(cv.proba[r, rest], cv.y[rest]) if rest.any() else 1.0
            calibrated[r, test] = apply_temperature(cv.proba[r, test], t)
    return calibrated


def summarize(cv: CVResult, n_bootstrap: int, confidence: float, n_bins: int, seed: int) -> dict:
    """Every number the model card and `dvc metrics show` report for one task."""
    k = len(cv.classes)
    pooled_y = np.tile(cv.y, cv.proba.shape[0])
    pooled_proba = cv.proba.reshape(-1, k)
    calibrated = cross_fitted_calibration(cv).reshape(-1, k)
    ece_raw, reliability_raw = expected_calibration_error(pooled_proba, pooled_y, n_bins)
    ece_cal, reliability_cal = expected_calibration_error(calibrated, pooled_y, n_bins)
    # Temperature scaling minimises log-loss, which on tiny data can raise ECE: the model ships
    # the temperature only when the cross-fitted (out-of-sample) ECE says it helps.
    use_temperature = ece_cal < ece_raw
    return {
        **headline(cv, n_bootstrap, confidence, seed),
        "ece_uncalibrated": round(ece_raw, 4),
        "ece_calibrated": round(ece_cal, 4),
        "temperature_fitted": round(fit_temperature(pooled_proba, pooled_y), 4),
        "temperature_used": use_temperature,
        "ece": round(ece_cal if use_temperature else ece_raw, 4),
        "confusion_matrix": confusion_matrix(cv.y, cv.proba[0].argmax(axis=1), labels=list(range(k))).tolist(),
        "reliability": reliability_cal if use_temperature else reliability_raw,
    }


def out_of_fold_frame(cv: CVResult, rows: pd.DataFrame, task: str, use_temperature: bool) -> pd.DataFrame:
    """One row per labelled paragraph: gold, out-of-fold prediction (first repeat, as in the confusion
    plot) and its class scores (cross-fitted temperature-scaled where the model uses a temperature),
    for error analysis without retraining."""
    proba = (cross_fitted_calibration(cv) if use_temperature else cv.proba)[0]
    return pd.DataFrame({
        "paragraph_id": rows["paragraph_id"].to_numpy(), "source": rows["source"].to_numpy(), "task": task,
        "gold": [cv.classes[i] for i in cv.y], "predicted": [cv.classes[i] for i in proba.argmax(axis=1)],
        "confidence": proba.max(axis=1),
        "scores": [{c: round(float(p), 4) for c, p in zip(cv.classes, row)} for row in proba],
        "text": rows["text"].to_numpy(),
    })


def confusion_rows(cv: CVResult, ids: Sequence[str]) -> list[dict]:
    """Rows for DVC's confusion template (first repeat: every paragraph once)."""
    pred = cv.proba[0].argmax(axis=1)
    return [{"paragraph_id": pid, "actual": cv.classes[a], "predicted": cv.classes[p]}
            for pid, a, p in zip(ids, cv.y, pred)]
