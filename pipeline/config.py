"""Project paths and `params.yaml`, validated on load.

Every stage takes its knobs from here, so a typo in params.yaml fails fast with
the offending field named instead of silently falling back to a default.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class ConfigError(ValueError):
    """A configuration or input file is invalid; the message names file and field."""


class Strict(BaseModel):
    """A config section: unknown fields are errors, values are read-only."""
    model_config = ConfigDict(extra="forbid", frozen=True)


class IngestParams(Strict):
    raw_dir: str = "data/raw"
    paragraphs: str = "data/paragraphs.parquet"
    min_words: int = Field(12, ge=1, description="pages only: shorter blocks are never body paragraphs")
    authored_dir: str = Field("authored", description="pages under raw_dir/<this>/ were written by the team")

    @model_validator(mode="before")
    @classmethod
    def _topic_moved(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and "topic_groups" in raw:
            raise ValueError("'topic_groups' moved to the `topic:` block of labels/schema.yaml "
                             "(the domain's terms live beside its tasks)")
        return raw


class LabelsParams(Strict):
    schema_file: str = "labels/schema.yaml"
    annotations: str = "labels/annotations.jsonl"
    adjudications: str = "labels/adjudications.jsonl"
    behaviour: str = Field("labels/behaviour", description="folder of behavioural test suites (*.jsonl)")


class DatasetParams(Strict):
    out_dir: str = "data/dataset"
    card: str = "data/DATASET_CARD.md"
    summary: str = "data/dataset_summary.json"


MLFLOW_RUN_FILE = "mlflow_run.json"  # in a model folder: the MLflow run that logged it
OUT_OF_FOLD_FILE = "out_of_fold.parquet"  # in a model folder: the CV predictions behind the plots


class TrainParams(Strict):
    """Where `stance train --family F` writes; dvc.yaml declares the same keys as the stage's outputs."""
    models_dir: str = "models"
    metrics_dir: str = "metrics/train"
    plots_dir: str = "plots"

    def model_dir(self, family: str) -> Path:
        return Path(self.models_dir) / family

    def metrics_file(self, family: str) -> Path:
        return Path(self.metrics_dir) / f"{family}.json"

    def run_file(self, family: str) -> Path:
        return self.model_dir(family) / MLFLOW_RUN_FILE

    def plots(self, family: str) -> Path:
        return Path(self.plots_dir) / family


class EvaluateParams(Strict):
    n_splits: int = Field(5, ge=0, description="0: no cross-validation, fit the final model only")
    group_by: str = Field("article", min_length=1,
                          description="dataset column whose values CV keeps together: article, group, id, source")
    n_repeats: int = Field(3, ge=1)
    n_repeats_by_family: dict[str, int] = Field(
        default_factory=dict, description="fewer repeats for families whose every fit costs minutes")
    n_bootstrap: int = Field(1000, ge=100)
    confidence: float = Field(0.95, gt=0, lt=1)
    calibration_bins: int = Field(10, ge=2)
    test_on: list[str] = Field(["scraped"], min_length=1,
                               description="origins that form test folds; other text is always in training")
    learning_curve: list[float] = Field([0.0, 0.25, 0.5, 1.0], description="shares of the authored articles")
    learning_curve_families: list[str] = Field(default_factory=list, description="families that draw one")


    def repeats(self, family: str) -> int:
        return self.n_repeats_by_family.get(family, self.n_repeats)

    @model_validator(mode="after")
    def _no_single_fold(self) -> "EvaluateParams":
        if self.n_splits == 1:
            raise ValueError("n_splits must be 0 (no cross-validation) or at least 2")
        return self


class RegisterParams(Strict):
    model_name: str = "stance-classifier"
    alias: str = "champion"
    metric: str = "macro_f1"
    champion: str = Field("metrics/champion.json", description="the decision, as a DVC metric")
    card: str = "MODEL_CARD.md"
    min_test_support: int = Field(20, ge=1, description="the card warns of a class with fewer test examples: "
                                                         "its F1 is noise")


class MlflowParams(Strict):
    experiment: str = "stance"


class QueueParams(Strict):
    """How the annotation queue ranks paragraphs: score = uncertainty * u + disagreement * d + rarity * r,
    each component in [0, 1]."""
    uncertainty: float = Field(1.0, ge=0, description="weight of the current model's uncertainty")
    disagreement: float = Field(0.5, ge=0, description="weight of fast-model vs champion disagreement")
    rarity: float = Field(0.5, ge=0, description="weight of the boost for classes rare in the labels so far")
    method: str = Field("margin", pattern="^(margin|entropy)$", description="uncertainty: margin or entropy")
    retrain_every: int = Field(10, ge=0, description="refit the fast model after this many new labels; 0: never")


class AnnotateParams(Strict):
    """The app's fast model is embed_lr with the settings of `models.embed_lr`."""
    queue: QueueParams = QueueParams()


class Params(Strict):
    seed: int = 42
    ingest: IngestParams = IngestParams()
    labels: LabelsParams = LabelsParams()
    dataset: DatasetParams = DatasetParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    models: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="model family -> its hyperparameters (validated by the family)"
    )
    families: list[str] = Field(
        default_factory=list, description="the families `dvc repro` trains and `register` compares "
                                          "(default: every key of `models`)")
    registry: RegisterParams = RegisterParams()
    mlflow: MlflowParams = MlflowParams()
    annotate: AnnotateParams = AnnotateParams()

    @model_validator(mode="before")
    @classmethod
    def _families_default_to_models(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and not raw.get("families"):
            raw = {**raw, "families": list(raw.get("models") or {})}
        return raw

    @model_validator(mode="after")
    def _families_are_models(self) -> "Params":
        unknown = [f for f in self.families if f not in self.models]
        if unknown:
            raise ValueError(f"families {unknown} have no hyperparameters under `models` (have: {', '.join(self.models)})")
        return self


def project_root() -> Path:
    """The folder holding params.yaml: $STANCE_ROOT, else the nearest parent of the cwd."""
    if env := os.environ.get("STANCE_ROOT"):
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "params.yaml").exists():
            return folder
    return here


def resolve(path: str | Path) -> Path:
    """A params path relative to the project root, or an absolute path unchanged."""
    path = Path(path)
    return path if path.is_absolute() else project_root() / path


def load_yaml(path: str | Path, model: type[BaseModel], missing: str = "not found") -> Any:
    """Read a YAML file and validate it into `model`; every error is a ConfigError naming the file
    (and the field), so each config file of the project fails the same readable way."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: {missing}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from None
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{path}: {describe(err)}") from None


def load_params(path: str | Path | None = None) -> Params:
    """Read and validate params.yaml; errors name the file and the field."""
    return load_yaml(Path(path) if path else project_root() / "params.yaml", Params)


def describe(err: ValidationError) -> str:
    """A pydantic error as `field 'a.b': message; ...`."""
    return "; ".join(
        f"field '{'.'.join(str(p) for p in e['loc'])}': {e['msg']}" for e in err.errors()
    )


def validate_section(model: type[BaseModel], raw: dict[str, Any], where: str) -> Any:
    """Validate one free-form params section (e.g. a model family's hyperparameters)."""
    try:
        return model.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"params.yaml: {where}: {describe(err)}") from None


def set_seed(seed: int) -> None:
    """Fix every random generator a stage may touch, and ask torch for its deterministic kernels, so a
    re-run gives the same metrics and DVC sees unchanged outputs."""
    random.seed(seed)
    np.random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    try:
        import torch
    except ImportError:  # torch is optional for the sklearn-only path
        return
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
