"""Stage `train@<family>`: cross-validate one model family, fit it on all labels, log it to MLflow.

The pure core (`evaluate_and_fit`) takes the labelled frame and returns the fitted,
calibrated StanceModel with its metrics; `run` is the I/O edge that writes the model
folder, metrics and plot files for DVC, and one MLflow run with full provenance
(timings go to MLflow only: they differ on every run, and DVC's metrics must not).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pandas as pd

from pipeline.config import OUT_OF_FOLD_FILE, ConfigError, Params, load_params, resolve, set_seed
from pipeline.evaluate import (confusion_rows, cross_validate, headline, learning_curve, n_folds, out_of_fold_frame,
                               summarize, transfer)
from pipeline.ingest import origins
from pipeline.precision import choose_precision, distinct_texts
from pipeline.model import StanceModel
from pipeline.models import build_classifier
from pipeline.schema import LabelSchema
from pipeline.stage_times import timed


@dataclass
class TrainResult:
    model: StanceModel
    metrics: dict[str, Any]  # task -> evaluation summary, plus "macro_f1" (mean over tasks)
    timings: dict[str, float]  # seconds and speed: logged to MLflow only, so DVC's metrics repeat exactly
    confusion: dict[str, list[dict]]  # task -> rows for DVC's confusion plot
    learning_curves: dict[str, list[dict]]  # task -> (fraction, train_labels, macro_f1) points
    out_of_fold: pd.DataFrame  # per (paragraph, task): gold, out-of-fold prediction and scores


SPEED_SAMPLE = 200  # paragraphs scored to measure speed for the model card
PRECISION_SAMPLE = 400  # labelled paragraphs on which a reduced scoring precision must agree with fp32


def precision_sample(frame: pd.DataFrame, test_on: list[str]) -> list[str]:
    """The fixed paragraphs a scoring precision is checked on: every real (`test_on`) paragraph, then others
    evenly spread over the corpus up to PRECISION_SAMPLE. A few dozen real paragraphs alone cannot tell 99%
    agreement from 100% (one flip in 80 is 98.8%)."""
    real = testable_rows(frame, test_on)
    texts = frame.loc[real, "text"].tolist()[:PRECISION_SAMPLE]
    others = frame.loc[~real, "text"].tolist()
    room = PRECISION_SAMPLE - len(texts)
    if room > 0 and others:
        texts += [others[i] for i in np.linspace(0, len(others) - 1, min(room, len(others))).astype(int)]
    return texts


def testable_rows(rows: pd.DataFrame, test_on: list[str]) -> np.ndarray:
    """Which rows may form test folds: real text (`evaluate.test_on` origins). A dataset with no such
    rows (or no origin column) is tested on every row."""
    testable = origins(rows).isin(test_on).to_numpy()
    return testable if testable.any() else np.ones(len(rows), dtype=bool)


def group_values(frame: pd.DataFrame, group_by: str) -> pd.Series:
    """The CV groups: the `evaluate.group_by` column of the dataset (`id` is the paragraph id)."""
    column = "paragraph_id" if group_by == "id" else group_by
    if column not in frame.columns:
        raise ConfigError(f"params.yaml: field 'evaluate.group_by': no column '{group_by}' in the dataset "
                          f"(have: id, {', '.join(c for c in frame.columns if c != 'paragraph_id')})")
    return frame[column].astype(str)


def fold_plan(frame: pd.DataFrame, schema: LabelSchema, params: Params, cv: bool = True) -> tuple[dict[str, int], list[str]]:
    """Folds per task (0: no CV for that task) and a note for each task that gets fewer than asked.
    Folds are drawn from the test-eligible (real) rows' groups. A task whose labels hold fewer than two
    classes cannot be trained: a ConfigError naming it."""
    for task in schema.task_names:
        found = frame.loc[frame[task] >= 0, task].nunique()
        if found < 2:
            raise ConfigError(f"task '{task}': gold labels of {found} class(es) in the dataset; a model needs "
                              "at least two (label more paragraphs for it, or remove the task from the schema)")
    e = params.evaluate
    asked = e.n_splits if cv else 0
    if asked == 0:
        return {task: 0 for task in schema.task_names}, [
            "No cross-validation (n_splits: 0 or --no-cv): the final model was fitted on every label and "
            "no CV estimate exists."]
    groups = group_values(frame, e.group_by)
    plan: dict[str, int] = {}
    notes: list[str] = []
    for task in schema.task_names:
        rows = frame[frame[task] >= 0]
        testable = testable_rows(rows, e.test_on)
        task_groups = groups[rows.index].to_numpy()[testable]
        n_groups = len(np.unique(task_groups))
        plan[task] = n_folds(rows[task].to_numpy()[testable], task_groups, asked)
        if n_groups < 2:
            plan[task] = 0
            notes.append(f"{task}: {n_groups} group(s) by '{e.group_by}' among its test-eligible paragraphs, so "
                         f"no cross-validation is possible: no CV estimate for this task "
                         f"(set evaluate.group_by to a finer column, e.g. id).")
        elif n_groups < asked:
            notes.append(f"{task}: only {n_groups} groups by '{e.group_by}' for n_splits={asked}: "
                         f"cross-validated with {n_groups} folds instead.")
    return plan, notes


def cv_steps(frame: pd.DataFrame, schema: LabelSchema, family: str, params: Params, plan: dict[str, int]) -> int:
    """How many cross-validation fits evaluation makes (for the progress bar)."""
    e = params.evaluate
    curve = len(e.learning_curve) if family in e.learning_curve_families else 0
    return sum(folds * (e.repeats(family) + curve) for folds in plan.values())


def evaluate_and_fit(frame: pd.DataFrame, schema: LabelSchema, family: str, params: Params,
                     on_fold: Callable[[], None] | None = None, cv: bool = True) -> TrainResult:
    """Per task (where the fold plan allows): the headline CV on real text (authored text always in
    training), the transfer score (authored only -> real), optionally a learning curve; then a final fit
    on every label with CV-fitted temperatures. Without CV a task's metrics hold only its label count."""
    hyperparams = params.models.get(family, {})
    e = params.evaluate
    plan, notes = fold_plan(frame, schema, params, cv)
    groups = group_values(frame, e.group_by) if any(plan.values()) else None
    metrics: dict[str, Any] = {}
    confusion: dict[str, list[dict]] = {}
    curves: dict[str, list[dict]] = {}
    data: dict[str, tuple[list[str], list[str]]] = {}
    out_of_fold = []
    timings: dict[str, float] = {}
    start = time.perf_counter()
    for task in schema.task_names:
        rows = frame[frame[task] >= 0]
        classes = schema.labels(task)
        y, texts = rows[task].to_numpy(), rows["text"].tolist()
        data[task] = (texts, [classes[i] for i in y])
        if not plan[task]:
            metrics[task] = {"cv": False, "n": int(len(y)), "temperature_used": False}
            continue
        task_groups = groups[rows.index].to_numpy()
        testable = testable_rows(rows, e.test_on)

        estimator = build_classifier(family, hyperparams, classes, params.seed)  # each fit: a fresh clone of it
        result = cross_validate(estimator, texts, y, task_groups, classes, plan[task], e.repeats(family), params.seed,
                                testable, on_fold)
        metrics[task] = {"cv": True, "folds": plan[task],
                         **summarize(result, e.n_bootstrap, e.confidence, e.calibration_bins, params.seed)}
        transferred = transfer(estimator, texts, y, task_groups, classes, testable)
        if transferred is not None:
            metrics[task]["transfer"] = headline(transferred, e.n_bootstrap, e.confidence, params.seed)
        if family in e.learning_curve_families and not testable.all():
            curves[task] = learning_curve(estimator, texts, y, task_groups, classes, testable, e.learning_curve,
                                          plan[task], params.seed, on_fold)
            metrics[task]["learning_curve"] = curves[task]
        tested = rows[testable]
        confusion[task] = confusion_rows(result, tested["paragraph_id"].tolist())
        out_of_fold.append(out_of_fold_frame(result, tested, task, metrics[task]["temperature_used"]))
    timings["evaluate_seconds"] = time.perf_counter() - start

    start = time.perf_counter()
    model = StanceModel.fit(schema, family, hyperparams, params.seed, data)
    timings["train_seconds"] = time.perf_counter() - start
    model.temperatures = {task: metrics[task]["temperature_fitted"] if metrics[task]["temperature_used"] else 1.0
                          for task in schema.task_names}
    model.provenance = training_provenance(frame, schema)

    chosen = choose_precision(model, precision_sample(frame, e.test_on), hyperparams.get("precision", "auto"))
    if chosen:
        speeds = chosen.pop("per_s")  # timings vary run to run: MLflow only, not the model or DVC metrics
        timings.update({f"score_paragraphs_per_second_{p}": v for p, v in speeds.items()})
        model.inference = metrics["inference"] = chosen
        score_per_s = speeds[chosen["precision"]]  # timed while choosing: no second pass
    else:
        timing_texts = distinct_texts(frame["text"].tolist(), SPEED_SAMPLE)
        start = time.perf_counter()
        model.predict_proba(timing_texts)
        score_per_s = len(timing_texts) / max(time.perf_counter() - start, 1e-9)

    estimated = [metrics[t]["macro_f1"] for t in schema.task_names if metrics[t]["cv"]]
    # the mean over tasks exists only when every task has a CV estimate
    metrics["macro_f1"] = round(float(np.mean(estimated)), 4) if len(estimated) == len(schema.task_names) else None
    if all("transfer" in metrics[t] for t in schema.task_names):
        metrics["transfer_macro_f1"] = round(float(np.mean([metrics[t]["transfer"]["macro_f1"]
                                                            for t in schema.task_names])), 4)
    metrics["evaluation_notes"] = notes
    timings = {k: round(v, 2) for k, v in timings.items()}
    timings["score_paragraphs_per_second"] = round(score_per_s, 1)
    empty = pd.DataFrame(columns=["paragraph_id", "source", "task", "gold", "predicted", "confidence", "scores",
                                  "text"])
    return TrainResult(model=model, metrics=metrics, timings=timings, confusion=confusion, learning_curves=curves,
                       out_of_fold=pd.concat(out_of_fold, ignore_index=True) if out_of_fold else empty)


