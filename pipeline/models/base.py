"""The contract every model family follows, in scikit-learn's estimator conventions.

    clf = TfidfLogReg(classes=["robust", "fragile", "none"], seed=42, C=4.0)   # or build_classifier(...)
    clf.get_params(); clf.set_params(C=8.0); sklearn.base.clone(clf)          # an unfitted copy
    clf.fit(texts, labels)            # labels are class names
    clf.predict_proba(texts)          # ndarray (n, len(classes)), columns in `classes` order
    clf.predict(texts)                # list of class names
    clf.save(folder); TfidfLogReg.load(folder)                                # plain files, no pickle

The constructor stores its arguments as given (scikit-learn's rule, which `clone` relies on) and
validates the hyperparameters against the family's `Params` model, so a mistyped one is an error that
names `models.<family>`. What a family can do is declared in class attributes, never probed.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self, Sequence

import numpy as np
from pydantic import BaseModel

from pipeline.config import validate_section


class StanceClassifier:
    family: ClassVar[str]  # its key under `models:` in params.yaml
    Params: ClassVar[type[BaseModel]]  # its hyperparameters, with defaults and bounds
    arrow_input: ClassVar[bool] = False  # predict_proba also takes an Arrow string array
    precisions: ClassVar[tuple[str, ...]] = ()  # inference precisions it can score at, fp32 first (precision.py)
    shares_lower_layers: ClassVar[bool] = False  # its tasks can score on one pass of shared frozen layers

    def __init__(self, classes: Sequence[str], seed: int = 0, **hyperparams: Any):
        self.classes = classes
        self.seed = seed
        self.hyperparams = hyperparams
        self.params = validate_section(self.Params, hyperparams, f"models.{self.family}")

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {"classes": self.classes, "seed": self.seed, **self.hyperparams}

    def set_params(self, **values: Any) -> Self:
        """Change constructor parameters (validated); the fitted state, if any, no longer matches them."""
        given = {**self.get_params(), **values}
        type(self).__init__(self, **given)
        return self

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> Self:
        raise NotImplementedError

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError

    def predict(self, texts: Sequence[str]) -> list[str]:
        return predict_from_proba(self.predict_proba(texts), list(self.classes))

    def settings(self) -> dict[str, Any]:
        """What `load` needs to rebuild the unfitted classifier: saved beside the fitted state."""
        return {"classes": list(self.classes), "seed": self.seed, "params": self.params.model_dump()}

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> Self:
        return cls(settings["classes"], settings["seed"], **settings["params"])


def predict_from_proba(proba: np.ndarray, classes: list[str]) -> list[str]:
    return [classes[i] for i in np.asarray(proba).argmax(axis=1)]
