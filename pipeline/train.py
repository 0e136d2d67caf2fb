"""Stage `train@<family>`: cross-validate one model family, fit it on all labels, log it to MLflow.

The pure core (`evaluate_and_fit`) takes the labelled frame and returns the fitted,
calibrated StanceModel with its metrics; `run` is the I/O edge that writes the model
folder, metrics and plot files for DVC, and one MLflow run with full provenance.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from pipeline.config import ConfigError, Params
from pipeline.evaluate import confusion_rows, cross_validate, n_folds, out_of_fold_frame, summarize
from pipeline.model import StanceModel
from pipeline.models import build_classifier, settle_quantization
from pipeline.schema import LabelSchema


@dataclass
class TrainResult:
    model: StanceModel
    metrics: dict[str, Any]  # task -> evaluation summary, plus "macro_f1" (mean over tasks) and timings
    confusion: dict[str, list[dict]]  # task -> rows for DVC's confusion plot
    out_of_fold: pd.DataFrame  # per (paragraph, task): gold, out-of-fold prediction and scores


OUT_OF_FOLD_FILE = "out_of_fold.parquet"  # inside the model folder


SPEED_SAMPLE = 200  # paragraphs scored to measure speed for the model card


def distinct_texts(texts: list[str], n: int) -> list[str]:
    """n texts with the corpus' lengths, each new (numbered), so no embedding memo can answer them."""
    return [f"{texts[i % len(texts)]} ({i})" for i in range(n)] if texts else []


def group_values(frame: pd.DataFrame, group_by: str) -> pd.Series:
    """The CV groups: the `evaluate.group_by` column of the dataset (`id` is the paragraph id)."""
    column = "paragraph_id" if group_by == "id" else group_by
    if column not in frame.columns:
        raise ConfigError(f"params.yaml: field 'evaluate.group_by': no column '{group_by}' in the dataset "
                          f"(have: id, {', '.join(c for c in frame.columns if c != 'paragraph_id')})")
    return frame[column].astype(str)


def fold_plan(frame: pd.DataFrame, schema: LabelSchema, params: Params, cv: bool = True) -> tuple[dict[str, int], list[str]]:
    """Folds per task (0: no CV for that task) and a note for each task that gets fewer than asked.
    A task whose labels hold fewer than two classes cannot be trained: a ConfigError naming it."""
    for task in schema.task_names:
        found = frame.loc[frame[task] >= 0, task].nunique()
        if found < 2:
            raise ConfigError(f"task '{task}': gold labels of {found} class(es) in the dataset; a model needs "
                              "at least two (label more paragraphs for it, or remove the task from the schema)")
    asked = params.evaluate.n_splits if cv else 0
    plan: dict[str, int] = {}
    notes: list[str] = []
    if asked == 0:
        return {task: 0 for task in schema.task_names}, [
            "No cross-validation (n_splits: 0 or --no-cv): the final model was fitted on every label and "
            "no CV estimate exists."]
    groups = group_values(frame, params.evaluate.group_by)
    for task in schema.task_names:
        labelled = frame[task] >= 0
        n_groups = groups[labelled].nunique()
        plan[task] = n_folds(frame.loc[labelled, task].to_numpy(), groups[labelled].to_numpy(), asked)
        if n_groups < 2:
            plan[task] = 0
            notes.append(f"{task}: {n_groups} group(s) by '{params.evaluate.group_by}' among its labelled "
                         f"paragraphs, so no cross-validation is possible: no CV estimate for this task "
                         f"(set evaluate.group_by to a finer column, e.g. id).")
        elif n_groups < asked:
            notes.append(f"{task}: only {n_groups} groups by '{params.evaluate.group_by}' for n_splits={asked}: "
                         f"cross-validated with {n_groups} folds instead.")
    return plan, notes


def cv_steps(plan: dict[str, int], params: Params) -> int:
    """How many fits cross-validation makes (for the progress bar)."""
    return sum(plan.values()) * params.evaluate.n_repeats


