"""The local engine: read -> batch whole documents -> score -> commit a part -> assemble outputs.

Memory is bounded by one batch (plus the set of done document ids needed by --resume).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from pipeline.scoring import core, stream
from pipeline.scoring.workers import make_scorer, scoring_workers
from pipeline.scoring.readers import Document, Problem, ReadOptions, UsageError, count_items, discover, read_sources
from pipeline.scoring.report import ReportStats, render
from pipeline.scoring.writers import FORMATS, PartStore, article_writer, paragraph_writer

SINGLE_FILE_SUFFIXES = {f".{fmt}": fmt for fmt in FORMATS}


@dataclass
class Layout:
    """Where a run writes: a folder of tables + report, or one paragraph file."""
    out: Path
    fmt: str
    single_file: bool

    @classmethod
    def of(cls, out: Path, fmt: str | None) -> "Layout":
        out = Path(out)
        suffix_fmt = SINGLE_FILE_SUFFIXES.get(out.suffix.lower())
        if suffix_fmt and fmt and fmt != suffix_fmt:
            raise UsageError(f"--out {out} ends in {out.suffix} but --format is {fmt}")
        if fmt and fmt not in FORMATS:
            raise UsageError(f"--format must be one of {', '.join(FORMATS)}")
        return cls(out, suffix_fmt or fmt or "parquet", single_file=bool(suffix_fmt))

    @property
    def work(self) -> Path:
        return self.out.with_name(self.out.name + ".parts") if self.single_file else self.out / "_parts"

    @property
    def paragraphs(self) -> Path:
        return self.out if self.single_file else self.out / f"paragraphs.{self.fmt}"


@dataclass
class RunResult:
    summary: dict
    layout: Layout
    problems: list[Problem] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.problems else 0


def check_tasks(options: ReadOptions, schema) -> ReadOptions:
    """Options that know the model's tasks, with --tasks spelled as in the schema; an unknown name is a UsageError."""
    by_fold = {t.casefold(): t for t in schema.task_names}
    unknown = [t for t in options.tasks if t.casefold() not in by_fold]
    if unknown:
        raise UsageError(f"--tasks: unknown task(s) {', '.join(unknown)} (model tasks: {', '.join(schema.task_names)})")
    return replace(options, known_tasks=tuple(schema.task_names),
                   tasks=tuple(dict.fromkeys(by_fold[t.casefold()] for t in options.tasks)))


