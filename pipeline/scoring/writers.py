"""Crash-safe output: scored batches become Parquet parts, assembled at the end into the final files.

Each batch holds whole documents and is written as `part-NNNNNN.paragraphs.parquet` and
`part-NNNNNN.articles.parquet` (temp file + atomic rename), then its document ids are appended
to `manifest.jsonl` (flushed and fsynced). The manifest line is the commit point: on `--resume`
parts without a manifest line are deleted and their documents scored again, documents in the
manifest are skipped. So after any kill a rerun yields exactly one row per paragraph.
Assembly streams part by part, so memory stays flat however many parts there are.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path
from typing import Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.scoring.core import BASE_COLUMNS, article_columns, paragraph_columns, proba_column

FORMATS = ("parquet", "jsonl", "csv")
_INT_COLUMNS = {"article_index", "paragraph_index", "n_paragraphs"}


class ResumeMismatch(ValueError):
    """--resume on an output that was started with different settings."""


def arrow_schema(columns: list[str], schema) -> pa.Schema:
    """Fixed column types, so a batch whose metadata is all null still matches the others."""
    floats = {proba_column(t, c) for t in schema.task_names for c in schema.labels(t)}
    floats |= {f"{t}__{kind}_{c}" for t in schema.task_names for c in schema.labels(t) for kind in ("share", "mean_p")}
    floats |= {f"{t}__confidence" for t in schema.task_names}
    return pa.schema([(c, pa.int64() if c in _INT_COLUMNS else pa.float64() if c in floats else pa.string())
                      for c in columns])


def _write_parquet_atomic(frame: pd.DataFrame, schema: pa.Schema, path: Path) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    pq.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False), tmp)
    os.replace(tmp, path)


class PartStore:
    """The work folder of one run: parts, manifest and the settings it was started with."""

    def __init__(self, folder: Path, schema, settings: dict, resume: bool):
        self.folder = Path(folder)
        self.schema = schema
        self.paragraph_schema = arrow_schema(paragraph_columns(schema), schema)
        self.article_schema = arrow_schema(article_columns(schema), schema)
        self.manifest = self.folder / "manifest.jsonl"
        settings_file = self.folder / "settings.json"
        if not resume and self.folder.exists():
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        if settings_file.exists():
            previous = json.loads(settings_file.read_text(encoding="utf-8"))
            changed = sorted(k for k in set(previous) | set(settings) if previous.get(k) != settings.get(k))
            if changed:
                raise ResumeMismatch(f"{self.folder}: cannot resume, settings differ from the interrupted run: "
                                     + ", ".join(f"{k} (was {previous.get(k)!r}, now {settings.get(k)!r})"
                                                 for k in changed))
        else:
            settings_file.write_text(json.dumps(settings, indent=2), encoding="utf-8")
        self.parts: list[str] = []
        self.done: set[str] = set()
        self.done_paragraphs = 0
        self._load_manifest()

    def _load_manifest(self) -> None:
        valid = b""
        if self.manifest.exists():
            for line in self.manifest.read_bytes().splitlines(keepends=True):
                try:
                    entry = json.loads(line)
                except ValueError:
                    break  # a line torn by a kill: that part is not committed
                if not line.endswith(b"\n"):
                    break
                valid += line
                self.parts.append(entry["part"])
                self.done.update(entry["docs"])
                self.done_paragraphs += entry["paragraphs"]
            self.manifest.write_bytes(valid)
        committed = {f"{p}.{kind}.parquet" for p in self.parts for kind in ("paragraphs", "articles")}
        for path in self.folder.glob("*.parquet"):
            if path.name not in committed:
                path.unlink()
        for path in self.folder.glob(".tmp-*"):
            path.unlink()

    def write(self, paragraphs: pd.DataFrame, articles: pd.DataFrame, doc_ids: list[str]) -> None:
        name = f"part-{len(self.parts) + 1:06d}"
        _write_parquet_atomic(paragraphs, self.paragraph_schema, self.folder / f"{name}.paragraphs.parquet")
        _write_parquet_atomic(articles, self.article_schema, self.folder / f"{name}.articles.parquet")
        entry = {"part": name, "docs": doc_ids, "paragraphs": len(paragraphs)}
        with self.manifest.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.parts.append(name)
        self.done.update(doc_ids)
        self.done_paragraphs += len(paragraphs)

    def iter_parts(self, kind: str) -> Iterator[pd.DataFrame]:
        for name in self.parts:
            yield pq.read_table(self.folder / f"{name}.{kind}.parquet").to_pandas()


class TableWriter:
    """Streams frames into one Parquet, JSONL or CSV file (temp name, renamed on close)."""

    def __init__(self, path: Path, fmt: str, arrow: pa.Schema, schema, scores_as_dicts: bool):
        self.path, self.fmt, self.arrow, self.schema = Path(path), fmt, arrow, schema
        self.scores_as_dicts = scores_as_dicts
        self.tmp = self.path.with_name(f".tmp-{self.path.name}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._parquet = pq.ParquetWriter(self.tmp, arrow) if fmt == "parquet" else None
        self._handle = None if fmt == "parquet" else self.tmp.open("w", encoding="utf-8", newline="")
        self._csv = csv.DictWriter(self._handle, fieldnames=arrow.names) if fmt == "csv" else None
        if self._csv:
            self._csv.writeheader()

    def write(self, frame: pd.DataFrame) -> None:
        if self._parquet:
            self._parquet.write_table(pa.Table.from_pandas(frame, schema=self.arrow, preserve_index=False))
            return
        for row in frame.to_dict("records"):
            row = {k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()}
            if self._csv:
                self._csv.writerow(row)
            else:
                self._handle.write(json.dumps(self._jsonl_row(row), ensure_ascii=False) + "\n")

    def write_arrow(self, table: pa.Table) -> None:
        """An Arrow table with this writer's schema (straight to Parquet, through pandas otherwise)."""
        if self._parquet:
            self._parquet.write_table(table)
        else:
            self.write(table.to_pandas())

    def _jsonl_row(self, row: dict) -> dict:
        """Nulls dropped; for paragraphs per task `T` and `T_scores` {class: p}."""
        if not self.scores_as_dicts:
            return {k: v for k, v in row.items() if v is not None}
        out = {k: row[k] for k in BASE_COLUMNS if row.get(k) is not None}
        for task in self.schema.task_names:
            out[task] = row[task]
            out[f"{task}_scores"] = None if row[task] is None else {
                c: row[proba_column(task, c)] for c in self.schema.labels(task)}
        return out

    def close(self) -> None:
        if self._parquet:
            self._parquet.close()
        else:
            self._handle.close()
        os.replace(self.tmp, self.path)


def paragraph_writer(path: Path, fmt: str, schema) -> TableWriter:
    return TableWriter(path, fmt, arrow_schema(paragraph_columns(schema), schema), schema, scores_as_dicts=True)


def article_writer(path: Path, fmt: str, schema) -> TableWriter:
    return TableWriter(path, fmt, arrow_schema(article_columns(schema), schema), schema, scores_as_dicts=False)
