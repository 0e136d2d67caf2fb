"""Fine-tuned transformer classifier: the packaged MiniLM with a classification head, trained end to end.

Plain torch loop (no Trainer, so no tracking integrations and nothing to configure offline),
class-weighted cross-entropy so rare classes count, a few epochs of AdamW with warmup.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Self, Sequence

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig, PreTrainedModel
from transformers.utils import logging as hf_logging

from pipeline.models.encoder import (PrecisionSetting, TopLayersTrained, device, freeze_lower_layers,
                                     frozen_prefix, optimizer_and_schedule, precision_field, progress,
                                     training_batches, upper_layers)
from pipeline.models.weights import ENCODERS


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

    family = "finetune"
    SETTINGS_FILE = "finetune.json"

    def __init__(self, classes: Sequence[str], seed: int = 0, **hyperparams):
        super().__init__(classes, seed, **hyperparams)
        self._init_state()

    def fit(self, texts: Sequence[str], labels: Sequence[str]) -> Self:
        texts, labels, p, on = list(texts), list(labels), self.params, device()
        unknown = sorted(set(labels) - set(self.classes))
        if unknown:
            raise ValueError(f"labels {unknown} are not classes of this task ({', '.join(self.classes)})")
        self._start_fit()  # seeds torch, which also fixes the random init of the classification head
        config = AutoConfig.from_pretrained(self._base_dir, num_labels=len(self.classes),
                                            id2label=dict(enumerate(self.classes)),
                                            label2id={c: i for i, c in enumerate(self.classes)})
        self._model = self._build(self._base_dir, config).to(on)
        freeze_lower_layers(self._model, p.trainable_layers)
        self._prefix = frozen_prefix(self._base_dir, self._frozen_layers(), p.max_length, p.eval_batch_size)
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
        """Training logits: the trainable layers and the head on top of the cached frozen prefix."""
        return head_logits(self._model, *self._prefix.hidden(texts), self._frozen_layers())

    def proba_from_states(self, hidden: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
        """Softmax over every schema class; a class unseen in training keeps a small learned probability."""
        logits = head_logits(self._scorer, hidden, mask, self._frozen_layers())
        return torch.softmax(logits.float(), dim=-1).cpu().numpy()

    def _build(self, encoder: Path, task: Path | PretrainedConfig) -> PreTrainedModel:
        """The classifier on the encoder's weights; its head starts random (`task`: a config or a task folder)."""
        config = task if isinstance(task, PretrainedConfig) else AutoConfig.from_pretrained(task)
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # "newly initialized classifier weights" is the point here
        try:
            return AutoModelForSequenceClassification.from_pretrained(encoder, config=config, use_safetensors=True)
        finally:
            hf_logging.set_verbosity(verbosity)


def head_logits(model: PreTrainedModel, hidden: torch.Tensor, mask: torch.Tensor, start: int) -> torch.Tensor:
    """Layers from `start` up, then the classification head: the model's own forward from there on (BERT
    pools then classifies, MPNet's head takes token 0 itself)."""
    base = model.base_model
    hidden = upper_layers(base, hidden, mask, start)
    if getattr(base, "pooler", None) is None:
        return model.classifier(hidden)
    return model.classifier(model.dropout(base.pooler(hidden)))
