"""StanceModel: one classifier per schema task, plus per-task probability calibration.

This is the unit that is trained, saved, logged to MLflow and scored with. Its folder
carries everything it needs (schema, family name, weights, temperatures), so a saved
model scores on a machine with no network and no project checkout.

`stance_model.json` lists the sha256 of every file the model wrote (schema.yaml and all of
tasks/); `load` refuses a folder whose files differ from that list, miss one, or add one.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import yaml

from pipeline.calibration import apply_temperature
from pipeline.models import build_classifier, family_class
from pipeline.models.base import StanceClassifier
from pipeline.schema import LabelSchema


MANIFEST_FILE = "stance_model.json"


class ModelIntegrityError(ValueError):
    """A model folder whose files do not match the sha256 manifest in its stance_model.json."""


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def model_files(folder: Path) -> list[str]:
    """The files `load` reads (relative, POSIX): schema.yaml and everything under tasks/ and encoders/ (the
    encoder the tasks share, stored once)."""
    folder = Path(folder)
    found = [p for sub in ("tasks", "encoders") for p in (folder / sub).rglob("*") if p.is_file() or p.is_symlink()]
    return sorted(["schema.yaml"] + [p.relative_to(folder).as_posix() for p in found])


def file_manifest(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every model file in `folder`."""
    return {name: _sha256(Path(folder) / name) for name in model_files(folder)}


def verify_files(folder: Path, manifest: dict[str, str] | None, against: str = MANIFEST_FILE) -> None:
    """Raise ModelIntegrityError unless the folder's model files are exactly those in `manifest`."""
    folder = Path(folder)
    if not isinstance(manifest, dict) or not manifest:
        raise ModelIntegrityError(f"{folder}: {against} has no sha256 file manifest; refusing to load a model "
                                  "whose files cannot be checked (re-train it with this version)")
    present = model_files(folder)
    problems = [f"{name}: not in the manifest" for name in present if name not in manifest]
    problems += [f"{name}: missing" for name in manifest if name not in present]
    for name in present:
        if name in manifest:
            if (folder / name).is_symlink():
                problems.append(f"{name}: is a symlink")
            elif _sha256(folder / name) != manifest[name]:
                problems.append(f"{name}: sha256 differs")
    if problems:
        raise ModelIntegrityError(f"{folder}: refusing to load the model, its files do not match the sha256 "
                                  f"manifest in {against}:\n  " + "\n  ".join(problems))


class StanceModel:
    def __init__(self, schema: LabelSchema, family: str, classifiers: dict[str, StanceClassifier],
                 temperatures: dict[str, float] | None = None, provenance: dict[str, Any] | None = None):
        self.schema = schema
        self.family = family
        self.classifiers = classifiers
        self.temperatures = temperatures or {task: 1.0 for task in classifiers}
        self.provenance = provenance or {}  # what it was trained on (paragraphs by origin, labels by task)
        self.inference: dict[str, Any] = {}  # the scoring precision and its agreement with fp32 (pipeline/precision.py)

    @classmethod
    def fit(cls, schema: LabelSchema, family: str, hyperparams: dict[str, Any], seed: int,
            data: dict[str, tuple[Sequence[str], Sequence[str]]]) -> "StanceModel":
        """Train one classifier per task on `data[task] = (texts, labels)`."""
        classifiers = {
            task: build_classifier(family, hyperparams, schema.labels(task), seed).fit(*data[task])
            for task in schema.task_names
        }
        return cls(schema, family, classifiers)

    def predict_proba(self, texts: Sequence[str] | pa.Array) -> dict[str, np.ndarray]:
        """Calibrated class probabilities per task, columns in schema class order. An Arrow string
        array goes as is to the families that declare `arrow_input` (no Python string per row)."""
        if all(clf.arrow_input for clf in self.classifiers.values()):
            texts = texts if isinstance(texts, pa.Array) else pa.array(list(texts), pa.string())
        else:
            texts = texts.to_pylist() if isinstance(texts, pa.Array) else list(texts)
        classifiers = list(self.classifiers.values())
        if all(clf.shares_lower_layers for clf in classifiers) and len({c.lower_key() for c in classifiers}) == 1:
            from pipeline.models.encoder import score_tasks  # one pass of the frozen layers for every task

            raw = score_tasks(self.classifiers, texts)
        else:
            raw = {task: clf.predict_proba(texts) for task, clf in self.classifiers.items()}
        return {task: apply_temperature(proba, self.temperatures.get(task, 1.0)) for task, proba in raw.items()}

    def set_precision(self, precision: str) -> None:
        """Score every task at `precision` (one of each classifier's `precisions`)."""
        for clf in self.classifiers.values():
            clf.set_precision(precision)

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
        for task, clf in self.classifiers.items():
            clf.save(folder / "tasks" / task)
        meta = {"family": self.family, "tasks": list(self.classifiers), "temperatures": self.temperatures,
                "provenance": self.provenance, "inference": self.inference, "files": file_manifest(folder)}
        (folder / MANIFEST_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path, expected_files: dict[str, str] | None = None) -> "StanceModel":
        """Load after checking every file against the folder's manifest, and against
        `expected_files` too when given (e.g. the manifest recorded in the MLflow run)."""
        folder = Path(folder)
        meta = json.loads((folder / MANIFEST_FILE).read_text(encoding="utf-8"))
        verify_files(folder, meta.get("files"))
        if expected_files is not None and expected_files != meta["files"]:
            raise ModelIntegrityError(f"{folder}: refusing to load the model, its sha256 manifest differs from "
                                      "the one recorded in its MLflow run")
        schema = LabelSchema.model_validate(yaml.safe_load((folder / "schema.yaml").read_text(encoding="utf-8")))
        family = family_class(meta["family"])
        classifiers = {task: family.load(folder / "tasks" / task) for task in meta["tasks"]}
        model = cls(schema, meta["family"], classifiers, meta["temperatures"], meta.get("provenance"))
        model.inference = meta.get("inference") or {}
        return model
