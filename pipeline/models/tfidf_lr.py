"""Baseline: TF-IDF word n-grams (optionally character n-grams) + class-weighted logistic regression.

Tokenising, n-gram building and vocabulary lookup run as Arrow compute kernels over a whole batch
(`pipeline.models.tfidf_features`), not a Python loop per paragraph, and the same code builds the
features for training and for scoring, so the two cannot drift apart. The saved model is plain
data: the vocabulary and settings in model.json, idf and coefficients in weights.npz (no pickle).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Self, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.models.base import StanceClassifier
from pipeline.models.tfidf_features import Analyzer, fit_vocabulary, tfidf_matrix

MODEL_FILE = "model.json"
WEIGHTS_FILE = "weights.npz"


class TfidfLogReg(StanceClassifier):
    """Strong, fast, transparent baseline; works from a handful of examples per class."""

    family = "tfidf_lr"
    arrow_input = True  # predict_proba takes an Arrow string array as well as a list

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        C: float = Field(4.0, gt=0)
        word_ngram_max: int = Field(2, ge=1, le=3)
        char_ngrams: bool = True  # character 3-5-grams inside words: more accurate, slower to score
        min_df: int = Field(1, ge=1)
        max_features: int = Field(50000, ge=100)

    def __init__(self, classes: Sequence[str], seed: int = 0, **hyperparams):
        super().__init__(classes, seed, **hyperparams)
        self.analyzers: list[Analyzer] = []
        self.coef: np.ndarray | None = None  # (classes seen in training, features)
        self.intercept: np.ndarray | None = None
        self.seen: list[str] = []  # classes present in the training labels, in the coefficients' order

    def _analyzers(self) -> list[Analyzer]:
        kinds = [Analyzer("word", 1, self.params.word_ngram_max)]
        return kinds + ([Analyzer("char", 3, 5)] if self.params.char_ngrams else [])

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> Self:
        texts = list(texts)
        self.analyzers = [fit_vocabulary(a, texts, self.params.min_df, self.params.max_features)
                          for a in self._analyzers()]
        from sklearn.linear_model import LogisticRegression  # here, not at import: scoring never needs it (~80 MB)

        lr = LogisticRegression(C=self.params.C, class_weight="balanced", max_iter=2000, random_state=self.seed)
        lr.fit(tfidf_matrix(self.analyzers, texts), list(labels))
        self.seen = [str(c) for c in lr.classes_]
        self.coef, self.intercept = lr.coef_, lr.intercept_
        return self

    def decision(self, texts) -> np.ndarray:
        """Raw linear scores (n, coefficient rows) for a list or an Arrow string array of texts."""
        return np.asarray(tfidf_matrix(self.analyzers, texts) @ self.coef.T) + self.intercept

    def predict_proba(self, texts) -> np.ndarray:
        """Probabilities in schema class order; a class absent from training gets 0."""
        z = self.decision(texts)
        if len(self.seen) == 2:  # binary logistic regression: one coefficient row for the second class
            p = 1.0 / (1.0 + np.exp(-z[:, 0]))
            raw = np.column_stack([1.0 - p, p])
        else:
            z = z - z.max(axis=1, keepdims=True)
            raw = np.exp(z)
            raw /= raw.sum(axis=1, keepdims=True)
        proba = np.zeros((len(raw), len(self.classes)))
        proba[:, [self.classes.index(name) for name in self.seen]] = raw
        return proba

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        meta = {**self.settings(), "seen": self.seen, "analyzers": [a.describe() for a in self.analyzers]}
        (folder / MODEL_FILE).write_text(json.dumps(meta, ensure_ascii=False), encoding="utf-8")
        arrays = {f"idf_{i}": a.idf for i, a in enumerate(self.analyzers)}
        np.savez(folder / WEIGHTS_FILE, coef=self.coef, intercept=self.intercept, **arrays)

    @classmethod
    def load(cls, folder: Path) -> Self:
        meta = json.loads((folder / MODEL_FILE).read_text(encoding="utf-8"))
        clf = cls.from_settings(meta)
        with np.load(folder / WEIGHTS_FILE, allow_pickle=False) as weights:
            clf.coef, clf.intercept = weights["coef"], weights["intercept"]
            clf.analyzers = [Analyzer.restore(spec, weights[f"idf_{i}"]) for i, spec in enumerate(meta["analyzers"])]
        clf.seen = meta["seen"]
        return clf
