"""The `stance` command line. It only parses arguments and calls stage cores."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from pipeline.config import ConfigError, load_params
from pipeline.console import configure as configure_console
from pipeline.console import console, mlflow_notices_quiet, progress_line

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="Stance and framing classification for news text.")


@app.callback()
def _root(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="also show the libraries' logs and "
                                                                        "warnings (MLflow, transformers, torch)")] = False,
          ) -> None:
    """Stance and framing classification for news text."""
    configure_console(verbose)


@app.command()
def ingest(
    files: Annotated[Optional[list[Path]], typer.Argument(help="new pages or tables to add to the raw corpus first")] = None,
) -> None:
    """Paragraphs from every page (.txt .md .html) and table (.jsonl .csv .parquet: one row, one paragraph)
    under the raw folder -> data/paragraphs.parquet; prints what each file kept and dropped, and why."""
    from pipeline import ingest as ingest_stage

    try:
        added, frame, report = ingest_stage.run(files or [])
    except ConfigError as err:
        _fail(err)
    for line in ingest_stage.describe_drops(report):
        console.print(line, highlight=False, markup=False)
    console.print(f"added {len(added)} file(s); {len(frame)} paragraphs from {len(report)} files "
                  f"({int(frame['on_topic'].sum())} on-topic) -> {load_params().ingest.paragraphs}")


def _fail(err: Exception) -> None:
    console.print(f"[red]error:[/red] {err}")
    raise typer.Exit(2)


@app.command()
def dataset() -> None:
    """Validate the label files and build the Hugging Face dataset and its card."""
    from pipeline import dataset as dataset_stage
    from pipeline.labels import LabelFileError

    try:
        summary = dataset_stage.run()
    except (ConfigError, LabelFileError) as err:
        _fail(err)
    counts = "; ".join(f"{t}: {c}" for t, c in summary["class_counts"].items())
    console.print(f"{summary['paragraphs']} labelled paragraphs ({counts}) -> {load_params().dataset.out_dir}")


@app.command()
def train(
    family: Annotated[str, typer.Option(help="model family: a key of `models` in params.yaml")] = "tfidf_lr",
    log_mlflow: Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="log the run to MLflow")] = True,
    no_cv: Annotated[bool, typer.Option("--no-cv", help="skip cross-validation: fit the final model only "
                                                        "(as evaluate.n_splits: 0); no CV estimate")] = False,
) -> None:
    """Cross-validate a model family (grouped by evaluate.group_by), fit it on all labels, save it and log the run."""
    from pipeline import train as train_stage

    try:
        params, schema, frame = train_stage.load_inputs(family)
        plan, notes = train_stage.fold_plan(frame, schema, params, cv=not no_cv)
    except ConfigError as err:
        _fail(err)
    for note in notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
    with progress_line(f"cross-validating {family}",
                       train_stage.cv_steps(frame, schema, family, params, plan)) as advance:
        result, run = train_stage.run(frame, schema, family, params, advance, cv=not no_cv, log_mlflow=log_mlflow)
    console.print(f"{family}: macro-F1 {train_stage.describe(result, schema)}")
    if run:
        console.print(f"logged MLflow run {run['run_id']}")


@app.command()
def register() -> None:
    """Register the best trained family; move the champion alias only if it beats the current one."""
    from pipeline import register as register_stage

    try:
        with mlflow_notices_quiet():
            decision, without_cv = register_stage.run()
    except (ConfigError, ValueError) as err:
        _fail(err)
    for family in without_cv:
        console.print(f"[yellow]note:[/yellow] {family} has no CV estimate (trained with n_splits: 0 or --no-cv); "
                      "it is not compared or registered")
    console.print(decision["reason"])


@app.command()
def behaviour(
    model: Annotated[Optional[Path], typer.Option(help="a saved model folder (default: the champion's models/<family>)")] = None,
) -> None:
    """Run the CheckList-style suites (params labels.behaviour) on a model; print pass rates, write metrics/behaviour.json."""
    from pipeline import behaviour as behaviour_stage
    from pipeline.schema import load_schema

    try:
        report, path = behaviour_stage.run_stage(model, load_params(), load_schema())
    except ConfigError as err:
        _fail(err)
    from rich.console import Console

    Console().print(behaviour_stage.rich_table(report))  # the report itself goes to stdout
    console.print(f"-> {path}")


# --- sub-commands owned by other modules register here (one line each) ---
from pipeline.scoring.cli import score; app.command("score")(score)  # noqa: E402,E702
from pipeline.annotate.cli import annotate_app, labels_app; app.add_typer(annotate_app, name="annotate"); app.add_typer(labels_app, name="labels")  # noqa: E402,E702
from pipeline.experiments.cli import exp_app; app.add_typer(exp_app, name="exp")  # noqa: E402,E702


def main() -> None:
    app()


if __name__ == "__main__":
    main()
