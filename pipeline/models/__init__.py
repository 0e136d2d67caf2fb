"""Model families: every classifier is a per-task estimator following one contract
(`pipeline.models.base.StanceClassifier`: scikit-learn's constructor and method conventions), built
with the task's class list from the schema so probability columns always follow schema order:

    clf = build_classifier("tfidf_lr", hyperparams, classes=["robust", "fragile", "none"], seed=42)
    clf.fit(texts, labels); clf.predict_proba(texts); clf.predict(texts)
    clf.save(folder); family_class("tfidf_lr").load(folder)

`pipeline.model.StanceModel` bundles one such classifier per schema task.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from pipeline.config import ConfigError

if TYPE_CHECKING:
    from pipeline.models.base import StanceClassifier

# family name in params.yaml -> "module:Class"; modules are imported lazily so the
# sklearn path never pays for importing torch.
FAMILIES: dict[str, str] = {
    "tfidf_lr": "pipeline.models.tfidf_lr:TfidfLogReg",
    "embed_lr": "pipeline.models.embed_lr:EmbedLogReg",
    "setfit": "pipeline.models.setfit_model:SetFitClassifier",
    "finetune": "pipeline.models.finetune:FineTunedTransformer",
}


def family_class(family: str) -> type[StanceClassifier]:
    if family not in FAMILIES:
        raise ConfigError(f"unknown model family '{family}' (known: {', '.join(FAMILIES)})")
    module, name = FAMILIES[family].split(":")
    return getattr(importlib.import_module(module), name)


def build_classifier(family: str, hyperparams: dict[str, Any], classes: list[str], seed: int) -> StanceClassifier:
    """A fresh, unfitted classifier of `family`, its hyperparameters validated."""
    return family_class(family)(classes, seed, **hyperparams)
