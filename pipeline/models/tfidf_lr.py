"""Baseline: TF-IDF word and character n-grams + class-weighted logistic regression."""

from __future__ import annotations

from pathlib import Path
from typing import Self, Sequence

import joblib
import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, make_pipeline

from pipeline.models import predict_from_proba


class TfidfLogReg:
    """Strong, fast, transparent baseline; works from a handful of examples per class."""

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        C: float = Field(4.0, gt=0)
        word_ngram_max: int = Field(2, ge=1, le=3)
        char_ngrams: bool = True
        min_df: int = Field(1, ge=1)
        max_features: int = Field(50000, ge=100)

    def __init__(self, params: "TfidfLogReg.Params", classes: list[str], seed: int = 0):
        self.params = params
        self.classes = list(classes)
        self.seed = seed
        self._pipeline = None

    def _make_pipeline(self):
        p = self.params
        features = [
            TfidfVectorizer(ngram_range=(1, p.word_ngram_max), min_df=p.min_df, max_features=p.max_features,
                            sublinear_tf=True, strip_accents="unicode"),
        ]
        if p.char_ngrams:
            features.append(TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=p.min_df,
                                            max_features=p.max_features, sublinear_tf=True))
        return make_pipeline(
            FeatureUnion([(f"f{i}", f) for i, f in enumerate(features)]),
            LogisticRegression(C=p.C, class_weight="balanced", max_iter=2000, random_state=self.seed),
        )

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> Self:
        self._pipeline = self._make_pipeline().fit(list(texts), list(labels))
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities in schema class order; a class absent from training gets 0."""
        seen = list(self._pipeline.classes_)
        raw = self._pipeline.predict_proba(list(texts))
        proba = np.zeros((len(raw), len(self.classes)))
        for j, name in enumerate(seen):
            proba[:, self.classes.index(name)] = raw[:, j]
        return proba

    def predict(self, texts: Sequence[str]) -> list[str]:
        return predict_from_proba(self.predict_proba(texts), self.classes)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        joblib.dump(self, folder / "model.joblib")

    @classmethod
    def load(cls, folder: Path) -> Self:
        return joblib.load(folder / "model.joblib")
