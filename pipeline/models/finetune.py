"""Fine-tuned transformer classifier: the packaged MiniLM with a classification head, trained end to end.

Plain torch loop (no Trainer, so no tracking integrations and nothing to configure offline),
class-weighted cross-entropy so rare classes count, a few epochs of AdamW with warmup.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Self, Sequence

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging as hf_logging

from pipeline.models.weights import ENCODERS, encoder_dir
from pipeline.models.encoder import (FrozenPrefix, PrecisionSetting, TopLayersTrained, device,
                                     freeze_lower_layers, frozen_prefix, length_batches, optimizer_and_schedule,
                                     precision_field, progress, setup_torch, tokenize, training_batches,
                                     upper_layers)


def balanced_class_weights(labels: Sequence[str], classes: list[str]) -> list[float]:
    """n / (k * count) per seen class, as sklearn's class_weight='balanced'; unseen classes never occur."""
    counts = Counter(labels)
    return [len(labels) / (len(counts) * counts[c]) if counts[c] else 1.0 for c in classes]


class FineTunedTransformer(TopLayersTrained):
    """AutoModelForSequenceClassification on the packaged all-MiniLM-L6-v2 weights."""


    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        encoder: str = Field("minilm", description=f"packaged encoder by name: {', '.join(ENCODERS)}")
        epochs: int = Field(4, ge=1)
        batch_size: int = Field(16, ge=1)
        learning_rate: float = Field(1e-4, gt=0)
        weight_decay: float = Field(0.01, ge=0)
        warmup_ratio: float = Field(0.1, ge=0, le=1)
        trainable_layers: int = Field(2, ge=1, description="top encoder layers updated (6 = all); the rest and "
                                                          "the embeddings stay frozen")
        max_length: int = Field(128, ge=8, le=512)
        eval_batch_size: int = Field(32, ge=1)
        precision: PrecisionSetting = precision_field()

    def __init__(self, params: "FineTunedTransformer.Params", classes: list[str], seed: int = 0):
        self.params = params
        self.classes = list(classes)
        self.seed = seed
        self._model = None
        self._tokenizer = None
        self._scorer = None
        self.precision = "fp32"  # at scoring; fitting and cross-validation always use fp32
        self._prefix: FrozenPrefix | None = None  # set while training in this process; a loaded model has none

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> Self:
        texts, labels, p, on = list(texts), list(labels), self.params, device()
        unknown = sorted(set(labels) - set(self.classes))
        if unknown:
            raise ValueError(f"labels {unknown} are not classes of this task ({', '.join(self.classes)})")
        setup_torch(self.seed)  # also fixes the random init of the classification head
        self._tokenizer = AutoTokenizer.from_pretrained(encoder_dir(p.encoder))
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # "newly initialized classifier weights" is the point here
        try:
            self._model = AutoModelForSequenceClassification.from_pretrained(
                encoder_dir(p.encoder), num_labels=len(self.classes),
                id2label=dict(enumerate(self.classes)), label2id={c: i for i, c in enumerate(self.classes)},
            ).to(on)
        finally:
            hf_logging.set_verbosity(verbosity)
        freeze_lower_layers(self._model, p.trainable_layers)
        self._prefix = frozen_prefix(encoder_dir(p.encoder), self._frozen_layers(), p.max_length, p.eval_batch_size)
        targets = torch.tensor([self.classes.index(label) for label in labels], device=on)
        loss_fn = torch.nn.CrossEntropyLoss(weight=torch.tensor(balanced_class_weights(labels, self.classes),
                                                                dtype=torch.float32, device=on))
        rng = np.random.default_rng(self.seed)
        steps = p.epochs * -(-len(texts) // p.batch_size)
        optimizer, schedule = optimizer_and_schedule(self._model, p.learning_rate, p.weight_decay,
                                                     p.warmup_ratio, steps)
        self._model.train()
        with progress("finetune: training", steps) as advance:
            for _ in range(p.epochs):
                for batch in training_batches([len(t) for t in texts], p.batch_size, rng):
                    loss = loss_fn(self._logits([texts[i] for i in batch]), targets[batch])
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                    optimizer.zero_grad(set_to_none=True)
                    advance(1)
        self._model.eval()
        self._model.requires_grad_(False)
        self.set_precision("fp32")
        return self

    def _logits(self, texts: Sequence[str]) -> torch.Tensor:
        """Logits through the trainable layers and the head, on top of the cached frozen prefix (the same
        computation as the model's own forward: BERT pools then classifies, MPNet's head takes token 0 itself)."""
        hidden, mask = self._prefix.hidden(texts)
        base = self._model.base_model
        hidden = upper_layers(base, hidden, mask, self._frozen_layers())
        if getattr(base, "pooler", None) is None:
            return self._model.classifier(hidden)
        return self._model.classifier(self._model.dropout(base.pooler(hidden)))

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """Softmax over every schema class; a class unseen in training keeps a small learned probability.
        Via the prefix cache while training in-process, else through the full (possibly int8) model."""
        texts = list(texts)
        cached = self._prefix is not None and self.precision == "fp32"
        on = next(self._scorer.parameters()).device
        proba = np.zeros((len(texts), len(self.classes)))
        with torch.no_grad(), progress("finetune: scoring", len(texts)) as advance:
            for idx in length_batches(texts, self.params.eval_batch_size):
                chunk = [texts[i] for i in idx]
                if cached:
                    logits = self._logits(chunk)
                else:
                    logits = self._scorer(**tokenize(self._tokenizer, chunk, self.params.max_length, on)).logits
                proba[idx] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
                advance(len(idx))
        return proba

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._model.save_pretrained(folder / "model")
        self._tokenizer.save_pretrained(folder / "model")
        meta = {"classes": self.classes, "seed": self.seed, "params": self.params.model_dump(),
                "precision": self.precision}
        (folder / "finetune.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> Self:
        folder = Path(folder)
        meta = json.loads((folder / "finetune.json").read_text(encoding="utf-8"))
        clf = cls(cls.Params(**meta["params"]), meta["classes"], meta["seed"])
        clf._tokenizer = AutoTokenizer.from_pretrained(folder / "model")
        clf._model = AutoModelForSequenceClassification.from_pretrained(
            folder / "model", use_safetensors=True).to(device()).eval()
        clf.set_precision(meta["precision"])
        return clf
