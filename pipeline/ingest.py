"""Stage `ingest`: raw pages (text, Markdown, HTML) and tables (JSONL, CSV, Parquet) -> one table of
clean, stably identified paragraphs, plus a per-file report of every block left out and why.

A page is read as scoring reads it (pipeline.documents) and segmented (pipeline.segment), so the
model learns from text prepared as the text it will score. A table row is one paragraph as it is,
never segmented or filtered by length, so short texts (tweets, headlines) survive. A paragraph's id
is the row's own `id` when the table has one; otherwise it hashes the source and the normalised
text, not the position, so re-ingesting, or improving segmentation elsewhere on the page, never
orphans a label.
The `group` column is the unit cross-validation keeps together when `evaluate.group_by: group`:
a table's `group` value, otherwise the article.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Iterator

import pandas as pd

from pipeline.config import ConfigError, IngestParams, load_params, resolve
from pipeline.documents import DOCUMENT_SUFFIXES, UnreadableDocument, read_page
from pipeline.schema import load_schema
from pipeline.segment import is_on_topic, normalise, segment_text
from pipeline.stage_times import timed

TABLE_SUFFIXES = (".jsonl", ".csv", ".parquet")
SUFFIXES = DOCUMENT_SUFFIXES + TABLE_SUFFIXES
TABLE_COLUMNS = ("id", "text", "group", "source", "date", "url", "title")  # only `text` is required
REQUIRED_COLUMNS = ["paragraph_id", "source", "article_index", "paragraph_index", "title", "on_topic", "text"]
# Columns added later, with the value a table written before them means.
OPTIONAL_COLUMNS = {"origin": "scraped", "group": None, "date": None, "url": None}
COLUMNS = REQUIRED_COLUMNS + list(OPTIONAL_COLUMNS)


def article_keys(paragraphs: pd.DataFrame) -> pd.Series:
    """Each paragraph's article, `source#article_index`: one page can hold several articles."""
    return paragraphs["source"].astype(str) + "#" + paragraphs["article_index"].astype(str)


def origins(paragraphs: pd.DataFrame) -> pd.Series:
    """Each paragraph's origin; a table written before origins were recorded holds real pages only."""
    if "origin" in paragraphs:
        return paragraphs["origin"]
    return pd.Series(OPTIONAL_COLUMNS["origin"], index=paragraphs.index)
DROP_REASONS = ("too_short", "boilerplate", "heading", "duplicate", "empty")
REPORT_KEY = b"stance.ingest_report"  # Parquet metadata key: the drop report travels with the table

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # one cell may hold a whole article


def paragraph_id(source: str, text: str) -> str:
    """Stable id: 16 hex digits of SHA-256 over the source name and the normalised, lower-cased text."""
    key = f"{source}\n{normalise(text).lower()}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def origin_of(source: str, params: IngestParams) -> str:
    """`authored` for pages the team wrote (under raw_dir/<authored_dir>/), `scraped` for real pages.

    Kept per paragraph so evaluation can test on real text only and cards can break counts down."""
    return "authored" if source.split("/", 1)[0] == params.authored_dir else "scraped"


def paragraph_records(source: str, text: str, params: IngestParams, topic_groups: dict[str, list[str]],
                      drops: Counter | None = None) -> list[dict]:
    """Segment one page into paragraph rows (the pure core of ingest)."""
    drops = Counter() if drops is None else drops
    rows: list[dict] = []
    seen: set[str] = set()
    for article_index, article in enumerate(segment_text(text, params.min_words, drops)):
        on_topic = is_on_topic(" ".join([article.title, *article.paragraphs]), topic_groups)
        for paragraph_index, paragraph in enumerate(article.paragraphs):
            pid = paragraph_id(source, paragraph)
            if pid in seen:  # the same paragraph twice on one page (syndication, repeated blocks)
                drops["duplicate"] += 1
                continue
            seen.add(pid)
            rows.append({"paragraph_id": pid, "source": source, "origin": origin_of(source, params),
                         "article_index": article_index,
                         "paragraph_index": paragraph_index, "title": article.title, "on_topic": on_topic,
                         "text": paragraph, "group": f"{source}#{article_index}", "date": None, "url": None})
    return rows


