"""SetFit: contrastively fine-tune the sentence encoder on labelled pairs, then fit a logistic head.

Same recipe as the `setfit` library (Tunstall et al. 2022), written out in plain torch so it
runs offline with the packaged weights and no trainer/tracking integrations: every labelled
paragraph is paired with a same-class paragraph (target cosine 1) and a different-class one
(target 0); the encoder learns to pull classes apart; the head then separates them easily.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Self, Sequence

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from transformers import AutoModel, AutoTokenizer

from pipeline.models.embed_lr import LogRegHead
from pipeline.models.weights import ENCODERS, encoder_dir
from pipeline.models.encoder import (FrozenPrefix, PrecisionSetting, TopLayersTrained, device,
                                     freeze_lower_layers, frozen_prefix, length_batches, mean_pool,
                                     optimizer_and_schedule, precision_field, progress, sentence_embeddings,
                                     setup_torch, training_batches, upper_layers)


def contrastive_pairs(labels: Sequence[str], num_iterations: int, rng: np.random.Generator) -> list[tuple[int, int, float]]:
    """(i, j, target) pairs: per iteration and example, one positive and one negative partner when one exists."""
    labels = list(labels)
    by_class: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    pairs = []
    for _ in range(num_iterations):
        for i, label in enumerate(labels):
            same = [j for j in by_class[label] if j != i]
            other = [j for j in range(len(labels)) if labels[j] != label]
            if same:
                pairs.append((i, int(rng.choice(same)), 1.0))
            if other:
                pairs.append((i, int(rng.choice(other)), 0.0))
    return pairs


class SetFitClassifier(TopLayersTrained):
    """Few-shot champion candidate: a fine-tuned sentence encoder plus a logistic regression."""


    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        encoder: str = Field("minilm", description=f"packaged encoder by name: {', '.join(ENCODERS)}")
        num_iterations: int = Field(1, ge=1, description="pair-sampling rounds (each: 2 pairs per example)")
        max_pairs: int | None = Field(None, ge=1, description="cap on training pairs (a random subset): bounds "
                                                              "the cost of a fit as labels grow")
        epochs: int = Field(1, ge=1)
        batch_size: int = Field(16, ge=1, description="pairs per optimiser step")
        learning_rate: float = Field(2e-5, gt=0)
        weight_decay: float = Field(0.01, ge=0)
        warmup_ratio: float = Field(0.1, ge=0, le=1)
        trainable_layers: int = Field(2, ge=1, description="top encoder layers updated; the rest stay frozen")
        max_length: int = Field(128, ge=8, le=512)
        eval_batch_size: int = Field(32, ge=1)
        C: float = Field(2.0, gt=0, description="inverse L2 strength of the logistic head")
        precision: PrecisionSetting = precision_field()

    def __init__(self, params: "SetFitClassifier.Params", classes: list[str], seed: int = 0):
        self.params = params
        self.classes = list(classes)
        self.seed = seed
        self._model = None
        self._tokenizer = None
        self._scorer = None
        self.precision = "fp32"  # at scoring; fitting and cross-validation always use fp32
        self._head: LogRegHead | None = None
        self._prefix: FrozenPrefix | None = None  # set while training in this process; a loaded model has none

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> Self:
        texts, labels, p = list(texts), list(labels), self.params
        setup_torch(self.seed)
        self._tokenizer = AutoTokenizer.from_pretrained(encoder_dir(p.encoder))
        self._model = AutoModel.from_pretrained(encoder_dir(p.encoder)).to(device())
        freeze_lower_layers(self._model, p.trainable_layers)
        self._prefix = frozen_prefix(encoder_dir(p.encoder), self._frozen_layers(), p.max_length, p.eval_batch_size)
        rng = np.random.default_rng(self.seed)
        pairs = contrastive_pairs(labels, p.num_iterations, rng)
        if p.max_pairs is not None and len(pairs) > p.max_pairs:
            pairs = [pairs[k] for k in sorted(rng.choice(len(pairs), p.max_pairs, replace=False))]
        if pairs:
            self._train_encoder(texts, pairs)
        self.set_precision("fp32")
        self._head = LogRegHead(self.classes, p.C, self.seed).fit(self._embed(texts), labels)
        return self

    def _train_encoder(self, texts: list[str], pairs: list[tuple[int, int, float]]) -> None:
        """CosineSimilarityLoss: MSE between the pair's embedding cosine and its 0/1 target."""
        p, model = self.params, self._model
        rng = np.random.default_rng(self.seed)
        lengths = [max(len(texts[i]), len(texts[j])) for i, j, _ in pairs]
        steps = p.epochs * -(-len(pairs) // p.batch_size)
        optimizer, schedule = optimizer_and_schedule(model, p.learning_rate, p.weight_decay, p.warmup_ratio, steps)
        model.train()
        with progress("setfit: contrastive fine-tuning", steps) as advance:
            for _ in range(p.epochs):
                for batch in training_batches(lengths, p.batch_size, rng):
                    chosen = [pairs[k] for k in batch]
                    unique = sorted({i for i, _, _ in chosen} | {j for _, j, _ in chosen})
                    where = {idx: n for n, idx in enumerate(unique)}
                    emb = self._pooled([texts[i] for i in unique])
                    left = emb[[where[i] for i, _, _ in chosen]]
                    right = emb[[where[j] for _, j, _ in chosen]]
                    target = torch.tensor([t for _, _, t in chosen], dtype=emb.dtype, device=emb.device)
                    loss = torch.nn.functional.mse_loss((left * right).sum(1), target)
                    loss.backward()
                    optimizer.step()
                    schedule.step()
                    optimizer.zero_grad(set_to_none=True)
                    advance(1)
        model.eval()
        for param in model.parameters():
            param.requires_grad_(False)

    def _pooled(self, texts: Sequence[str]) -> torch.Tensor:
        """Sentence embeddings through the trainable layers only, on top of the cached frozen prefix."""
        hidden, mask = self._prefix.hidden(texts)
        return mean_pool(upper_layers(self._model, hidden, mask, self._frozen_layers()), mask)

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings for the head: via the prefix cache while training in-process (same weights, same
        numbers), else through the full (possibly int8) model."""
        texts = list(texts)
        if self._prefix is None or self.precision != "fp32":
            return sentence_embeddings(self._scorer, self._tokenizer, texts, self.params.max_length,
                                       self.params.eval_batch_size, "setfit: embedding")
        out = np.zeros((len(texts), self._model.config.hidden_size), dtype=np.float32)
        with torch.no_grad():
            for idx in length_batches(texts, self.params.eval_batch_size):
                out[idx] = self._pooled([texts[i] for i in idx]).float().cpu().numpy()
        return out

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        return self._head.predict_proba(self._embed(texts))

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self._model.save_pretrained(folder / "encoder")
        self._tokenizer.save_pretrained(folder / "encoder")
        self._head.save(folder / "head.json")
        meta = {"classes": self.classes, "seed": self.seed, "params": self.params.model_dump(),
                "precision": self.precision}
        (folder / "setfit.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> Self:
        folder = Path(folder)
        meta = json.loads((folder / "setfit.json").read_text(encoding="utf-8"))
        clf = cls(cls.Params(**meta["params"]), meta["classes"], meta["seed"])
        clf._tokenizer = AutoTokenizer.from_pretrained(folder / "encoder")
        clf._model = AutoModel.from_pretrained(folder / "encoder", use_safetensors=True).to(device()).eval()
        clf.set_precision(meta["precision"])
        clf._head = LogRegHead.load(folder / "head.json")
        return clf
