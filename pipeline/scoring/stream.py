"""Paragraph tables scored as Arrow record batches: Parquet/JSONL in, one paragraph file out.

The general runner builds a Document per row plus article tables and a report. A table of paragraphs
scored into one paragraph file needs none of that, so here rows stay Arrow columns end to end: read a
batch, check it, score its text column (in worker processes for single-threaded models), write it.
Memory is a few batches plus the ids seen so far (to report duplicates), however long the table.
Rows, columns, checks and messages are those of the general runner.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.scoring.core import TASKS_COLUMN, paragraph_columns, proba_column
from pipeline.scoring.readers import Problem, ReadOptions, Source, _decode, parquet_batches, row_tasks, text_or_none
from pipeline.scoring.writers import arrow_schema, paragraph_writer

STREAMABLE_SUFFIXES = {".parquet", ".jsonl"}
BATCH_ROWS = 8192


def streamable(sources: list[Source], single_file: bool, options: ReadOptions, resume: bool) -> bool:
    """True when every input is a Parquet/JSONL paragraph table and the output one paragraph file."""
    return (single_file and not resume and options.unit == "paragraph" and bool(sources)
            and all(s.kind == "table" and Path(s.location).suffix.lower() in STREAMABLE_SUFFIXES for s in sources))


@dataclass
class Batch:
    """Checked rows of one input batch, as Arrow columns, and the rows that were skipped."""
    columns: dict[str, pa.Array]  # id, text, source, date, url; TASKS_COLUMN: per task a bool mask
    problems: list[Problem]


def _as_text(column: pa.Array | None, length: int) -> pa.Array:
    if column is None:
        return pa.nulls(length, pa.string())
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return column.cast(pa.string())
    return pa.array([text_or_none(v) for v in column.to_pylist()], pa.string())


def _read_parquet(path: Path, options: ReadOptions) -> Iterator[tuple[pa.Table, np.ndarray] | Problem]:
    number = 0
    for batch in parquet_batches(path, options, batch_size=BATCH_ROWS):
        if isinstance(batch, Problem):
            yield batch
            return
        yield pa.Table.from_batches([batch]), np.arange(number + 1, number + 1 + batch.num_rows)
        number += batch.num_rows


def _read_jsonl(path: Path, options: ReadOptions) -> Iterator[tuple[pa.Table, np.ndarray] | Problem]:
    wanted = list(dict.fromkeys((options.id_col, options.text_col, options.source_col, options.date_col,
                                 options.url_col, options.task_col)))
    rows: list[dict] = []
    numbers: list[int] = []

    def flush() -> tuple[pa.Table, np.ndarray]:
        return pa.table({c: _column([row.get(c) for row in rows]) for c in wanted}), np.array(numbers)

    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(_decode(raw))
            except ValueError as err:
                yield Problem(str(path), f"invalid JSON: {err}", number)
                continue
            if not isinstance(obj, dict):
                yield Problem(str(path), "not a JSON object", number)
                continue
            rows.append({c: obj[c] for c in wanted if c in obj})
            numbers.append(number)
            if len(rows) >= BATCH_ROWS:
                yield flush()
                rows, numbers = [], []
    if rows:
        yield flush()


def _column(values: list) -> pa.Array:
    """A JSONL column; one whose rows mix types keeps strings and integers as text (valid ids) and
    nulls the rest, which the checks then report as missing."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([v if isinstance(v, str) else str(v) if isinstance(v, int) and not isinstance(v, bool)
                         else None for v in values], pa.string())


def check_batch(path: Path, table: pa.Table, numbers: np.ndarray, options: ReadOptions,
                seen: dict[str, str]) -> Batch:
    """The rows that can be scored, with their tasks; the others as Problems (same messages as the runner)."""
    n = table.num_rows
    get = (lambda c: table.column(c).combine_chunks() if c in table.column_names else None)
    ids, texts = get(options.id_col), get(options.text_col)
    problems: dict[int, str] = {}
    id_values = ids.to_pylist() if ids is not None else [None] * n
    text_ok = (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)) if texts is not None else False
    stripped = pc.utf8_trim_whitespace(texts) if text_ok else None
    blank = (pc.fill_null(pc.equal(stripped, ""), True).to_numpy(zero_copy_only=False) if text_ok
             else np.ones(n, bool))
    text_null = texts.is_null().to_numpy(zero_copy_only=False) if texts is not None else np.ones(n, bool)
    for i, doc_id in enumerate(id_values):
        if doc_id is None or (isinstance(doc_id, float) and doc_id != doc_id):
            problems[i] = f"missing field '{options.id_col}'"
        elif text_null[i]:
            problems[i] = f"missing field '{options.text_col}'"
        elif not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool) or str(doc_id) == "":
            problems[i] = f"field '{options.id_col}' must be a non-empty string or integer"
        elif blank[i]:
            problems[i] = f"field '{options.text_col}' must be a non-empty string"
        elif (key := str(doc_id)) in seen:
            problems[i] = f"duplicate {options.id_col} '{key}' (first seen at {seen[key]})"
        else:
            seen[key] = f"{path}:{numbers[i]}"
    applies = _task_masks(get(options.task_col), n, options, problems)
    keep = np.ones(n, bool)
    keep[list(problems)] = False
    mask = pa.array(keep)
    columns = {
        "id": pa.array([str(v) for v, k in zip(id_values, keep) if k], pa.string()),
        "text": stripped.filter(mask) if text_ok else pa.array([], pa.string()),
        "source": _as_text(get(options.source_col), n).filter(mask),
        "date": _as_text(get(options.date_col), n).filter(mask),
        "url": _as_text(get(options.url_col), n).filter(mask),
        TASKS_COLUMN: {task: m[keep] for task, m in applies.items()},
    }
    where = [Problem(str(path), reason, int(numbers[i])) for i, reason in sorted(problems.items())]
    return Batch(columns, where)


