"""The `stance` command line. It only parses arguments and calls stage cores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from pipeline import ingest as ingest_stage
from pipeline.config import ConfigError, load_params, resolve

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Stance and framing classification for news text.")

console = Console(stderr=True)


@app.callback()
def _root() -> None:
    """Stance and framing classification for news text."""


@app.command()
def ingest(
    files: Annotated[Optional[list[Path]], typer.Argument(help="new pages or tables to add to the raw corpus first")] = None,
) -> None:
    """Paragraphs from every page (.txt .md .html) and table (.jsonl .csv .parquet: one row, one paragraph)
    under the raw folder -> data/paragraphs.parquet; prints what each file kept and dropped, and why."""
    from pipeline.schema import load_schema

    params = load_params().ingest
    raw_dir = resolve(params.raw_dir)
    try:
        topic_groups = load_schema().topic_groups
        added = ingest_stage.add_documents(files or [], raw_dir)
        frame, report = ingest_stage.ingest_folder(raw_dir, params, topic_groups)
    except ConfigError as err:
        _fail(err)
    ingest_stage.write_paragraphs(frame, resolve(params.paragraphs), report)
    for line in ingest_stage.describe_drops(report):
        console.print(line, highlight=False, markup=False)
    console.print(f"added {len(added)} file(s); {len(frame)} paragraphs from {len(report)} files "
                  f"({int(frame['on_topic'].sum())} on-topic) -> {params.paragraphs}")


def _fail(err: Exception) -> None:
    console.print(f"[red]error:[/red] {err}")
    raise typer.Exit(2)


@app.command()
def dataset() -> None:
    """Validate the label files and build the Hugging Face dataset and its card."""
    from pipeline import dataset as dataset_stage
    from pipeline.labels import LabelFileError
    from pipeline.schema import load_schema

    params = load_params()
    try:
        schema = load_schema()
        paragraphs = ingest_stage.load_paragraphs(resolve(params.ingest.paragraphs))
        frame, summary = dataset_stage.build(paragraphs, resolve(params.labels.annotations),
                                             resolve(params.labels.adjudications), schema)
        summary["ingest"] = ingest_stage.load_drop_report(resolve(params.ingest.paragraphs))
    except (ConfigError, LabelFileError) as err:
        _fail(err)
    dataset_stage.write(frame, summary, schema, resolve(params.dataset.out_dir), resolve(params.dataset.card))
    counts = "; ".join(f"{t}: {c}" for t, c in summary["class_counts"].items())
    console.print(f"{summary['paragraphs']} labelled paragraphs ({counts}) -> {params.dataset.out_dir}")


@app.command()
def train(
    family: Annotated[str, typer.Option(help="model family: a key of `models` in params.yaml")] = "tfidf_lr",
    log_mlflow: Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="log the run to MLflow")] = True,
    no_cv: Annotated[bool, typer.Option("--no-cv", help="skip cross-validation: fit the final model only "
                                                        "(as evaluate.n_splits: 0); no CV estimate")] = False,
) -> None:
    """Cross-validate a model family (grouped by evaluate.group_by), fit it on all labels, save it and log the run."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from pipeline import train as train_stage
    from pipeline.config import set_seed
    from pipeline.dataset import load_frame
    from pipeline.schema import load_schema

    params = load_params()
    if family not in params.models:
        _fail(ConfigError(f"params.yaml: field 'models': no family '{family}' (have: {', '.join(params.models)})"))
    set_seed(params.seed)
    schema = load_schema()
    frame = load_frame(resolve(params.dataset.out_dir))
    try:
        plan, notes = train_stage.fold_plan(frame, schema, params, cv=not no_cv)
    except ConfigError as err:
        _fail(err)
    for note in notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task(f"cross-validating {family}", total=train_stage.cv_steps(frame, schema, family, params, plan))
        result = train_stage.evaluate_and_fit(frame, schema, family, params, lambda: progress.advance(bar),
                                              cv=not no_cv)
    root = resolve(".")
    model_dir = root / "models" / family
    train_stage.write_outputs(result, family, model_dir, root / "metrics" / "train", root / "plots")
    summary = ", ".join(f"{t} {result.metrics[t]['macro_f1']:.3f} [{result.metrics[t]['macro_f1_ci_low']:.3f}, "
                        f"{result.metrics[t]['macro_f1_ci_high']:.3f}]" if result.metrics[t]["cv"]
                        else f"{t} no CV estimate" for t in schema.task_names)
    console.print(f"{family}: macro-F1 {summary}")
    if log_mlflow:
        run = train_stage.log_run(result, family, params, model_dir, root / "plots", frame["text"].tolist())
        (model_dir / "mlflow_run.json").write_text(json.dumps(run, indent=2) + "\n", encoding="utf-8")
        console.print(f"logged MLflow run {run['run_id']}")


