"""`stance score`: argument parsing only; the work is in runner (local) and spark."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from pipeline.scoring.readers import UNITS, ReadOptions, UsageError
from pipeline.scoring.writers import FORMATS, ResumeMismatch

err = Console(stderr=True)


def _default_min_words() -> int:
    """Ingest's setting from params.yaml when run inside the project, so segmentation matches ingest."""
    from pipeline.config import ConfigError, load_params

    try:
        return load_params().ingest.min_words
    except ConfigError:
        return ReadOptions.min_words


def _load_model(model_uri: str | None):
    from pipeline.champion import load_champion

    if model_uri and ":" not in model_uri and not Path(model_uri).exists():
        raise FileNotFoundError(f"no such model folder: {model_uri}")
    return load_champion(model_uri)


def score(
    inputs: list[str] = typer.Argument(..., metavar="INPUT...",
                                       help="Files, folders (recursive), glob patterns, URL lists (.urls, or .txt of "
                                            "URLs) or http(s) URLs. Types: .txt .md .html .htm .jsonl .csv .parquet"),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (paragraphs, articles, report.html, "
                                                       "summary.json), or one .jsonl/.csv/.parquet file of paragraphs"),
    model: Optional[str] = typer.Option(None, "--model", help="MLflow model URI or saved model folder "
                                                              "[default: the registered champion]"),
    fmt: Optional[str] = typer.Option(None, "--format", help=f"Table format: {'|'.join(FORMATS)} [default: parquet]"),
    engine: str = typer.Option("local", "--engine", help="local | spark"),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run into the same --out"),
    batch_size: int = typer.Option(2048, "--batch-size", min=1, help="Paragraphs per scored and committed batch"),
    unit: str = typer.Option("paragraph", "--unit", help="Rows of .jsonl/.csv/.parquet: paragraph (scored as is) or "
                                                          "document (segmented like ingest). Text/HTML are documents."),
    id_col: str = typer.Option("id", "--id-col"),
    text_col: str = typer.Option("text", "--text-col"),
    source_col: str = typer.Option("source", "--source-col"),
    date_col: str = typer.Option("date", "--date-col"),
    url_col: str = typer.Option("url", "--url-col"),
    task_col: str = typer.Option("task", "--task-col", help="Column naming each row's task(s), comma-separated; "
                                                            "other tasks stay null. Missing or empty: every task"),
    tasks: Optional[str] = typer.Option(None, "--tasks", help="Score only these tasks (comma-separated), e.g. a,b"),
    min_words: Optional[int] = typer.Option(None, "--min-words", min=1,
                                            help="Segmentation threshold [default: ingest.min_words in params.yaml]"),
    top_k: int = typer.Option(3, "--top-k", min=1, help="Strongest paragraphs kept per article and class"),
    timeout: float = typer.Option(10.0, "--timeout", help="Per-request HTTP timeout (s) for URL inputs"),
    retries: int = typer.Option(2, "--retries", min=0, help="HTTP retries on timeouts, 429 and 5xx"),
    workers: Optional[int] = typer.Option(None, "--workers", min=1,
                                          help="Scoring processes [default: 1; torch models use all cores in-process, "
                                               "more can pay for scikit-learn models on many idle cores]"),
    master: str = typer.Option("local[*]", "--master", help="Spark master for --engine spark, e.g. spark://host:7077"),
) -> None:
    """Score articles or paragraphs with the stance model: per-paragraph labels, article stances, a report.

    Exit status: 0 all scored, 1 some input skipped (see summary), 2 usage error.
    """
    if unit not in UNITS:
        _usage(f"--unit must be one of {', '.join(UNITS)}")
    if engine not in ("local", "spark"):
        _usage("--engine must be local or spark")
    options = ReadOptions(unit=unit, id_col=id_col, text_col=text_col, source_col=source_col, date_col=date_col,
                          url_col=url_col, task_col=task_col,
                          tasks=tuple(t.strip() for t in (tasks or "").split(",") if t.strip()),
                          min_words=min_words or _default_min_words(), timeout=timeout,
                          retries=retries)
    try:
        if engine == "spark":
            if options.tasks:
                _usage("--tasks works with --engine local only")
            from pipeline.scoring.spark import run_spark_cli

            code = run_spark_cli(inputs, out, model, options, master, err)
            raise typer.Exit(code)
        from pipeline.scoring.runner import run_local

        try:
            loaded = _load_model(model)
        except Exception as error:  # no champion yet, bad URI, unreadable folder: all usage errors here
            _usage(f"cannot load model {model or 'champion'}: {error}")
        result = run_local(inputs, out, loaded, model or "champion", fmt, options, resume, batch_size, top_k, err,
                           workers)
    except (UsageError, ResumeMismatch) as error:
        _usage(str(error))
    summary = result.summary
    for problem in result.problems:
        where = problem.path + ("" if problem.line is None else f":{problem.line}")
        err.print(f"[yellow]skipped[/] {escape(where)}: {escape(problem.reason)}", highlight=False, soft_wrap=True)
    err.print(f"{summary['paragraphs']} paragraphs from {summary['documents']} documents -> {result.layout.out}"
              f" ({summary['paragraphs_per_s'] or 0:,.0f} paragraphs/s); {len(result.problems)} skipped",
              soft_wrap=True)
    raise typer.Exit(result.exit_code)


def _usage(message: str) -> None:
    err.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)
