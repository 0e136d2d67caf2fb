"""SetFit: contrastively fine-tune the sentence encoder on labelled pairs, then fit a logistic head.

Same recipe as the `setfit` library (Tunstall et al. 2022), written out in plain torch so it
runs offline with the packaged weights and no trainer/tracking integrations: every labelled
paragraph is paired with a same-class paragraph (target cosine 1) and a different-class one
(target 0); the encoder learns to pull classes apart; the head then separates them easily.
"""

from __future__ import annotations

from pathlib import Path
from typing import Self, Sequence

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from transformers import AutoModel, PreTrainedModel

from pipeline.models.encoder import (PrecisionSetting, TopLayersTrained, device, freeze_lower_layers,
                                     frozen_prefix, length_batches, mean_pool, optimizer_and_schedule,
                                     precision_field, progress, training_batches, upper_layers)
from pipeline.models.head import LogRegHead
from pipeline.models.weights import ENCODERS


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

    family = "setfit"
    SETTINGS_FILE = "setfit.json"

    def __init__(self, classes: Sequence[str], seed: int = 0, **hyperparams):
        super().__init__(classes, seed, **hyperparams)
        self._head: LogRegHead | None = None
        self._init_state()

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> Self:
        texts, labels, p = list(texts), list(labels), self.params
        self._start_fit()
        self._model = AutoModel.from_pretrained(self._base_dir).to(device())
        freeze_lower_layers(self._model, p.trainable_layers)
        self._prefix = frozen_prefix(self._base_dir, self._frozen_layers(), p.max_length, p.eval_batch_size)
        rng = np.random.default_rng(self.seed)
        pairs = contrastive_pairs(labels, p.num_iterations, rng)
        if p.max_pairs is not None and len(pairs) > p.max_pairs:
            pairs = [pairs[k] for k in sorted(rng.choice(len(pairs), p.max_pairs, replace=False))]
        if pairs:
            self._train_encoder(texts, pairs)
        self.set_precision("fp32")
        self._head = LogRegHead(self.classes, p.C, self.seed).fit(self._training_embeddings(texts), labels)
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

    def _training_embeddings(self, texts: list[str]) -> np.ndarray:
        """Embeddings of the training texts for the head, through the cached frozen prefix."""
        out = np.zeros((len(texts), self._model.config.hidden_size), dtype=np.float32)
        with torch.no_grad():
            for idx in length_batches(texts, self.params.eval_batch_size):
                out[idx] = self._pooled([texts[i] for i in idx]).float().cpu().numpy()
        return out

    def proba_from_states(self, hidden: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
        top = upper_layers(self._scorer.base_model, hidden, mask, self._frozen_layers())
        return self._head.predict_proba(mean_pool(top, mask).cpu().numpy())

    def save(self, folder: Path) -> None:
        super().save(folder)
        self._head.save(Path(folder) / "head.json")

    @classmethod
    def load(cls, folder: Path) -> Self:
        clf = super().load(folder)
        clf._head = LogRegHead.load(Path(folder) / "head.json")
        return clf

    def _build(self, encoder: Path, task_folder: Path) -> PreTrainedModel:
        return AutoModel.from_pretrained(encoder, use_safetensors=True)