def evaluate_and_fit(frame: pd.DataFrame, schema: LabelSchema, family: str, params: Params,
                     on_fold: Callable[[], None] | None = None, cv: bool = True) -> TrainResult:
    """Grouped repeated CV per task (where the fold plan allows), then a final fit on every label with
    CV-fitted temperatures. Without CV a task's metrics hold only its label count and `cv: false`."""
    hyperparams = params.models.get(family, {})
    plan, notes = fold_plan(frame, schema, params, cv)
    groups = group_values(frame, params.evaluate.group_by) if any(plan.values()) else None
    metrics: dict[str, Any] = {}
    confusion: dict[str, list[dict]] = {}
    data: dict[str, tuple[list[str], list[str]]] = {}
    out_of_fold = []
    cv_start = time.perf_counter()
    for task in schema.task_names:
        rows = frame[frame[task] >= 0]
        classes = schema.labels(task)
        y = rows[task].to_numpy()
        data[task] = (rows["text"].tolist(), [classes[i] for i in y])
        if not plan[task]:
            metrics[task] = {"cv": False, "n": int(len(y)), "temperature_used": False}
            continue
        result = cross_validate(lambda: build_classifier(family, hyperparams, classes, params.seed),
                                rows["text"].tolist(), y, groups[rows.index].to_numpy(), classes,
                                plan[task], params.evaluate.n_repeats, params.seed, on_fold)
        e = params.evaluate
        metrics[task] = {"cv": True, "folds": plan[task],
                         **summarize(result, e.n_bootstrap, e.confidence, e.calibration_bins, params.seed)}
        confusion[task] = confusion_rows(result, rows["paragraph_id"].tolist())
        out_of_fold.append(out_of_fold_frame(result, rows, task, metrics[task]["temperature_used"]))
    cv_seconds = time.perf_counter() - cv_start

    fit_start = time.perf_counter()
    model = StanceModel.fit(schema, family, hyperparams, params.seed, data)
    fit_seconds = time.perf_counter() - fit_start
    model.temperatures = {task: metrics[task]["temperature_fitted"] if metrics[task]["temperature_used"] else 1.0
                          for task in schema.task_names}

    texts = frame["text"].tolist()
    int8 = settle_quantization(model.classifiers, texts)
    timing_texts = distinct_texts(texts, SPEED_SAMPLE)
    score_start = time.perf_counter()
    model.predict_proba(timing_texts)
    score_seconds = time.perf_counter() - score_start

    estimated = [metrics[t]["macro_f1"] for t in schema.task_names if metrics[t]["cv"]]
    # the mean over tasks exists only when every task has a CV estimate
    metrics["macro_f1"] = round(float(np.mean(estimated)), 4) if len(estimated) == len(schema.task_names) else None
    metrics["evaluation_notes"] = notes
    metrics["cv_seconds"] = round(cv_seconds, 2)
    metrics["train_seconds"] = round(fit_seconds, 2)
    metrics["score_paragraphs_per_second"] = round(len(timing_texts) / max(score_seconds, 1e-9), 1)
    if int8:
        metrics["int8_agreement"] = int8
    return TrainResult(model=model, metrics=metrics, confusion=confusion,
                       out_of_fold=pd.concat(out_of_fold, ignore_index=True) if out_of_fold else pd.DataFrame(
                           columns=["paragraph_id", "source", "task", "gold", "predicted", "confidence", "scores",
                                    "text"]))


def write_outputs(result: TrainResult, family: str, model_dir: Path, metrics_dir: Path, plots_dir: Path) -> None:
    """Model folder, `metrics/<family>.json` (dvc metrics) and per-task plot files (dvc plots)."""
    result.model.save(model_dir)
    # scores as JSON text: each task has its own classes, which one Parquet struct column cannot hold
    result.out_of_fold.assign(scores=result.out_of_fold["scores"].map(json.dumps)).to_parquet(
        model_dir / OUT_OF_FOLD_FILE, index=False)
    metrics_dir.mkdir(parents=True, exist_ok=True)
    scalar = {task: {k: v for k, v in m.items() if k not in ("confusion_matrix", "reliability")}
              if isinstance(m, dict) else m for task, m in result.metrics.items()}
    (metrics_dir / f"{family}.json").write_text(json.dumps(scalar, indent=2) + "\n", encoding="utf-8")
    for kind in ("confusion", "reliability"):
        (plots_dir / family / kind).mkdir(parents=True, exist_ok=True)
    for task, rows in result.confusion.items():  # tasks without CV have no plots
        pd.DataFrame(rows).to_csv(plots_dir / family / "confusion" / f"{task}.csv", index=False)
        pd.DataFrame(result.metrics[task]["reliability"]).to_csv(
            plots_dir / family / "reliability" / f"{task}.csv", index=False)


def log_run(result: TrainResult, family: str, params: Params, model_dir: Path, plots_dir: Path,
            sample_texts: list[str]) -> dict[str, str]:
    """One MLflow run: params, metrics, plots, git commit, data hashes and the pyfunc model."""
    from pipeline.pyfunc import log_stance_model
    from pipeline.tracking import configure, data_versions, git_commit

    mlflow = configure()
    with mlflow.start_run(run_name=f"train-{family}") as run:
        mlflow.set_tags({"family": family, "git_commit": git_commit(), "stage": "train", **data_versions()})
        mlflow.log_params({"family": family, "seed": params.seed,
                           **{f"evaluate.{k}": v for k, v in params.evaluate.model_dump().items()},
                           **{f"model.{k}": v for k, v in params.models.get(family, {}).items()}})
        flat = {"cv_seconds": result.metrics["cv_seconds"], "train_seconds": result.metrics["train_seconds"],
                "score_paragraphs_per_second": result.metrics["score_paragraphs_per_second"]}
        if result.metrics["macro_f1"] is not None:
            flat["macro_f1"] = result.metrics["macro_f1"]
        for task in result.model.schema.task_names:
            m = result.metrics[task]
            if not m["cv"]:
                continue
            for key in ("macro_f1", "macro_f1_ci_low", "macro_f1_ci_high", "accuracy", "ece_uncalibrated",
                        "ece_calibrated", "ece", "temperature_fitted"):
                flat[f"{task}.{key}"] = m[key]
            for name, scores in m["per_class"].items():
                flat[f"{task}.{name}.f1"] = scores["f1"]
        mlflow.log_metrics(flat)
        mlflow.log_artifacts(str(plots_dir / family), artifact_path="plots")
        info = log_stance_model(model_dir, sample_texts)
    return {"run_id": run.info.run_id, "model_uri": info.model_uri, "family": family,
            "macro_f1": result.metrics["macro_f1"]}