def _cell(value) -> str | None:
    """A table cell as text; None for missing, NaN or blank."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    return text if text.strip() else None


def table_records(source: str, rows: Iterator[tuple[int, dict]], origin: str, topic_groups: dict[str, list[str]],
                  drops: Counter) -> list[dict]:
    """Table rows -> paragraph rows, one each, as they are. Rows without text are counted as
    `empty`, a repeated id or text as `duplicate`. Each row is its own article."""
    out: list[dict] = []
    seen_ids: set[str] = set()
    seen_texts: set[str] = set()
    for index, (line, row) in enumerate(rows):
        text, user_id = _cell(row.get("text")), _cell(row.get("id"))
        if text is None:
            drops["empty"] += 1
            continue
        text = text.strip()
        pid = user_id.strip() if user_id else paragraph_id(source, text)
        if pid in seen_ids or (user_id is None and text in seen_texts):
            drops["duplicate"] += 1
            continue
        seen_ids.add(pid)
        seen_texts.add(text)
        title = _cell(row.get("title")) or ""
        row_source = _cell(row.get("source")) or source
        out.append({"paragraph_id": pid, "source": row_source, "origin": origin, "article_index": index,
                    "paragraph_index": 0, "title": title, "on_topic": is_on_topic(f"{title} {text}", topic_groups),
                    "text": text, "group": _cell(row.get("group")) or f"{row_source}#{index}",
                    "date": _cell(row.get("date")), "url": _cell(row.get("url"))})
    return out


def read_document(path: Path) -> str:
    """A page's clean text, read as scoring reads it (pipeline.documents). Errors name the file."""
    try:
        return read_page(path)
    except UnreadableDocument as err:
        raise ConfigError(f"{path}: {err}") from None


