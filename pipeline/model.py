"""StanceModel: one classifier per schema task, plus per-task probability calibration.

This is the unit that is trained, saved, logged to MLflow and scored with. Its folder
carries everything it needs (schema, family name, weights, temperatures), so a saved
model scores on a machine with no network and no project checkout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import yaml

from pipeline.calibration import apply_temperature
from pipeline.models import TextClassifier, build_classifier, family_class
from pipeline.schema import LabelSchema


class StanceModel:
    def __init__(self, schema: LabelSchema, family: str, classifiers: dict[str, TextClassifier],
                 temperatures: dict[str, float] | None = None, provenance: dict[str, Any] | None = None):
        self.schema = schema
        self.family = family
        self.classifiers = classifiers
        self.temperatures = temperatures or {task: 1.0 for task in classifiers}
        self.provenance = provenance or {}  # what it was trained on (paragraphs by origin, labels by task)

    @classmethod
    def fit(cls, schema: LabelSchema, family: str, hyperparams: dict[str, Any], seed: int,
            data: dict[str, tuple[Sequence[str], Sequence[str]]]) -> "StanceModel":
        """Train one classifier per task on `data[task] = (texts, labels)`."""
        classifiers = {
            task: build_classifier(family, hyperparams, schema.labels(task), seed).fit(*data[task])
            for task in schema.task_names
        }
        return cls(schema, family, classifiers)

    def predict_proba(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """Calibrated class probabilities per task, columns in schema class order."""
        texts = list(texts)
        return {
            task: apply_temperature(clf.predict_proba(texts), self.temperatures.get(task, 1.0))
            for task, clf in self.classifiers.items()
        }

    def predict(self, texts: Sequence[str]) -> dict[str, list[str]]:
        return {
            task: [self.schema.labels(task)[i] for i in proba.argmax(axis=1)]
            for task, proba in self.predict_proba(texts).items()
        }

    def score_frame(self, texts: Sequence[str]) -> pd.DataFrame:
        """The scoring contract: per task T, column `T` (class) and `T_scores` ({class: probability})."""
        columns: dict[str, list] = {}
        for task, proba in self.predict_proba(texts).items():
            labels = self.schema.labels(task)
            columns[task] = [labels[i] for i in proba.argmax(axis=1)]
            columns[f"{task}_scores"] = [
                {label: round(float(p), 6) for label, p in zip(labels, row)} for row in proba
            ]
        return pd.DataFrame(columns)

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "schema.yaml").write_text(
            yaml.safe_dump(self.schema.model_dump(exclude_none=True), sort_keys=False, allow_unicode=True),
            encoding="utf-8")
        meta = {"family": self.family, "tasks": list(self.classifiers), "temperatures": self.temperatures,
                "provenance": self.provenance}
        (folder / "stance_model.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        for task, clf in self.classifiers.items():
            clf.save(folder / "tasks" / task)

    @classmethod
    def load(cls, folder: Path) -> "StanceModel":
        folder = Path(folder)
        meta = json.loads((folder / "stance_model.json").read_text(encoding="utf-8"))
        schema = LabelSchema.model_validate(yaml.safe_load((folder / "schema.yaml").read_text(encoding="utf-8")))
        family = family_class(meta["family"])
        classifiers = {task: family.load(folder / "tasks" / task) for task in meta["tasks"]}
        return cls(schema, meta["family"], classifiers, meta["temperatures"], meta.get("provenance"))
