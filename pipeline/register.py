"""Stage `register`: pick the best family, register it, move `champion` only if it wins.

Selection is automatic and explained: the candidate with the highest cross-validated
metric (mean macro-F1 over tasks) is registered as a new model version; the alias
moves to it only when it beats the current champion's recorded metric. The reason
is stored on the version, on the training run, and in metrics/champion.json.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

from pipeline.behaviour import for_card, pass_rates
from pipeline import stage_times
from pipeline.config import Params, load_params, resolve
from pipeline.precision import REFERENCE
from pipeline.schema import LabelSchema


def select_best(candidates: dict[str, dict[str, Any]], metric: str) -> str:
    """The family with the highest metric; ties go to the faster-training family."""
    if not candidates:
        raise ValueError("no trained model to choose from: run the train stages first")
    return max(candidates, key=lambda f: (candidates[f][metric], -candidates[f].get("train_seconds", 0.0)))


def gather(params: Params) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The trained families (metrics file and MLflow run record both written by `train`): their metrics,
    with the run's timings added (MLflow keeps them, the DVC metrics do not), and their run records."""
    candidates, runs = {}, {}
    for family in params.families:
        metrics_file, run_file = resolve(params.train.metrics_file(family)), resolve(params.train.run_file(family))
        if metrics_file.exists() and run_file.exists():
            candidates[family] = json.loads(metrics_file.read_text(encoding="utf-8"))
            runs[family] = json.loads(run_file.read_text(encoding="utf-8"))
    return {family: {**m, **run_timings(runs[family]["run_id"])} for family, m in candidates.items()}, runs


def run_timings(run_id: str) -> dict[str, float]:
    """evaluate/train seconds and scoring speed as the training run logged them."""
    from mlflow import MlflowClient

    from pipeline.tracking import configure

    configure()
    logged = MlflowClient().get_run(run_id).data.metrics
    return {k: logged[k] for k in ("evaluate_seconds", "train_seconds", "score_paragraphs_per_second") if k in logged}


def run() -> tuple[dict[str, Any], list[str]]:
    """The stage: compare the trained families, register the best, write the decision and the model card.
    Returns the decision and the families left out for want of a CV estimate."""
    from pipeline.schema import load_schema

    params = load_params()
    candidates, runs = gather(params)
    metric = params.registry.metric
    without_cv = sorted(f for f, m in candidates.items() if m.get(metric) is None)
    for family in without_cv:
        candidates.pop(family)
    best = select_best(candidates, metric)
    summary = json.loads(resolve(params.dataset.summary).read_text(encoding="utf-8"))
    evaluation = evaluation_key(summary, params.evaluate.model_dump())
    decision = register(runs[best], metric, params.registry.model_name, params.registry.alias, candidates,
                        evaluation)
    schema = load_schema()
    shown = decision["champion_family"] if decision["champion_family"] in candidates else best
    card = model_card(decision, candidates, schema, summary, params, without_cv,
                      for_card(resolve("."), shown, params, schema), pipeline_stage_times(params))
    write_outputs(decision, card, resolve(params.registry.champion), resolve(params.registry.card))
    return decision, without_cv


def pipeline_stage_times(params: Params) -> dict[str, dict]:
    """The recorded times of the stages before `register`, in pipeline order (stages no longer in it left out)."""
    recorded = stage_times.recorded()
    stages = ["ingest", "dataset", *(f"train@{family}" for family in params.families)]
    return {stage: recorded[stage] for stage in stages if stage in recorded}