def training_provenance(frame: pd.DataFrame, schema: LabelSchema) -> dict[str, Any]:
    """What the model was trained on, by origin: saved with the model and carried into scoring outputs."""
    return {"paragraphs_by_origin": {str(o): int(n) for o, n in origins(frame).value_counts().sort_index().items()},
            "labels_by_task": {task: int((frame[task] >= 0).sum()) for task in schema.task_names}}


def load_inputs(family: str) -> tuple[Params, LabelSchema, pd.DataFrame]:
    """params.yaml (the family must be one of its `models`), the schema and the labelled dataset, seeded."""
    from pipeline.dataset import load_frame
    from pipeline.schema import load_schema

    params = load_params()
    if family not in params.models:
        raise ConfigError(f"params.yaml: field 'models': no family '{family}' (have: {', '.join(params.models)})")
    set_seed(params.seed)
    return params, load_schema(), load_frame(resolve(params.dataset.out_dir))


def run(frame: pd.DataFrame, schema: LabelSchema, family: str, params: Params, on_fold: Callable[[], None],
        cv: bool = True, log_mlflow: bool = True) -> tuple[TrainResult, dict[str, Any] | None]:
    """The stage: evaluate and fit, write the model folder, metrics and plots, and (optionally) log the
    MLflow run, whose id the model folder keeps for `register`. Returns the result and the run record."""
    with timed(f"train@{family}"):
        result = evaluate_and_fit(frame, schema, family, params, on_fold, cv)
        write_outputs(result, family, params)
        if not log_mlflow:
            return result, None
        record = log_run(result, family, params, frame["text"].tolist())
        resolve(params.train.run_file(family)).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return result, record