@app.command()
def register() -> None:
    """Register the best trained family; move the champion alias only if it beats the current one."""
    from pipeline import behaviour as behaviour_stage
    from pipeline import register as register_stage
    from pipeline.schema import load_schema

    params = load_params()
    root = resolve(".")
    candidates, runs = {}, {}
    for family in params.families:
        metrics_file = root / "metrics" / "train" / f"{family}.json"
        run_file = root / "models" / family / "mlflow_run.json"
        if metrics_file.exists() and run_file.exists():
            candidates[family] = json.loads(metrics_file.read_text(encoding="utf-8"))
            runs[family] = json.loads(run_file.read_text(encoding="utf-8"))
    metric = params.registry.metric
    without_cv = sorted(f for f, m in candidates.items() if m.get(metric) is None)
    for family in without_cv:
        console.print(f"[yellow]note:[/yellow] {family} has no CV estimate (trained with n_splits: 0 or --no-cv); "
                      "it is not compared or registered")
        candidates.pop(family)
    try:
        best = register_stage.select_best(candidates, metric)
    except ValueError as err:
        _fail(err)
    summary = json.loads((resolve(params.dataset.card).parent / "dataset_summary.json").read_text(encoding="utf-8"))
    evaluation = register_stage.evaluation_key(summary, params.evaluate.model_dump())
    decision = register_stage.register(runs[best], metric, params.registry.model_name, params.registry.alias,
                                       candidates, evaluation)
    schema = load_schema()
    try:
        behaviour = behaviour_stage.for_card(root, decision["champion_family"], params, schema)
    except ConfigError as err:
        _fail(err)
    card = register_stage.model_card(decision, candidates, schema, summary, params.evaluate.model_dump(),
                                     without_cv, behaviour)
    register_stage.write_outputs(decision, card, root / "metrics" / "champion.json", root / "MODEL_CARD.md")
    console.print(decision["reason"])


@app.command()
def behaviour(
    model: Annotated[Optional[Path], typer.Option(help="a saved model folder (default: the champion's models/<family>)")] = None,
) -> None:
    """Run the CheckList-style suites (params labels.behaviour) on a model; print pass rates, write metrics/behaviour.json."""
    from pipeline import behaviour as behaviour_stage
    from pipeline.schema import load_schema

    params = load_params()
    root = resolve(".")
    try:
        report = behaviour_stage.measure(model or behaviour_stage.champion_dir(root), params, load_schema())
    except ConfigError as err:
        _fail(err)
    behaviour_stage.write_report(report, root / "metrics" / behaviour_stage.REPORT_FILE)
    Console().print(behaviour_stage.rich_table(report))
    console.print(f"-> metrics/{behaviour_stage.REPORT_FILE}")


# --- sub-commands owned by other modules register here (one line each) ---
from pipeline.scoring.cli import score; app.command("score")(score)  # noqa: E402,E702
from pipeline.annotate.cli import annotate_app, labels_app; app.add_typer(annotate_app, name="annotate"); app.add_typer(labels_app, name="labels")  # noqa: E402,E702
from pipeline.experiments.cli import exp_app; app.add_typer(exp_app, name="exp")  # noqa: E402,E702


def main() -> None:
    app()


if __name__ == "__main__":
    main()