def evaluation_key(dataset_summary: dict[str, Any], evaluate_params: dict[str, Any]) -> str:
    """Scores are comparable only when measured on the same labels with the same protocol: this key
    (a hash of both) is stored on every registered version."""
    blob = json.dumps({"dataset": dataset_summary, "evaluate": evaluate_params}, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def decide(best_family: str, best_score: float, champion_score: float | None, metric: str,
           comparable: bool = True) -> tuple[bool, str]:
    """Whether the alias moves, and why, in one sentence."""
    if champion_score is None:
        return True, f"{best_family} is the first champion ({metric}={best_score:.4f})"
    if not comparable:
        return True, (f"{best_family} ({metric}={best_score:.4f}) replaces a champion measured on other labels or "
                      f"with another protocol ({champion_score:.4f} is not comparable)")
    if best_score > champion_score:
        return True, f"{best_family} {metric}={best_score:.4f} beats the current champion's {champion_score:.4f}"
    return False, (f"{best_family} {metric}={best_score:.4f} does not beat the current champion's "
                   f"{champion_score:.4f}; alias unchanged")


def register(best_run: dict[str, Any], metric: str, model_name: str, alias: str,
             candidates: dict[str, dict[str, Any]], evaluation: str) -> dict[str, Any]:
    """Register the best run's model and move the alias if it wins. Returns the decision record."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from pipeline.tracking import configure

    mlflow = configure()
    client = MlflowClient()
    try:
        current = client.get_model_version_by_alias(model_name, alias)
        champion_score = float(current.tags.get(metric)) if current.tags.get(metric) else None
        current_version, current_family = current.version, current.tags.get("family")
        comparable = current.tags.get("evaluation") == evaluation
    except MlflowException:
        champion_score, current_version, current_family, comparable = None, None, None, True

    score = float(best_run["macro_f1"])
    moves, reason = decide(best_run["family"], score, champion_score, metric, comparable)
    version = mlflow.register_model(best_run["model_uri"], model_name,
                                     tags={"family": best_run["family"], metric: str(score),
                                           "run_id": best_run["run_id"], "evaluation": evaluation})
    client.update_model_version(model_name, version.version, description=reason)
    if moves:
        client.set_registered_model_alias(model_name, alias, version.version)
    client.set_tag(best_run["run_id"], "selection_reason", reason)
    return {
        "model_name": model_name,
        "alias": alias,
        "registered_version": int(version.version),
        "champion_version": int(version.version) if moves else (int(current_version) if current_version else None),
        "champion_family": best_run["family"] if moves else current_family,
        "alias_moved": moves,
        "reason": reason,
        "best_family": best_run["family"],
        metric: score,
        "candidates": {f: c[metric] for f, c in candidates.items()},
    }


CARD_TEMPLATE = "model_card.md.j2"


def model_card(decision: dict[str, Any], candidates: dict[str, dict[str, Any]], schema: LabelSchema,
               dataset_summary: dict[str, Any], params: Params, without_cv: Sequence[str] = (),
               behaviour: dict[str, Any] | None = None, times: dict[str, dict] | None = None) -> str:
    """MODEL_CARD.md: every family on the headline metric with CIs and per-class support, the transfer
    score, learning curves, scoring precision, behavioural pass rates and how each number was measured.
    The wording is templates/model_card.md.j2; every figure comes from the metrics, the dataset summary
    or params.yaml, every task's wording from the schema."""
    origins = dataset_summary.get("by_origin", {})
    tested = [v for origin, v in origins.items() if origin in params.evaluate.test_on]
    scoring_precision = {f: m["inference"] for f, m in candidates.items() if m.get("inference")}
    return render(CARD_TEMPLATE, {
        "decision": decision, "candidates": candidates, "schema": schema, "summary": dataset_summary,
        "params": params, "without_cv": list(without_cv), "origins": origins,
        "tested_origins": {key: sum(v[key] for v in tested) for key in ("articles", "paragraphs")} if tested else None,
        "ranked": dict(sorted(candidates.items(), key=lambda kv: -kv[1]["macro_f1"])),
        "thin_classes": thin_classes(candidates, schema, params.registry.min_test_support),
        "curves": {f: m for f, m in candidates.items() if any("learning_curve" in m[t] for t in schema.task_names)},
        "scoring_precision": scoring_precision, "reference_precision": REFERENCE,
        "tried": list(dict.fromkeys(p for info in scoring_precision.values() for p in info["agreement"])),
        "behaviour": behaviour, "pass_rates": pass_rates(behaviour) if behaviour else None,
        "stage_times": times or {}, "stage_times_file": stage_times.STAGE_TIMES_FILE,
    })


def thin_classes(candidates: dict[str, dict[str, Any]], schema: LabelSchema, min_support: int) -> list[tuple]:
    """(task, class, support) of every class tested on fewer than `min_support` examples: its F1 is noise."""
    return sorted({(task, name, s["support"]) for m in candidates.values() for task in schema.task_names
                   for name, s in m[task]["per_class"].items() if s["support"] < min_support})


def render(template: str, context: dict[str, Any]) -> str:
    """A markdown template of pipeline/templates/, strict: a name missing from `context` is an error."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False)
    return env.get_template(template).render(context)


def write_outputs(decision: dict[str, Any], card: str, champion_json: Path, card_path: Path) -> None:
    champion_json.parent.mkdir(parents=True, exist_ok=True)
    champion_json.write_text(json.dumps(decision, indent=2) + "\n", encoding="utf-8")
    card_path.write_text(card, encoding="utf-8")
