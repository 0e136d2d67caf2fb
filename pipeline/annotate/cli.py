"""`stance annotate` (the labelling app) and `stance labels` (import/export and label quality).

Thin: parse options, call the cores in this package, print.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pipeline.annotate.formats import FORMATS
from pipeline.annotate.project import Project
from pipeline.config import ConfigError, EvaluateParams
from pipeline.labels import Adjudication

console = Console()
err_console = Console(stderr=True)

annotate_app = typer.Typer(help="The browser labelling app (default: serve).", add_completion=False)
labels_app = typer.Typer(help="Label files: import/export, agreement, conflicts, adjudication, suspicious labels.",
                         no_args_is_help=True, add_completion=False)

Host = Annotated[str, typer.Option(help="interface to bind; keep 127.0.0.1 unless behind an authenticating proxy")]
Port = Annotated[int, typer.Option(help="TCP port")]
RandomShare = Annotated[float, typer.Option(help="share of paragraphs picked uniformly at random (unbiased eval)")]
DoubleShare = Annotated[float, typer.Option(help="share of paragraphs sent for a second annotator's opinion")]
PerParagraph = Annotated[int, typer.Option(help="stop asking for more opinions on a paragraph at this many annotators")]
Uncertainty = Annotated[str | None, typer.Option(help="margin or entropy (default: annotate.queue.method)")]
RetrainEvery = Annotated[int | None, typer.Option(help="refit the fast model after this many new labels; 0: never "
                                                       "(default: annotate.queue.retrain_every)")]
Model = Annotated[str | None, typer.Option(help="model folder or MLflow URI instead of the registered champion")]


def _fail(err: Exception) -> None:
    err_console.print(f"[red]error:[/red] {err}")
    raise typer.Exit(2)


@annotate_app.callback(invoke_without_command=True)
def annotate(ctx: typer.Context, host: Host = "127.0.0.1", port: Port = 8765, random_share: RandomShare = 0.2,
             double_share: DoubleShare = 0.1, annotators_per_paragraph: PerParagraph = 2,
             uncertainty: Uncertainty = None, retrain_every: RetrainEvery = None, model: Model = None) -> None:
    """Start the labelling app (the same as `stance annotate serve`)."""
    if ctx.invoked_subcommand is None:
        serve(host, port, random_share, double_share, annotators_per_paragraph, uncertainty, retrain_every, model)
        return
    given = {name: value for name, value in ctx.params.items()
             if ctx.get_parameter_source(name).name not in ("DEFAULT", "DEFAULT_MAP")}
    if given and ctx.invoked_subcommand != "serve":
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise typer.BadParameter(f"{flags} belong(s) to `serve`, not to `{ctx.invoked_subcommand}`", ctx=ctx)
    ctx.default_map = {**(ctx.default_map or {}), "serve": given}  # `serve` takes them, unless it repeats them


@annotate_app.command()
def serve(host: Host = "127.0.0.1", port: Port = 8765, random_share: RandomShare = 0.2,
          double_share: DoubleShare = 0.1, annotators_per_paragraph: PerParagraph = 2,
          uncertainty: Uncertainty = None, retrain_every: RetrainEvery = None, model: Model = None) -> None:
    """Start the labelling app; a background job refits the fast model (embed_lr) as labels arrive."""
    import uvicorn

    from pipeline.annotate.learner import FastModel, LearningLoop
    from pipeline.annotate.queue import QueueOptions
    from pipeline.annotate.server import create_app
    from pipeline.config import QueueParams

    try:
        project = Project.open()
        options = QueueOptions(random_share=random_share, double_share=double_share,
                               annotators_per_paragraph=annotators_per_paragraph, seed=project.params.seed)
        overrides = {k: v for k, v in (("method", uncertainty), ("retrain_every", retrain_every)) if v is not None}
        queue = QueueParams.model_validate({**project.params.annotate.queue.model_dump(), **overrides})
        fast = FastModel(project.params.models.get("embed_lr", {}), project.params.seed)
    except (ValueError, ConfigError) as err:
        _fail(err)
    loop = LearningLoop(project, queue, fast, model, err_console)
    app = create_app(project, options, loop)
    err_console.print(f"[bold]stance annotate[/bold] on http://{host}:{port}/  (Ctrl+C to stop)")
    uvicorn.run(app, host=host, port=port, log_level="warning")


@annotate_app.command("add-annotator")
def add_annotator(name: Annotated[str, typer.Argument(help="annotator name as it will appear in label files")]) -> None:
    """Create an annotator (or issue a new token for one) and print the token once."""
    try:
        token = Project.open().store.add_annotator(name)
    except (ValueError, ConfigError) as err:
        _fail(err)
    err_console.print(f"annotator [bold]{name}[/bold]: give them this token (it is not stored and cannot be shown again)")
    print(token)


Format = Annotated[str, typer.Option("--format", "-f", help=f"one of: {', '.join(FORMATS)}")]


@labels_app.command("export")
def export(fmt: Format, out: Annotated[Path, typer.Option(help="file to write")], model: Model = None) -> None:
    """Write all labels in another tool's format (Label Studio tasks carry the champion's predictions)."""
    from pipeline.annotate.formats import export_labels
    from pipeline.annotate.learner import champion_predictor

    try:
        project = Project.open()
        labels = project.annotations()
        paragraphs = project.paragraphs()
    except (ValueError, ConfigError) as err:
        _fail(err)
    records = {pid: {"text": str(r.text), "source": str(r.source), "title": str(r.title)}
               for pid, r in paragraphs.iterrows()}
    predictions = None
    if fmt == "label-studio" and len(paragraphs) and (predict := champion_predictor(err_console, model)):
        predictions = _predictions(project, paragraphs, predict)
    try:
        text = export_labels(fmt, labels, records, project.schema, predictions)
    except ValueError as err:
        _fail(err)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    err_console.print(f"{len(labels)} labels -> {out} ({fmt}"
                      f"{', with champion pre-annotations' if predictions else ''})")


def _predictions(project: Project, paragraphs, predict) -> dict:
    proba = predict(list(paragraphs["text"]))
    return {pid: {task: dict(zip(project.schema.labels(task), map(float, proba[task][i]))) for task in proba}
            for i, pid in enumerate(paragraphs.index)}


@labels_app.command("import")
def import_(fmt: Format, file: Annotated[Path, typer.Argument(help="file exported by the other tool")],
            annotator: Annotated[str | None, typer.Option(help="annotator for records that name none "
                                                                 "(e.g. a CSV without an annotator column)")] = None,
            ) -> None:
    """Add labels from another tool's export to the label store and annotations.jsonl.

    Records are matched to paragraphs by id (the project's paragraph id, or your own `id` kept by
    `stance ingest` from a table), else by exact text; class names match the schema case-insensitively.
    Records that match no paragraph are listed with their line and left out (exit status 1)."""
    from pipeline.annotate.formats import ParagraphIndex, import_labels

    try:
        project = Project.open()
        try:
            content = file.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError as err:
            raise ConfigError(f"{file}: not UTF-8 text (byte {err.start}): {err.reason}") from None
        known = project.paragraphs()
        index = ParagraphIndex(known.index, zip(known.index, known["text"])) if len(known) else None
        result = import_labels(fmt, content, str(file), project.schema, index, annotator)
        project.import_label_file()
        count = project.store.save_many(result.labels)
    except FileNotFoundError:
        _fail(ValueError(f"{file}: not found"))
    except (ValueError, ConfigError) as err:  # LabelFileError is a ValueError listing every problem
        _fail(err)
    for note in result.notes:
        err_console.print(f"[yellow]note:[/yellow] {note}", highlight=False, markup=False)
    for line in result.unmatched:
        err_console.print(f"unmatched {line}", highlight=False, markup=False)
    err_console.print(f"imported {count} labels from {file} -> {project.store.annotations_path}"
                      + (f"; {len(result.unmatched)} record(s) matched no paragraph and were left out"
                         if result.unmatched else ""), highlight=False)
    if result.unmatched:
        raise typer.Exit(1)


@labels_app.command()
def agreement(model: Model = None,
              human_only: Annotated[bool, typer.Option(help="skip model-human agreement")] = False) -> None:
    """Per task: Krippendorff's alpha, pairwise Cohen's kappa and annotator confusion matrices; then, apart,
    model-human agreement of the champion (or --model) and how often shown suggestions were accepted."""
    from pipeline.annotate.quality import confusions
    from pipeline.labels import agreement as agreement_report

    try:
        project = Project.open()
        annotations = project.annotations()
    except (ValueError, ConfigError) as err:
        _fail(err)
    report = agreement_report(annotations, project.schema)
    table = Table(title="Inter-annotator agreement")
    for column in ("task", "items (2+ annotators)", "% agreement", "Krippendorff alpha", "pair", "n", "Cohen kappa"):
        table.add_column(column)
    for task, stats in report.items():
        pairs = stats["pairwise"] or [{"annotators": ["-"], "n": "", "cohen_kappa": ""}]
        for i, values in enumerate(pairs):
            head = [task, str(stats["items_multiply_annotated"]), str(stats["percent_agreement"]),
                    str(stats["krippendorff_alpha"])] if i == 0 else ["", "", "", ""]
            table.add_row(*head, " & ".join(values["annotators"]), str(values["n"]), str(values["cohen_kappa"]))
    console.print(table)
    for task, pairs in confusions(annotations, project.schema).items():
        classes = project.schema.labels(task)
        for (first, second), matrix in pairs.items():
            grid = Table(title=f"{task}: rows {first}, columns {second}")
            grid.add_column("")
            for name in classes:
                grid.add_column(name, justify="right")
            for name, row in zip(classes, matrix):
                grid.add_row(name, *map(str, row))
            console.print(grid)
    if not human_only:
        _model_agreement(project, annotations, model)


def _model_agreement(project: Project, annotations, model: str | None) -> None:
    """The champion's predictions on the labelled paragraphs against every human label (not against gold:
    people and model are compared the same way people are compared with each other)."""
    from pipeline.annotate.learner import champion_predictor
    from pipeline.labels import model_agreement

    paragraphs = project.paragraphs()
    ids = sorted({a.paragraph_id for a in annotations} & set(paragraphs.index))
    predicted = {}
    if ids and (predict := champion_predictor(err_console, model)):
        for task, proba in predict(list(paragraphs.loc[ids, "text"])).items():
            classes = project.schema.labels(task)
            predicted.update({(pid, task): classes[int(i)] for pid, i in zip(ids, proba.argmax(axis=1))})
    table = Table(title=f"Model-human agreement ({model or 'champion'}{'' if predicted else ': no predictions'})")
    for column in ("task", "human labels", "% agreement", "Cohen kappa", "suggestions shown", "accepted"):
        table.add_column(column)
    table.caption = ("labels the model was trained on make its agreement optimistic; accepted suggestions "
                     "compare each label with a model that had not seen it")
    for task, stats in model_agreement(annotations, predicted, project.schema).items():
        table.add_row(task, str(stats["n"]), str(stats["percent_agreement"]), str(stats["cohen_kappa"]),
                      str(stats["suggestions_shown"]), str(stats["suggestions_accepted"]))
    console.print(table)


@labels_app.command("conflicts")
def conflicts_() -> None:
    """Items where annotators disagree; unadjudicated ones (left out of training) first."""
    from pipeline.annotate.quality import list_conflicts

    try:
        project = Project.open()
        rows = list_conflicts(project.annotations(), project.adjudications())
    except (ValueError, ConfigError) as err:
        _fail(err)
    table = Table(title=f"{len(rows)} conflicting item(s)")
    for column in ("paragraph_id", "task", "votes", "adjudicated"):
        table.add_column(column)
    for row in rows:
        decided = f"{row.adjudication.label} by {row.adjudication.adjudicator}" if row.adjudication else "no"
        table.add_row(row.paragraph_id, row.task, ", ".join(f"{a}={lab}" for a, lab in row.votes.items()), decided)
    console.print(table)


@labels_app.command()
def adjudicate(paragraph_id: str, task: str, label: str,
               by: Annotated[str, typer.Option("--by", help="who decides")],
               note: Annotated[str, typer.Option(help="why")] = "") -> None:
    """Record the final label of one item in adjudications.jsonl (replacing an earlier decision)."""
    from pipeline.annotate.quality import add_adjudication, write_adjudications

    try:
        project = Project.open()
        decision = Adjudication(paragraph_id=paragraph_id, task=task, label=label, adjudicator=by, note=note)
        updated = add_adjudication(project.adjudications(), project.annotations(), project.schema, decision)
    except (ValueError, ConfigError) as err:
        _fail(err)
    write_adjudications(project.adjudications_path, updated, project.store.lock)
    err_console.print(f"{paragraph_id} {task} = {label} (by {by}) -> {project.adjudications_path}")


@labels_app.command()
def suspicious(family: Annotated[str, typer.Option(help="model family for out-of-fold probabilities")] = "tfidf_lr",
               limit: Annotated[int, typer.Option(help="show at most this many")] = 50) -> None:
    """Likely label errors: cleanlab on out-of-fold probabilities (folds grouped by article)."""
    from rich.progress import Progress

    from pipeline.annotate.quality import suspicious_labels

    try:
        project = Project.open()
        annotations, adjudications = project.annotations(), project.adjudications()
        paragraphs = project.paragraphs()
    except (ValueError, ConfigError) as err:
        _fail(err)
    params = project.params
    with Progress(console=err_console, transient=True) as progress:
        bar = progress.add_task("cross-validating per task", total=len(project.schema.task_names))
        try:
            rows = suspicious_labels(annotations, adjudications, paragraphs, project.schema, family,
                                     params.models.get(family, {}), params.seed,
                                     params.evaluate.n_splits or EvaluateParams().n_splits,  # 0 = no CV for training only
                                     advance=lambda: progress.advance(bar))
        except (ValueError, ConfigError) as err:
            _fail(err)
    table = Table(title=f"{len(rows)} suspicious label(s), most suspicious first")
    for column in ("paragraph_id", "task", "label", "suggested", "p(label)", "annotators"):
        table.add_column(column, min_width=16 if column == "paragraph_id" else None)
    table.add_column("text", max_width=60, no_wrap=True, overflow="ellipsis")
    for row in rows.head(limit).itertuples():
        table.add_row(row.paragraph_id, row.task, row.label, row.suggested, f"{row.label_probability:.3f}",
                      row.annotators, row.text[:160])
    console.print(table)
