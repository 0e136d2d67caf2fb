"""Frozen sentence embeddings + class-weighted logistic regression: cheap, and strong on tens of examples."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Self, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sklearn.linear_model import LogisticRegression

from pipeline.models import predict_from_proba
from pipeline.models.encoder import (PRECISIONS, FrozenEncoder, PrecisionSetting, encoder_fingerprint, frozen_encoder,
                                     precision_field, resolve_shared_encoder, setup_torch, shared_encoder_dir)
from pipeline.models.weights import ENCODERS, encoder_dir


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


class EmbedLogReg:
    """A packaged sentence encoder (params: `encoder`) as a frozen feature extractor, a logistic regression on top."""

    multithreaded = True  # torch inference uses every core; scoring needs no worker processes
    precisions = PRECISIONS
    shares_lower_layers = False  # no trained layers: its tasks share the whole encoder (one memo of embeddings)

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        encoder: str = Field("minilm", description=f"packaged encoder by name: {', '.join(ENCODERS)}")
        C: float = Field(2.0, gt=0, description="inverse L2 strength of the logistic regression")
        max_length: int = Field(256, ge=8, le=512, description="tokens per paragraph; the rest is cut")
        batch_size: int = Field(32, ge=1)
        precision: PrecisionSetting = precision_field()

    def __init__(self, params: "EmbedLogReg.Params", classes: list[str], seed: int = 0):
        self.params = params
        self.classes = list(classes)
        self.seed = seed
        self.precision = "fp32"  # of the encoder at scoring; fitting and cross-validation always use fp32
        self._encoder_dir: Path | None = None  # None: the packaged weights
        self._encoder_key: str | None = None
        self._head: LogRegHead | None = None

    def _encoder(self) -> FrozenEncoder:
        if self._encoder_dir is None:
            folder = encoder_dir(self.params.encoder)
            return frozen_encoder(folder, encoder_fingerprint(folder), self.precision)
        return frozen_encoder(self._encoder_dir, self._encoder_key, self.precision)

    def _embed(self, texts: Sequence[str], persist: bool = False) -> np.ndarray:
        return self._encoder().embed(texts, self.params.max_length, self.params.batch_size, persist)

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> Self:
        setup_torch(self.seed)
        self.precision = "fp32"
        self._head = LogRegHead(self.classes, self.params.C, self.seed).fit(self._embed(texts, persist=True), labels)
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self._head.predict_proba(self._embed(texts))

    def predict(self, texts: Sequence[str]) -> list[str]:
        return predict_from_proba(self.predict_proba(texts), self.classes)

    def set_precision(self, precision: str) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"unknown inference precision '{precision}' (known: {', '.join(PRECISIONS)})")
        self.precision = precision

    def save(self, folder: Path) -> None:
        """Head, settings and a copy of the encoder, so the folder scores with no package installed.

        The encoder goes to `encoders/<fingerprint>` beside the StanceModel's `tasks/` folder, once for
        all tasks that share it (a 400 MB encoder is not copied per task)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        encoder = self._encoder()
        key = self._encoder_key or encoder_fingerprint(encoder.folder)
        shared = shared_encoder_dir(folder, key)
        if not (shared / "config.json").exists():
            encoder.save(shared)
        self._head.save(folder / "head.json")
        meta = {"classes": self.classes, "seed": self.seed, "params": self.params.model_dump(),
                "precision": self.precision, "encoder_key": key, "encoder_dir": os.path.relpath(shared, folder)}
        (folder / "embed_lr.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> Self:
        folder = Path(folder)
        meta = json.loads((folder / "embed_lr.json").read_text(encoding="utf-8"))
        clf = cls(cls.Params(**meta["params"]), meta["classes"], meta["seed"])
        clf.set_precision(meta["precision"])
        clf._encoder_dir = resolve_shared_encoder(folder, meta["encoder_dir"])
        clf._encoder_key = meta["encoder_key"]
        clf._head = LogRegHead.load(folder / "head.json")
        return clf