def run_local(inputs: list[str], out: Path, model, model_label: str, fmt: str | None = None,
              options: ReadOptions = ReadOptions(), resume: bool = False, batch_size: int = 2048,
              top_k: int = 3, console: Console | None = None, workers: int | None = None) -> RunResult:
    """Score every input with `model` into `out`; bad inputs are skipped and listed in the summary."""
    layout = Layout.of(out, fmt)
    options = check_tasks(options, model.schema)
    sources = discover(inputs)
    console = console or Console(stderr=True)
    # through JSON, so tuples compare equal to the lists a resumed run reads back
    settings = json.loads(json.dumps({"model": model_label, "inputs": [s.location for s in sources],
                                      **asdict(options)}))
    if stream.streamable(sources, layout.single_file, options, resume):
        return _run_stream(sources, layout, model, model_label, options, workers, console)
    store = PartStore(layout.work, model.schema, settings, resume)
    problems: list[Problem] = []
    started = time.perf_counter()
    scored_now = 0
    resumed_docs = len(store.done)
    scorer = make_scorer(model, workers)

    columns = (TextColumn("[bold]scoring"), BarColumn(), MofNCompleteColumn(), TextColumn("documents"),
               TextColumn("{task.fields[paragraphs]} paragraphs · {task.fields[rate]:,.0f}/s"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("score", total=count_items(sources, options), paragraphs=0, rate=0.0)
        pending: list[Document] = []
        pending_paragraphs = 0

        def flush() -> None:
            nonlocal pending, pending_paragraphs, scored_now
            if not pending:
                return
            paragraphs = core.score_paragraphs(scorer, core.paragraphs_frame(pending))
            articles = core.articles_frame(paragraphs, model.schema, top_k)
            store.write(paragraphs, articles, [d.doc_id for d in pending])
            scored_now += len(paragraphs)
            rate = scored_now / max(time.perf_counter() - started, 1e-9)
            progress.update(bar, advance=len(pending), paragraphs=store.done_paragraphs, rate=rate)
            pending, pending_paragraphs = [], 0

        try:
            for item in read_sources(sources, options):
                if isinstance(item, Document) and item.tasks is None:
                    item.tasks = options.tasks or None  # pages: the run's --tasks
                if isinstance(item, Problem):
                    problems.append(item)
                    progress.update(bar, advance=1)
                elif item.doc_id in store.done:
                    progress.update(bar, advance=1, paragraphs=store.done_paragraphs)
                else:
                    pending.append(item)
                    pending_paragraphs += len(item.paragraphs)
                    if pending_paragraphs >= batch_size:
                        flush()
            flush()
        finally:
            if scorer is not model:
                scorer.close()
        progress.update(bar, total=progress.tasks[0].completed)

    elapsed = time.perf_counter() - started
    summary = {
        "model": model_label,
        "model_family": model.family,
        "model_training": model.provenance,  # what the model learnt from, e.g. paragraphs by origin
        "inputs": [s.location for s in sources],
        "documents": len(store.done),
        "paragraphs": store.done_paragraphs,
        "resumed_documents": resumed_docs,
        "scored_paragraphs_this_run": scored_now,
        "elapsed_s": round(elapsed, 3),
        "paragraphs_per_s": round(scored_now / elapsed, 1) if elapsed else None,
        "skipped": [p.as_dict() for p in problems],
    }
    _assemble(store, layout, model.schema, summary)
    return RunResult(summary, layout, problems)


def _run_stream(sources, layout: Layout, model, model_label: str, options: ReadOptions, workers: int | None,
                console: Console) -> RunResult:
    """Paragraph tables into one Parquet file, batch by batch (see pipeline.scoring.stream)."""
    started = time.perf_counter()
    with console.status(f"scoring paragraph tables -> {layout.paragraphs}"):
        scored, problems = stream.stream_tables(sources, layout.paragraphs, layout.fmt, model, options,
                                                scoring_workers(workers))
    elapsed = time.perf_counter() - started
    summary = {
        "model": model_label, "model_family": model.family, "model_training": model.provenance,
        "inputs": [s.location for s in sources], "documents": scored, "paragraphs": scored,
        "resumed_documents": 0, "scored_paragraphs_this_run": scored, "elapsed_s": round(elapsed, 3),
        "paragraphs_per_s": round(scored / elapsed, 1) if elapsed else None,
        "skipped": [p.as_dict() for p in problems],
    }
    return RunResult(summary, layout, problems)


def _assemble(store: PartStore, layout: Layout, schema, summary: dict) -> None:
    """Stream the committed parts into the final files, then drop the work folder."""
    writer = paragraph_writer(layout.paragraphs, layout.fmt, schema)
    for frame in store.iter_parts("paragraphs"):
        writer.write(frame)
    writer.close()
    if not layout.single_file:
        stats = ReportStats(schema)
        articles_path = layout.out / f"articles.{layout.fmt}"
        writer = article_writer(articles_path, layout.fmt, schema)
        for paragraphs, articles in zip(store.iter_parts("paragraphs"), store.iter_parts("articles")):
            writer.write(articles)
            stats.update(paragraphs, articles)
        writer.close()
        summary["articles"] = stats.articles
        summary["outputs"] = {"paragraphs": str(layout.paragraphs), "articles": str(articles_path),
                              "report": str(layout.out / "report.html"), "summary": str(layout.out / "summary.json")}
        (layout.out / "report.html").write_text(render(stats, summary), encoding="utf-8")
        (layout.out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False), encoding="utf-8")
    shutil.rmtree(store.folder)
