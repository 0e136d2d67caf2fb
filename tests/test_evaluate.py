"""The evaluation protocol: test folds from real text only, transfer, learning curve, article bootstrap."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from pipeline.evaluate import _macro_f1, bootstrap_macro_f1, cross_validate, learning_curve, transfer

CLASSES = ["a", "b"]


class MemorisingClassifier:
    """Answers from the texts it saw, so a leak of a test paragraph into training would show. An estimator
    with no parameters: each fold fits a `clone` of it."""

    def get_params(self, deep=True):
        return {}

    def fit(self, texts, labels):
        self.seen = dict(zip(texts, labels))
        return self

    def predict_proba(self, texts):
        return np.array([[1.0, 0.0] if self.seen.get(t, "b") == "a" else [0.0, 1.0] for t in texts])


def corpus(n_real_articles=6, n_authored_articles=10, per_article=4):
    texts, y, groups, testable = [], [], [], []
    for origin, n in (("real", n_real_articles), ("authored", n_authored_articles)):
        for a in range(n):
            for p in range(per_article):
                texts.append(f"{origin} {a} {p}")
                y.append((a + p) % 2)
                groups.append(f"{origin}#{a}")
                testable.append(origin == "real")
    return texts, np.array(y), np.array(groups), np.array(testable)


def test_only_real_rows_are_tested_and_authored_rows_always_train():
    texts, y, groups, testable = corpus()
    cv = cross_validate(MemorisingClassifier(), texts, y, groups, CLASSES, 3, 2, 0, testable)
    assert len(cv.y) == testable.sum() and set(cv.groups) == set(groups[testable])
    assert (cv.fold >= 0).all()
    # the memoriser never saw a test paragraph: every real paragraph was predicted "b" (unseen)
    assert (cv.proba.argmax(axis=2) == 1).all()
    # every training set held all authored rows plus some real ones
    assert min(cv.train_sizes) > (~testable).sum()


def test_transfer_trains_on_authored_only_and_tests_every_real_row():
    texts, y, groups, testable = corpus()
    result = transfer(MemorisingClassifier(), texts, y, groups, CLASSES, testable)
    assert result.train_sizes == [int((~testable).sum())] and len(result.y) == testable.sum()
    assert transfer(MemorisingClassifier(), texts, y, groups, CLASSES, np.ones(len(y), bool)) is None


def test_learning_curve_grows_the_authored_share_by_article():
    texts, y, groups, testable = corpus()
    points = learning_curve(MemorisingClassifier(), texts, y, groups, CLASSES, testable, [0.0, 0.5, 1.0], 3, 0)
    sizes = [p["train_labels"] for p in points]
    assert sizes == sorted(sizes) and sizes[2] - sizes[0] == (~testable).sum()


def test_fast_macro_f1_equals_sklearn():
    rng = np.random.default_rng(0)
    for _ in range(50):
        y, pred = rng.integers(0, 3, 40), rng.integers(0, 3, 40)
        assert np.isclose(_macro_f1(y, pred, 3), f1_score(y, pred, labels=[0, 1, 2], average="macro",
                                                          zero_division=0))


def test_fast_macro_f1_counts_absent_classes_as_zero_like_sklearn():
    """A class neither in gold nor predicted (a rare class missing from a bootstrap draw) scores 0, and
    a class predicted but never gold scores 0: sklearn with labels= and zero_division=0 does the same."""
    y, pred = np.array([0, 0, 1, 1, 1]), np.array([0, 1, 1, 1, 2])
    for k in (3, 4):
        expected = f1_score(y, pred, labels=list(range(k)), average="macro", zero_division=0)
        assert _macro_f1(y, pred, k) == pytest.approx(expected)
    assert _macro_f1(y, y, 2) == 1.0 and _macro_f1(y, y, 4) == 0.5


def test_article_bootstrap_is_wider_than_a_paragraph_bootstrap_when_errors_cluster_by_article():
    texts, y, groups, testable = corpus(n_real_articles=12)
    cv = cross_validate(MemorisingClassifier(), texts, y, groups, CLASSES, 3, 1, 0, testable)
    wrong_article = np.isin(cv.groups, [f"real#{a}" for a in range(0, 12, 2)])
    cv.proba[0] = np.eye(2)[np.where(wrong_article, 1 - cv.y, cv.y)]
    point, low, high = bootstrap_macro_f1(cv, 500, 0.95, 0)
    assert low <= point <= high
    per_paragraph = cv.__class__(proba=cv.proba, fold=cv.fold, y=cv.y, classes=cv.classes,
                                 groups=np.arange(len(cv.y)).astype(str), train_sizes=[])
    _, p_low, p_high = bootstrap_macro_f1(per_paragraph, 500, 0.95, 0)
    assert high - low > 1.3 * (p_high - p_low)
