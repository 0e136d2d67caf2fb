"""Model families: every classifier is a per-task estimator with the same small API.

A family is a class with scikit-learn-like methods, constructed with the task's
class list from the schema so probability columns always follow schema order:

    clf = build_classifier("tfidf_lr", hyperparams, classes=["robust", "fragile", "none"], seed=42)
    clf.fit(texts, labels)            # labels are class names
    clf.predict_proba(texts)          # ndarray (n, len(classes)), columns in `classes` order
    clf.predict(texts)                # list of class names
    clf.save(folder); Family.load(folder)

`pipeline.model.StanceModel` bundles one such classifier per schema task.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol, Self, Sequence

import numpy as np

from pipeline.config import ConfigError, validate_section

# family name in params.yaml -> "module:Class"; modules are imported lazily so the
# sklearn path never pays for importing torch.
FAMILIES: dict[str, str] = {
    "tfidf_lr": "pipeline.models.tfidf_lr:TfidfLogReg",
    "embed_lr": "pipeline.models.embed_lr:EmbedLogReg",
    "setfit": "pipeline.models.setfit_model:SetFitClassifier",
    "finetune": "pipeline.models.finetune:FineTunedTransformer",
}


class TextClassifier(Protocol):
    classes: list[str]
    precisions: tuple[str, ...]  # inference precisions it can score at, fp32 first; () = only its own
    shares_lower_layers: bool  # its tasks can score on one pass of shared frozen layers (encoder.score_tasks)

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> Self: ...

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray: ...

    def predict(self, texts: Sequence[str]) -> list[str]: ...

    def save(self, folder: Path) -> None: ...

    @classmethod
    def load(cls, folder: Path) -> Self: ...


def family_class(family: str) -> type:
    if family not in FAMILIES:
        raise ConfigError(f"unknown model family '{family}' (known: {', '.join(FAMILIES)})")
    module, name = FAMILIES[family].split(":")
    return getattr(importlib.import_module(module), name)


def build_classifier(family: str, hyperparams: dict[str, Any], classes: list[str], seed: int) -> TextClassifier:
    """A fresh, unfitted classifier of `family`, its hyperparameters validated."""
    cls = family_class(family)
    params = validate_section(cls.Params, hyperparams, f"models.{family}")
    return cls(params=params, classes=classes, seed=seed)


def predict_from_proba(proba: np.ndarray, classes: list[str]) -> list[str]:
    return [classes[i] for i in np.asarray(proba).argmax(axis=1)]