def _task_masks(cells: pa.Array | None, n: int, options: ReadOptions, problems: dict[int, str]) -> dict[str, np.ndarray]:
    """Per task, which rows it is scored on: the row's task cell, else --tasks, else every task.
    Each distinct cell is resolved once."""
    values = [None] * n if cells is None else cells.to_pylist()
    resolved: dict = {}
    masks = {task: np.zeros(n, bool) for task in options.known_tasks}
    for i, cell in enumerate(values):
        key = text_or_none(cell)
        if key not in resolved:
            try:
                resolved[key] = row_tasks(cell, options) or tuple(options.known_tasks)
            except ValueError as err:
                resolved[key] = err
        tasks = resolved[key]
        if isinstance(tasks, ValueError):
            problems.setdefault(i, f"field '{options.task_col}': {tasks}")
            continue
        for task in tasks:
            masks[task][i] = True
    return masks


_WORKER_MODEL = None


def _init_worker(model) -> None:
    global _WORKER_MODEL
    _WORKER_MODEL = model


def _worker_proba(texts: pa.Array) -> dict[str, np.ndarray]:
    return _WORKER_MODEL.predict_proba(texts)


def scored_table(model, batch: Batch, proba: dict[str, np.ndarray]) -> pa.Table:
    """The paragraph-table rows of one batch (columns and types of the general runner's output)."""
    cols = batch.columns
    n = len(cols["id"])
    data: dict[str, pa.Array] = {
        "id": cols["id"], "doc_id": cols["id"], "article_index": pa.array(np.zeros(n, np.int64)),
        "title": pa.nulls(n, pa.string()), "paragraph_index": pa.array(np.zeros(n, np.int64)),
        "text": cols["text"], "source": cols["source"], "date": cols["date"], "url": cols["url"],
    }
    for task in model.schema.task_names:
        labels = model.schema.labels(task)
        applies = cols[TASKS_COLUMN][task]
        p = np.round(proba[task], 6)
        data[task] = pa.array(np.array(labels, dtype=object)[p.argmax(axis=1)] if n else [], pa.string(),
                              mask=~applies)
        for j, label in enumerate(labels):
            data[proba_column(task, label)] = pa.array(p[:, j], pa.float64(), mask=~applies)
    return pa.table(data, schema=arrow_schema(paragraph_columns(model.schema), model.schema))


def stream_tables(sources: list[Source], out: Path, fmt: str, model, options: ReadOptions,
                  workers: int = 1) -> tuple[int, list[Problem]]:
    """Score every paragraph table in `sources` into the file `out` (format `fmt`); returns (rows scored,
    problems). With workers > 1 each batch's text is scored in a pool of processes, a few batches in flight."""
    writer = paragraph_writer(Path(out), fmt, model.schema)
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    scored = 0
    pool = None
    in_flight: deque = deque()

    def submit(texts: pa.Array):
        """Score in-process up to the first full batch (starting workers costs seconds), then in the pool."""
        nonlocal pool
        if workers > 1 and pool is None and scored + len(in_flight) >= 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_init_worker, initargs=(model,))
        return pool.submit(_worker_proba, texts) if pool else model.predict_proba(texts)

    def drain(limit: int) -> None:
        nonlocal scored
        while len(in_flight) > limit:
            batch, result = in_flight.popleft()
            table = scored_table(model, batch, result if isinstance(result, dict) else result.result())
            writer.write_arrow(table)
            scored += table.num_rows

    try:
        for source in sources:
            path = Path(source.location)
            reader = _read_parquet if path.suffix.lower() == ".parquet" else _read_jsonl
            found: list[Problem] = []
            for item in reader(path, options):
                if isinstance(item, Problem):
                    found.append(item)
                    continue
                batch = check_batch(path, *item, options, seen)
                found += batch.problems
                texts = batch.columns["text"]
                in_flight.append((batch, submit(texts)))
                drain(2 * workers)
            problems += sorted(found, key=lambda p: p.line or 0)  # in file order, as the general runner
        drain(0)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    writer.close()
    return scored, problems
