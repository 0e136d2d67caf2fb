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
from typing import Any

from pipeline.behaviour import card_section, for_card
from pipeline.config import Params, load_params, resolve
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
    card = model_card(decision, candidates, schema, summary, params.evaluate.model_dump(), without_cv,
                      for_card(resolve("."), shown, params, schema))
    write_outputs(decision, card, resolve(params.registry.champion), resolve(params.registry.card))
    return decision, without_cv


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


MIN_TEST_SUPPORT = 20  # below this many test examples a class's F1 is noise


def _score(m: dict[str, Any]) -> str:
    return f"{m['macro_f1']:.3f} [{m['macro_f1_ci_low']:.3f}, {m['macro_f1_ci_high']:.3f}]"


def _support(m: dict[str, Any]) -> str:
    return ", ".join(f"{name} {s['support']}" for name, s in m["per_class"].items())


def model_card(decision: dict[str, Any], candidates: dict[str, dict[str, Any]], schema: LabelSchema,
               dataset_summary: dict[str, Any], evaluate_params: dict[str, Any],
               without_cv: list[str] = (), behaviour: dict[str, Any] | None = None) -> str:
    """MODEL_CARD.md: every family on the headline metric with CIs and per-class support, the transfer
    score, learning curves, timings, and how each number was measured (all read from the metrics)."""
    e = evaluate_params
    conf = int(e["confidence"] * 100)
    tested = ", ".join(e["test_on"])
    origins = dataset_summary.get("by_origin", {})
    lines = [
        "# Model card: stance classifier",
        "",
        f"Registered model `{decision['model_name']}`; alias `{decision['alias']}` -> version "
        f"{decision['champion_version']} ({decision['champion_family']}). Latest selection: {decision['reason']}.",
        "",
        "Generated by the DVC stage `register` (`stance register`) from `metrics/train/*.json` and, for timings, "
        "each family's MLflow training run; do not edit by hand.",
        "",
        "## Tasks",
        "",
    ]
    for task, definition in schema.tasks.items():
        lines.append(f"- **{task}**: {definition.question} Classes: {', '.join(definition.labels)}.")
    lines += [
        "",
        "## How the numbers were measured",
        "",
        f"- Data: {dataset_summary['paragraphs']} labelled paragraphs from {dataset_summary['articles']} articles"
        + (" (" + "; ".join(f"{o}: {v['paragraphs']} paragraphs, {v['articles']} articles" for o, v in origins.items())
           + ")" if origins else "")
        + ". Class counts and inter-annotator agreement: data/DATASET_CARD.md.",
        f"- **Headline (selects the champion)**: macro-F1 on `{tested}` paragraphs only, by {e['n_repeats']} x "
        + "".join(f"({f}: {n} x) " for f, n in e["n_repeats_by_family"].items())
        + f"repeated stratified {e['n_splits']}-fold cross-validation **grouped by {e['group_by']}**, where only "
        f"`{tested}` groups form test folds and every other article (text the team wrote) is always in training.",
        *[f"- Note ({family}): {note}" for family, m in candidates.items() for note in m.get("evaluation_notes", [])],
        *[f"- {family}: trained without cross-validation (n_splits: 0 or --no-cv), so no CV estimate exists; "
          "it is not compared or registered." for family in without_cv],
        f"- **Transfer**: train on the other origins only, test once on every `{tested}` paragraph.",
        "- Only the families listed under `families` in params.yaml are trained by `dvc repro` and compared here; "
        "families left out for their cost, and the choice of encoder and hyperparameters, are measured in "
        "experiments/results/model_selection.md (with the commands that reproduce them).",
        f"- Every macro-F1 has a {conf}% percentile bootstrap interval over **articles** "
        f"({e['n_bootstrap']} resamples), and per-class support (test examples) is shown beside it.",
        f"- ECE: expected calibration error of the top-class probability ({e['calibration_bins']} bins) on the "
        "headline's out-of-fold probabilities, raw and after temperature scaling cross-fitted on the other folds; "
        "the model ships the temperature (marked *) only where it lowers that out-of-sample ECE.",
        "- Times: `evaluate s` is every cross-validation fit (headline, transfer, learning curve), `train s` the "
        "final fit on all labels; paragraphs/s is `StanceModel.predict_proba`, all tasks, one process, on "
        "distinct paragraphs with the corpus' lengths, on the machine that ran `dvc repro`.",
        "",
        "## Comparison (headline metric)",
        "",
        f"| model | task | headline macro-F1 [{conf}% CI] | transfer macro-F1 [{conf}% CI] | test support | "
        "ECE raw -> scaled | evaluate s | train s | paragraphs/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    warnings = []
    for family, m in sorted(candidates.items(), key=lambda kv: -kv[1]["macro_f1"]):
        marker = " (champion)" if family == decision["champion_family"] else ""
        for task in schema.task_names:
            t = m[task]
            transfer = _score(t["transfer"]) if "transfer" in t else "—"
            lines.append(f"| {family}{marker} | {task} | {_score(t)} | {transfer} | {_support(t)} | "
                         f"{t['ece_uncalibrated']:.3f} -> {t['ece_calibrated']:.3f}{'*' if t['temperature_used'] else ''}"
                         f" | {m.get('evaluate_seconds', 0):.0f} | {m['train_seconds']:.1f} | "
                         f"{m['score_paragraphs_per_second']:.0f} |")
            warnings += [(task, name, s["support"]) for name, s in t["per_class"].items()
                         if s["support"] < MIN_TEST_SUPPORT]
        transfer = f"**{m['transfer_macro_f1']:.3f}**" if "transfer_macro_f1" in m else ""
        lines.append(f"| {family}{marker} | **mean** | **{m['macro_f1']:.3f}** | {transfer} | | | | | |")
    for task, name, n in sorted(set(warnings)):
        lines += ["", f"> **Warning:** `{task}` / `{name}` has only {n} test examples (fewer than "
                      f"{MIN_TEST_SUPPORT}): its F1, and so the macro-F1 of `{task}`, is unreliable."]
    lines += ["", "## Per-class scores (headline, out-of-fold, all repeats pooled)", ""]
    for family, m in candidates.items():
        for task in schema.task_names:
            lines.append(f"**{family} / {task}**: " + ", ".join(
                f"{name} P={s['precision']:.2f} R={s['recall']:.2f} F1={s['f1']:.2f} (n={s['support']})"
                for name, s in m[task]["per_class"].items()))
            lines.append("")
    curves = {f: m for f, m in candidates.items() if any("learning_curve" in m[t] for t in schema.task_names)}
    if curves:
        lines += ["## Learning curve", "",
                  "Headline macro-F1 (one repeat) as a growing share of the authored articles is added to training "
                  "(`dvc plots show` draws it from plots/<family>/learning_curve/). A curve still rising at the right "
                  "end says more labels still pay.", "",
                  "| model | task | " + " | ".join(f"{p['fraction']:.0%} ({p['train_labels']} labels)"
                                                   for p in next(iter(curves.values()))[schema.task_names[0]]
                                                   ["learning_curve"]) + " |",
                  "|---|---|" + "---|" * len(e["learning_curve"])]
        for family, m in curves.items():
            for task in schema.task_names:
                lines.append(f"| {family} | {task} | " + " | ".join(f"{p['macro_f1']:.3f}"
                                                                   for p in m[task]["learning_curve"]) + " |")
        lines.append("")
    lines += precision_section(candidates)
    lines += card_section(behaviour) if behaviour else []
    lines += [
        "## Intended use and limits",
        "",
        "- Paragraph-level classification for the tasks above on English news and commentary; article-level "
        "stances are aggregates of paragraph scores.",
        f"- The headline is measured on few real articles ({tested}): the intervals are wide, and a class with "
        "little test support (warnings above) is unreliable.",
        "- Most training text was written by the team in the voices of many outlets (see data/DATASET_CARD.md); "
        "outlets, years and topics beyond them are out of distribution.",
        "",
    ]
    return "\n".join(lines)


def precision_section(candidates: dict[str, dict]) -> list[str]:
    """How each transformer family scores: the precision chosen at training and its label agreement
    with fp32 on real paragraphs (pipeline/precision.py); scikit-learn families have no variants."""
    chosen = {f: m["inference"] for f, m in candidates.items() if m.get("inference")}
    if not chosen:
        return []
    tried = list(dict.fromkeys(p for info in chosen.values() for p in info["agreement"]))
    lines = ["## Scoring precision", "",
             "Each family scores at the fastest precision whose labels agree with fp32 on at least "
             f"{next(iter(chosen.values()))['min_agreement']:.0%} of the real paragraphs, in every task (the lowest "
             "task's share is shown; - = not tried). Cross-validation always runs at fp32.", "",
             "| model | scores at | real paragraphs | " + " | ".join(f"agreement {p}" for p in tried) + " |",
             "|---|---|---|" + "---|" * len(tried)]
    for family, info in chosen.items():
        shares = [f"{info['agreement'][p]:.1%}" if p in info["agreement"] else "-" for p in tried]
        lines.append(f"| {family} | {info['precision']} | {info['paragraphs']} | " + " | ".join(shares) + " |")
    return lines + [""]


def write_outputs(decision: dict[str, Any], card: str, champion_json: Path, card_path: Path) -> None:
    champion_json.parent.mkdir(parents=True, exist_ok=True)
    champion_json.write_text(json.dumps(decision, indent=2) + "\n", encoding="utf-8")
    card_path.write_text(card, encoding="utf-8")