def read_table(path: Path) -> list[tuple[int, dict]]:
    """(line or row number, row) for every row of a .jsonl/.csv/.parquet file (Parquet: only the known
    columns); a missing `text`
    column, malformed JSON or undecodable bytes are errors naming the file and line."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except Exception as err:  # pyarrow raises several types for a file that is not Parquet
            raise ConfigError(f"{path}: not a readable Parquet file: {err}") from None
        _require_text(path, table.column_names)
        wanted = [c for c in TABLE_COLUMNS if c in table.column_names]
        return list(enumerate(table.select(wanted).to_pylist(), start=1))
    try:
        content = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text (byte {err.start}): {err.reason}") from None
    if suffix == ".jsonl":
        rows = []
        for number, line in enumerate(content.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise ConfigError(f"{path}:{number}: malformed JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(obj, dict):
                raise ConfigError(f"{path}:{number}: expected a JSON object, got {type(obj).__name__}")
            rows.append((number, obj))
        if rows and not any("text" in obj for _, obj in rows):
            _require_text(path, list(rows[0][1]))
        return rows
    reader = csv.DictReader(io.StringIO(content, newline=""))
    _require_text(path, reader.fieldnames or [])
    rows = []
    try:
        for row in reader:
            if None in row:
                raise ConfigError(f"{path}:{reader.line_num}: more fields than the header's {len(reader.fieldnames)}")
            rows.append((reader.line_num, row))
    except csv.Error as err:
        raise ConfigError(f"{path}:{reader.line_num}: malformed CSV: {err}") from None
    return rows


def _require_text(path: Path, columns: list[str]) -> None:
    if "text" not in columns:
        raise ConfigError(f"{path}: missing column 'text' (columns: {', '.join(map(str, columns)) or 'none'}; "
                          f"known: {', '.join(TABLE_COLUMNS)})")


def add_documents(files: list[Path], raw_dir: Path) -> list[Path]:
    """Copy new pages or tables into the raw corpus (under added/), refusing names that already hold other text."""
    added = []
    for src in files:
        if src.suffix.lower() not in SUFFIXES:
            raise ConfigError(f"{src}: unsupported file type (expected one of {', '.join(SUFFIXES)})")
        read_table(src) if src.suffix.lower() in TABLE_SUFFIXES else read_document(src)  # fail before copying
        dest = raw_dir / "added" / src.name
        if dest.exists() and dest.read_bytes() != src.read_bytes():
            raise ConfigError(f"{dest}: a different file with this name is already in the corpus")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(src.read_bytes())
        added.append(dest)
    return added


def discover(raw_dir: Path) -> list[Path]:
    return sorted(p for p in raw_dir.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)


def ingest_folder(raw_dir: Path, params: IngestParams,
                  topic_groups: dict[str, list[str]]) -> tuple[pd.DataFrame, dict[str, dict[str, int]]]:
    """Every page and table under `raw_dir` as paragraph rows (the source of a page is its path relative
    to `raw_dir`), and per file the paragraphs kept and the blocks dropped by reason. An id already
    taken by an earlier file is dropped as a duplicate."""
    rows: list[dict] = []
    report: dict[str, dict[str, int]] = {}
    taken: set[str] = set()
    for path in discover(raw_dir):
        name = path.relative_to(raw_dir).as_posix()
        drops: Counter = Counter()
        ignored: list[str] = []
        if path.suffix.lower() in TABLE_SUFFIXES:
            table = read_table(path)
            ignored = sorted({str(c) for _, row in table for c in row} - set(TABLE_COLUMNS))
            found = table_records(name, iter(table), origin_of(name, params), topic_groups, drops)
        else:
            found = paragraph_records(name, read_document(path), params, topic_groups, drops)
        kept = [r for r in found if r["paragraph_id"] not in taken]
        drops["duplicate"] += len(found) - len(kept)
        taken.update(r["paragraph_id"] for r in kept)
        rows.extend(kept)
        report[name] = {"kept": len(kept), **{reason: drops[reason] for reason in DROP_REASONS}}
        if ignored:
            report[name]["ignored_columns"] = ignored
    return pd.DataFrame(rows, columns=COLUMNS), report


def describe_drops(report: dict[str, dict[str, int]]) -> list[str]:
    """One line per file: kept, and dropped by reason (reasons with a zero count left out)."""
    lines = []
    for name, counts in report.items():
        dropped = ", ".join(f"{counts[r]} {r.replace('_', ' ')}" for r in DROP_REASONS if counts.get(r))
        lines.append(f"{name}: {counts['kept']} kept" + (f"; dropped {dropped}" if dropped else "")
                     + (f"; ignored column(s) {', '.join(counts['ignored_columns'])}"
                        if counts.get("ignored_columns") else ""))
    return lines


def write_paragraphs(frame: pd.DataFrame, out: Path, report: dict[str, dict[str, int]] | None = None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    out.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                           REPORT_KEY: json.dumps(report or {}).encode("utf-8")})
    pq.write_table(table, out)


def load_paragraphs(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise ConfigError(f"{path}: paragraphs table not found; run `stance ingest` (or `dvc repro ingest`) first")
    return pd.read_parquet(path)


def load_drop_report(path: Path) -> dict[str, dict[str, int]]:
    """The per-file drop report ingest stored with the paragraphs ({} for a table written before it existed)."""
    import pyarrow.parquet as pq

    metadata = pq.read_schema(path).metadata or {}
    return json.loads(metadata[REPORT_KEY]) if REPORT_KEY in metadata else {}


def run(files: list[Path]) -> tuple[list[Path], pd.DataFrame, dict[str, dict[str, int]]]:
    """The stage: add `files` to the raw corpus, segment every file under it and write the paragraphs
    table (with its drop report) where params.yaml says. Returns (added files, paragraphs, drop report)."""
    with timed("ingest"):
        params = load_params().ingest
        raw_dir = resolve(params.raw_dir)
        topic_groups = load_schema().topic_groups
        added = add_documents(files, raw_dir)
        frame, report = ingest_folder(raw_dir, params, topic_groups)
        write_paragraphs(frame, resolve(params.paragraphs), report)
    return added, frame, report
