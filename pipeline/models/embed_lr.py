"""Frozen sentence embeddings + class-weighted logistic regression: cheap, and strong on tens of examples."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Self, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.models.base import StanceClassifier
from pipeline.models.encoder import (PRECISIONS, FrozenEncoder, PrecisionSetting, encoder_fingerprint, frozen_encoder,
                                     precision_field, resolve_shared_encoder, save_shared_encoder, setup_torch)
from pipeline.models.head import LogRegHead
from pipeline.models.weights import ENCODERS, encoder_dir


class EmbedLogReg(StanceClassifier):
    """A packaged sentence encoder (params: `encoder`) as a frozen feature extractor, a logistic regression on top."""

    family = "embed_lr"
    precisions = PRECISIONS
    shares_lower_layers = False  # no trained layers: its tasks share the whole encoder (one memo of embeddings)

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        encoder: str = Field("minilm", description=f"packaged encoder by name: {', '.join(ENCODERS)}")
        C: float = Field(2.0, gt=0, description="inverse L2 strength of the logistic regression")
        layers: list[int] = Field([-1], min_length=1, description="hidden states mean-pooled side by side: -1 the "
                                  "last layer's output (the sentence embedding), -5 the output four layers lower")
        max_length: int = Field(256, ge=8, le=512, description="tokens per paragraph; the rest is cut")
        batch_size: int = Field(32, ge=1)
        precision: PrecisionSetting = precision_field()

    def __init__(self, classes: Sequence[str], seed: int = 0, **hyperparams):
        super().__init__(classes, seed, **hyperparams)
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
        return self._encoder().embed(texts, self.params.max_length, self.params.batch_size, persist, self.params.layers)

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> Self:
        setup_torch(self.seed)
        self.precision = "fp32"
        self._head = LogRegHead(self.classes, self.params.C, self.seed).fit(self._embed(texts, persist=True), labels)
        return self

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self._head.predict_proba(self._embed(texts))

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
        source = self._encoder_dir or encoder_dir(self.params.encoder)
        key = self._encoder_key or encoder_fingerprint(source)
        shared = save_shared_encoder(folder, key, source)
        self._head.save(folder / "head.json")
        meta = {**self.settings(), "precision": self.precision, "encoder_key": key,
                "encoder_dir": os.path.relpath(shared, folder)}
        (folder / "embed_lr.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> Self:
        folder = Path(folder)
        meta = json.loads((folder / "embed_lr.json").read_text(encoding="utf-8"))
        clf = cls.from_settings(meta)
        clf.set_precision(meta["precision"])
        clf._encoder_dir = resolve_shared_encoder(folder, meta["encoder_dir"])
        clf._encoder_key = meta["encoder_key"]
        clf._head = LogRegHead.load(folder / "head.json")
        return clf
