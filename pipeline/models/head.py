"""The classification head shared by the embedding families (embed_lr, setfit) and the annotation app's
fast model: a class-weighted logistic regression on sentence embeddings, saved as plain JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Self, Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression


class LogRegHead:
    """Logistic regression on embeddings, answering in schema class order.

    A class absent from training gets probability 0; a single training class gets 1.
    """

    def __init__(self, classes: list[str], C: float, seed: int):
        self.classes = list(classes)
        self.C = C
        self.seed = seed
        self._lr: LogisticRegression | None = None
        self._only: str | None = None

    def fit(self, X: np.ndarray, labels: Sequence[str]) -> Self:
        unknown = sorted(set(labels) - set(self.classes))
        if unknown:
            raise ValueError(f"labels {unknown} are not classes of this task ({', '.join(self.classes)})")
        seen = sorted(set(labels))
        if len(seen) == 1:
            self._only = seen[0]
            return self
        self._lr = LogisticRegression(C=self.C, class_weight="balanced", max_iter=5000, random_state=self.seed)
        self._lr.fit(X, list(labels))
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        proba = np.zeros((len(X), len(self.classes)))
        if self._only is not None:
            proba[:, self.classes.index(self._only)] = 1.0
            return proba
        raw = self._lr.predict_proba(X)
        for j, name in enumerate(self._lr.classes_):
            proba[:, self.classes.index(name)] = raw[:, j]
        return proba

    def save(self, path: Path) -> None:
        """Plain JSON (no pickle): the fitted coefficients, which is all predict_proba needs.
        JSON floats round-trip float64 exactly."""
        state = {"classes": self.classes, "C": self.C, "seed": self.seed, "only": self._only}
        if self._lr is not None:
            state.update(lr_classes=self._lr.classes_.tolist(), coef=self._lr.coef_.tolist(),
                         intercept=self._lr.intercept_.tolist())
        Path(path).write_text(json.dumps(state), encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> "LogRegHead":
        state = json.loads(Path(path).read_text(encoding="utf-8"))
        head = cls(state["classes"], state["C"], state["seed"])
        head._only = state["only"]
        if head._only is None:
            coef = np.asarray(state["coef"], dtype=np.float64)
            lr = LogisticRegression(C=head.C, class_weight="balanced", max_iter=5000, random_state=head.seed)
            lr.classes_ = np.asarray(state["lr_classes"])
            lr.coef_, lr.intercept_ = coef, np.asarray(state["intercept"], dtype=np.float64)
            lr.n_features_in_ = coef.shape[1]
            unknown = set(state["lr_classes"]) - set(head.classes)
            if unknown or coef.shape[0] != (1 if len(lr.classes_) == 2 else len(lr.classes_)):
                raise ValueError(f"{path}: head coefficients do not match its classes")
            head._lr = lr
        return head
