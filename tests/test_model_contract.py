"""Every model family follows one contract (pipeline/models/base.py): scikit-learn's constructor
conventions, so get_params, set_params and clone work, and declared capabilities."""

from __future__ import annotations

import pytest
from sklearn.base import clone

from pipeline.config import ConfigError
from pipeline.models import FAMILIES, build_classifier, family_class
from pipeline.models.base import StanceClassifier

CLASSES = ["robust", "fragile", "none"]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_clone_gives_an_unfitted_copy_with_the_same_parameters(family):
    hyper = {"C": 3.0} if family != "finetune" else {"epochs": 2}
    clf = build_classifier(family, hyper, CLASSES, seed=5)
    twin = clone(clf)
    assert type(twin) is type(clf) and twin is not clf
    assert twin.get_params() == clf.get_params() == {"classes": CLASSES, "seed": 5, **hyper}
    assert twin.params == clf.params


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_declares_its_contract(family):
    cls = family_class(family)
    assert issubclass(cls, StanceClassifier) and cls.family == family
    assert set(cls.precisions) <= {"fp32", "bf16", "int8"}
    assert not cls.precisions or cls.precisions[0] == "fp32"


def test_set_params_validates_like_the_constructor():
    clf = build_classifier("tfidf_lr", {}, CLASSES, seed=0)
    assert clf.set_params(C=8.0).params.C == 8.0 and clf.get_params()["C"] == 8.0
    with pytest.raises(ConfigError, match="models.tfidf_lr"):
        clf.set_params(C=-1.0)
    with pytest.raises(ConfigError, match="models.tfidf_lr"):
        build_classifier("tfidf_lr", {"c": 1.0}, CLASSES, seed=0)


def test_a_cloned_classifier_fits_and_scores_like_the_original():
    texts = ["ties deepen with new pipelines", "talks stall amid suspicion", "rain expected on thursday",
             "a friendship without limits", "a lopsided and fragile alliance", "the museum reopened"]
    labels = ["robust", "fragile", "none"] * 2
    clf = build_classifier("tfidf_lr", {"min_df": 1}, CLASSES, seed=0)
    fitted = clf.fit(texts, labels).predict_proba(texts)
    again = clone(clf).fit(texts, labels).predict_proba(texts)
    assert (fitted == again).all() and fitted.shape == (6, 3)