def describe(result: TrainResult, schema: LabelSchema) -> str:
    """One line: each task's macro-F1 with its interval."""
    m = result.metrics
    return ", ".join(f"{t} {m[t]['macro_f1']:.3f} [{m[t]['macro_f1_ci_low']:.3f}, {m[t]['macro_f1_ci_high']:.3f}]"
                     if m[t]["cv"] else f"{t} no CV estimate" for t in schema.task_names)


def write_outputs(result: TrainResult, family: str, params: Params) -> None:
    """Model folder, `metrics/<family>.json` (dvc metrics) and per-task plot files (dvc plots), where
    `train` in params.yaml (and so dvc.yaml) puts them."""
    model_dir, plots = resolve(params.train.model_dir(family)), resolve(params.train.plots(family))
    metrics_file = resolve(params.train.metrics_file(family))
    result.model.save(model_dir)
    # scores as JSON text: each task has its own classes, which one Parquet struct column cannot hold
    result.out_of_fold.assign(scores=result.out_of_fold["scores"].map(json.dumps)).to_parquet(
        model_dir / OUT_OF_FOLD_FILE, index=False)
    metrics_file.parent.mkdir(parents=True, exist_ok=True)
    scalar = {task: {k: v for k, v in m.items() if k not in ("confusion_matrix", "reliability")}
              if isinstance(m, dict) else m for task, m in result.metrics.items()}
    metrics_file.write_text(json.dumps(scalar, indent=2) + "\n", encoding="utf-8")
    for kind in ("confusion", "reliability"):
        (plots / kind).mkdir(parents=True, exist_ok=True)
    for task, points in result.learning_curves.items():
        (plots / "learning_curve").mkdir(parents=True, exist_ok=True)
        pd.DataFrame(points).to_csv(plots / "learning_curve" / f"{task}.csv", index=False)
    for task, rows in result.confusion.items():  # tasks without CV have no plots
        pd.DataFrame(rows).to_csv(plots / "confusion" / f"{task}.csv", index=False)
        pd.DataFrame(result.metrics[task]["reliability"]).to_csv(plots / "reliability" / f"{task}.csv", index=False)


