"""Paragraph tables scored as Arrow record batches: Parquet/JSONL in, one paragraph file out.

The general runner builds a Document per row plus article tables and a report. A table of paragraphs
scored into one paragraph file needs none of that, so here rows stay Arrow columns end to end: read a
batch, check it, score its text column (in worker processes for single-threaded models), write it.
Memory is a few batches plus a hash of each id seen so far (to report duplicates), however long the table.
Rows, columns, checks and messages are those of the general runner.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.scoring.core import TASKS_COLUMN, paragraph_columns, proba_column
from pipeline.scoring.workers import WorkerPool
from pipeline.scoring.readers import (Problem, ReadOptions, Source, jsonl_objects, parquet_batches, row_tasks,
                                      text_or_none)
from pipeline.scoring.seen_ids import SeenIds
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

    for item in jsonl_objects(path):
        if isinstance(item, Problem):
            yield item
            continue
        number, obj = item
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


def check_batch(path: Path, table: pa.Table, numbers: np.ndarray, options: ReadOptions, seen: SeenIds) -> Batch:
    """The rows that can be scored, with their tasks; the others as Problems (same messages as the runner).
    Checks run on whole columns; only rows with a problem become Python objects."""
    n = table.num_rows
    get = (lambda c: table.column(c).combine_chunks() if c in table.column_names else None)
    ids, texts = get(options.id_col), get(options.text_col)
    id_text, id_missing, id_invalid = _id_column(ids, n)
    text_ok = (pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)) if texts is not None else False
    stripped = pc.utf8_trim_whitespace(texts) if text_ok else None
    blank = (pc.fill_null(pc.equal(stripped, ""), True).to_numpy(zero_copy_only=False) if text_ok
             else np.ones(n, bool))
    text_null = texts.is_null().to_numpy(zero_copy_only=False) if texts is not None else np.ones(n, bool)
    reasons = [f"missing field '{options.id_col}'", f"missing field '{options.text_col}'",
               f"field '{options.id_col}' must be a non-empty string or integer",
               f"field '{options.text_col}' must be a non-empty string"]
    failed = np.select([id_missing, text_null, id_invalid, blank], [0, 1, 2, 3], -1)  # the first check that fails
    problems = {i: reasons[failed[i]] for i in np.flatnonzero(failed >= 0).tolist()}
    candidates = np.flatnonzero(failed < 0)
    earlier = seen.add(str(path), id_text.take(pa.array(candidates)), numbers[candidates])
    for position, first in earlier.items():
        i = int(candidates[position])
        problems[i] = f"duplicate {options.id_col} '{id_text[i].as_py()}' (first seen at {first})"
    applies = _task_masks(get(options.task_col), n, options, problems)
    keep = np.ones(n, bool)
    keep[list(problems)] = False
    mask = pa.array(keep)
    columns = {
        "id": id_text.filter(mask),
        "text": stripped.filter(mask) if text_ok else pa.array([], pa.string()),
        "source": _as_text(get(options.source_col), n).filter(mask),
        "date": _as_text(get(options.date_col), n).filter(mask),
        "url": _as_text(get(options.url_col), n).filter(mask),
        TASKS_COLUMN: {task: m[keep] for task, m in applies.items()},
    }
    where = [Problem(str(path), reason, int(numbers[i])) for i, reason in sorted(problems.items())]
    return Batch(columns, where)


def _id_column(ids: pa.Array | None, n: int) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """(id as text, missing, not a non-empty string or integer) per row. String and integer columns are
    checked as columns; any other type (floats, booleans, mixed JSON) value by value, as the runner does."""
    if ids is not None and (pa.types.is_string(ids.type) or pa.types.is_large_string(ids.type)
                            or pa.types.is_integer(ids.type)):
        text = ids.cast(pa.string())
        missing = ids.is_null().to_numpy(zero_copy_only=False)
        return text, missing, pc.fill_null(pc.equal(pc.binary_length(text), 0), False).to_numpy(zero_copy_only=False)
    values = ids.to_pylist() if ids is not None else [None] * n
    missing = np.array([v is None or (isinstance(v, float) and v != v) for v in values], bool)
    valid = [isinstance(v, (str, int)) and not isinstance(v, bool) and str(v) != "" for v in values]
    text = pa.array([str(v) if ok else None for v, ok in zip(values, valid)], pa.string())
    return text, missing, ~missing & ~np.array(valid, bool)


def _task_masks(cells: pa.Array | None, n: int, options: ReadOptions, problems: dict[int, str]) -> dict[str, np.ndarray]:
    """Per task, which rows it is scored on: the row's task cell, else --tasks, else every task.
    Each distinct cell is resolved once; a row whose cell names an unknown task becomes a problem."""
    if cells is None or pa.types.is_null(cells.type):
        values, codes = [None], np.zeros(n, np.int64)
    else:
        try:
            encoded = pc.dictionary_encode(cells)
        except pa.ArrowNotImplementedError:  # e.g. lists in JSONL: compared as the text they are read as
            encoded = pc.dictionary_encode(pa.array([text_or_none(v) for v in cells.to_pylist()], pa.string()))
        values = encoded.dictionary.to_pylist() + [None]
        codes = encoded.indices.fill_null(len(values) - 1).to_numpy(zero_copy_only=False)
    routed = np.zeros((len(values), len(options.known_tasks)), bool)
    errors: dict[int, str] = {}
    for code, cell in enumerate(values):
        try:
            tasks = row_tasks(cell, options) or tuple(options.known_tasks)
        except ValueError as err:
            errors[code] = f"field '{options.task_col}': {err}"
            continue
        routed[code] = [task in tasks for task in options.known_tasks]
    for i in np.flatnonzero(np.isin(codes, list(errors))).tolist():
        problems.setdefault(i, errors[codes[i]])
    return {task: routed[codes, j] for j, task in enumerate(options.known_tasks)}


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
        best = pa.array(p.argmax(axis=1) if n else np.zeros(0, np.int64), mask=~applies)  # null: not routed
        data[task] = pa.array(labels, pa.string()).take(best)
        for j, label in enumerate(labels):
            data[proba_column(task, label)] = pa.array(p[:, j], pa.float64(), mask=~applies)
    return pa.table(data, schema=arrow_schema(paragraph_columns(model.schema), model.schema))


def stream_tables(sources: list[Source], out: Path, fmt: str, model, options: ReadOptions,
                  workers: int = 1) -> tuple[int, list[Problem]]:
    """Score every paragraph table in `sources` into the file `out` (format `fmt`); returns (rows scored,
    problems). With workers > 1 each batch's text is scored in a pool of processes, a few batches in flight."""
    writer = paragraph_writer(Path(out), fmt, model.schema)
    problems: list[Problem] = []
    seen = SeenIds()
    scored = 0
    pool = WorkerPool(model, workers) if workers > 1 else None
    in_flight: deque = deque()

    def submit(texts: pa.Array):
        """Score in-process up to the first full batch (starting workers costs seconds), then in the pool."""
        if pool is not None and scored + len(in_flight) >= 1:
            return pool.submit("predict_proba", texts)
        return model.predict_proba(texts)

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
            pool.close()
    writer.close()
    return scored, problems