def log_run(result: TrainResult, family: str, params: Params, sample_texts: list[str]) -> dict[str, Any]:
    """One MLflow run: params, metrics, plots, git commit, data hashes and the pyfunc model."""
    from pipeline.pyfunc import log_stance_model
    from pipeline.tracking import configure, data_versions, git_commit

    mlflow = configure()
    with mlflow.start_run(run_name=f"train-{family}") as run:
        mlflow.log_dict(result.model.provenance, "training_provenance.json")
        mlflow.set_tags({"family": family, "git_commit": git_commit(), "stage": "train", **data_versions()})
        mlflow.log_params({"family": family, "seed": params.seed,
                           **{f"evaluate.{k}": v for k, v in params.evaluate.model_dump().items()},
                           **{f"model.{k}": v for k, v in params.models.get(family, {}).items()}})
        flat = {**result.timings, **{k: result.metrics[k] for k in ("macro_f1", "transfer_macro_f1")
                                     if result.metrics.get(k) is not None}}
        for task in result.model.schema.task_names:
            m = result.metrics[task]
            if not m["cv"]:
                continue
            for key in ("macro_f1", "macro_f1_ci_low", "macro_f1_ci_high", "accuracy", "ece_uncalibrated",
                        "ece_calibrated", "ece", "temperature_fitted"):
                flat[f"{task}.{key}"] = m[key]
            for name, scores in m["per_class"].items():
                flat[f"{task}.{name}.f1"] = scores["f1"]
            if "transfer" in m:
                flat[f"{task}.transfer_macro_f1"] = m["transfer"]["macro_f1"]
        mlflow.log_metrics(flat)
        mlflow.log_artifacts(str(resolve(params.train.plots(family))), artifact_path="plots")
        info = log_stance_model(resolve(params.train.model_dir(family)), sample_texts)
    return {"run_id": run.info.run_id, "model_uri": info.model_uri, "family": family,
            "macro_f1": result.metrics["macro_f1"]}
