"""Input discovery and readers: files, folders, globs, tables and URL lists -> a stream of documents.

Every reader yields `Document`s (one scored unit with its paragraphs) or `Problem`s (a file,
line or URL that was skipped and why), so one bad input never stops the batch. Text and HTML
go through `pipeline.segment` — the same segmentation and boilerplate removal as ingest.
"""

from __future__ import annotations

import csv
import glob
import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from pipeline.segment import html_to_text, segment_text

TEXT_SUFFIXES = {".txt", ".md"}
HTML_SUFFIXES = {".html", ".htm"}
TABLE_SUFFIXES = {".jsonl", ".csv", ".parquet"}
URL_LIST_SUFFIXES = {".urls"}
SUPPORTED = TEXT_SUFFIXES | HTML_SUFFIXES | TABLE_SUFFIXES | URL_LIST_SUFFIXES
UNITS = ("paragraph", "document")

_URL = re.compile(r"^https?://\S+$", re.I)
_CHARSET = re.compile(rb"""<meta[^>]+charset=["']?([\w.:-]+)""", re.I)
_MD_MARKUP = re.compile(r"^\s{0,3}(#{1,6}\s+|>\s?)", re.M)


class UsageError(ValueError):
    """The command line names inputs that cannot be used at all (exit status 2)."""


@dataclass(frozen=True)
class ReadOptions:
    unit: str = "paragraph"  # how to read rows of .jsonl/.csv/.parquet: one paragraph, or a whole article
    id_col: str = "id"
    text_col: str = "text"
    source_col: str = "source"
    date_col: str = "date"
    url_col: str = "url"
    task_col: str = "task"  # a row's task(s), comma-separated; no column or empty cell: every task
    tasks: tuple[str, ...] = ()  # --tasks: the only tasks of this run (empty: all)
    known_tasks: tuple[str, ...] = ()  # the model's tasks, to check and spell task names (set by the runner)
    min_words: int = 12
    timeout: float = 10.0
    retries: int = 2


@dataclass
class Paragraph:
    article_index: int
    title: str | None
    text: str


@dataclass
class Document:
    doc_id: str
    paragraphs: list[Paragraph]
    source: str | None = None
    date: str | None = None
    url: str | None = None
    unit: str = "document"
    tasks: tuple[str, ...] | None = None  # the tasks to score (None: every task of the model)


@dataclass
class Problem:
    path: str
    reason: str
    line: int | None = None

    def as_dict(self) -> dict:
        return {"path": self.path, "line": self.line, "reason": self.reason}


@dataclass
class Source:
    """One discovered input: a local file, or a single URL given on the command line."""
    location: str
    kind: str  # text | html | table | urls | url
    extras: dict = field(default_factory=dict)


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return "urls" if suffix == ".txt" and _is_url_list(path) else "text"
    if suffix in HTML_SUFFIXES:
        return "html"
    if suffix in TABLE_SUFFIXES:
        return "table"
    return "urls"


def _is_url_list(path: Path) -> bool:
    """A .txt file whose every non-blank, non-comment line is an http(s) URL is a URL list."""
    try:
        head = path.read_bytes()[:65536].decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    lines = [ln.strip() for ln in head.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    return bool(lines) and all(_URL.match(ln) for ln in lines)


def discover(inputs: list[str]) -> list[Source]:
    """Expand files, folders (recursive) and glob patterns; each argument must match something."""
    sources: list[Source] = []
    seen: set[str] = set()

    def add(location: str, kind: str) -> None:
        if location not in seen:
            seen.add(location)
            sources.append(Source(location, kind))

    for arg in inputs:
        if _URL.match(arg):
            add(arg, "url")
            continue
        path = Path(arg)
        if path.is_dir():
            for found in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED
                                and not any(part.startswith(".") for part in p.relative_to(path).parts)):
                add(str(found), _kind(found))
        elif path.is_file():
            if path.suffix.lower() not in SUPPORTED:
                raise UsageError(f"{arg}: unsupported file type '{path.suffix}' "
                                 f"(supported: {', '.join(sorted(SUPPORTED))})")
            add(str(path), _kind(path))
        else:
            matches = sorted(glob.glob(arg, recursive=True))
            files = [Path(m) for m in matches if Path(m).is_file() and Path(m).suffix.lower() in SUPPORTED]
            if not files:
                raise UsageError(f"{arg}: no such file or folder, and no supported file matches it")
            for found in files:
                add(str(found), _kind(found))
    return sources


def count_items(sources: list[Source], options: ReadOptions) -> int:
    """Expected number of documents (for the progress bar's ETA); cheap, may be approximate."""
    total = 0
    for source in sources:
        path = Path(source.location)
        try:
            if source.kind == "table" and path.suffix.lower() == ".parquet":
                import pyarrow.parquet as pq
                total += pq.ParquetFile(path).metadata.num_rows
            elif source.kind == "table":
                with path.open("rb") as handle:
                    lines = sum(1 for line in handle if line.strip())
                total += max(lines - (path.suffix.lower() == ".csv"), 0)
            elif source.kind == "urls":
                total += len(_url_lines(path.read_bytes().decode("utf-8", "replace")))
            else:
                total += 1
        except Exception:  # a broken file is reported when it is read; here it counts as one item
            total += 1
    return total


def read_sources(sources: list[Source], options: ReadOptions) -> Iterator[Document | Problem]:
    """Documents and problems in input order; row ids must be unique across the run (they key --resume)."""
    seen: dict[str, str] = {}
    for source in sources:
        if source.kind == "url":
            yield from _read_urls([(None, source.location)], source.location, options)
            continue
        path = Path(source.location)
        try:
            if source.kind == "table":
                yield from _read_table(path, options, seen)
            else:
                reader = {"text": _read_text_file, "html": _read_html_file, "urls": _read_url_list}[source.kind]
                yield from reader(path, options)
        except OSError as err:
            yield Problem(str(path), f"cannot read: {err.strerror or err}")


# ---------------------------------------------------------------------------- documents

def _check_bytes(path: Path, data: bytes) -> str | None:
    if not data.strip():
        return "empty file"
    if b"\x00" in data[:8192]:
        return "binary file (contains NUL bytes)"
    return None


def _decode(data: bytes, encoding: str = "utf-8-sig") -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        raise ValueError(f"not valid {encoding.replace('-sig', '').upper()}: {err.reason} at byte {err.start}") from None
    except LookupError:
        raise ValueError(f"unknown declared encoding '{encoding}'") from None


def document_from_text(doc_id: str, text: str, options: ReadOptions, source: str | None = None,
                       date: str | None = None, url: str | None = None) -> Document | Problem:
    """Segment an article's text into paragraphs with the ingest segmenter."""
    articles = segment_text(text, min_words=options.min_words)
    paragraphs = [Paragraph(i, a.title or None, p) for i, a in enumerate(articles) for p in a.paragraphs]
    if not paragraphs:
        return Problem(doc_id, f"no body paragraphs after segmentation (min_words={options.min_words})")
    return Document(doc_id, paragraphs, source=source, date=date, url=url)


def _read_text_file(path: Path, options: ReadOptions) -> Iterator[Document | Problem]:
    data = path.read_bytes()
    if reason := _check_bytes(path, data):
        yield Problem(str(path), reason)
        return
    try:
        text = _decode(data)
    except ValueError as err:
        yield Problem(str(path), str(err))
        return
    if path.suffix.lower() == ".md":
        text = _MD_MARKUP.sub("", text)
    yield document_from_text(str(path), text, options, source=path.name)


def _html_document(doc_id: str, html: str, options: ReadOptions, url: str | None) -> Document | Problem:
    import trafilatura

    text = html_to_text(html)
    if not text.strip():
        return Problem(doc_id, "no main text found in the HTML")
    meta = trafilatura.extract_metadata(html)
    source = (meta.sitename or meta.hostname) if meta else None
    date = meta.date if meta else None
    return document_from_text(doc_id, text, options, source=source or _host(url) or Path(doc_id).name,
                              date=date, url=url)


def _read_html_file(path: Path, options: ReadOptions) -> Iterator[Document | Problem]:
    data = path.read_bytes()
    if reason := _check_bytes(path, data):
        yield Problem(str(path), reason)
        return
    declared = _CHARSET.search(data[:4096])
    try:
        html = _decode(data, declared.group(1).decode("ascii").lower() if declared else "utf-8-sig")
    except ValueError as err:
        yield Problem(str(path), str(err))
        return
    yield _html_document(str(path), html, options, url=None)


# ---------------------------------------------------------------------------- tables

def _row_document(path: Path, where: int, row: dict, options: ReadOptions,
                  seen: dict[str, str]) -> Document | Problem:
    for column in (options.id_col, options.text_col):
        value = row.get(column)
        if value is None or (isinstance(value, float) and value != value):
            return Problem(str(path), f"missing field '{column}'", where)
    doc_id, text = row[options.id_col], row[options.text_col]
    if not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool) or str(doc_id) == "":
        return Problem(str(path), f"field '{options.id_col}' must be a non-empty string or integer", where)
    if not isinstance(text, str) or not text.strip():
        return Problem(str(path), f"field '{options.text_col}' must be a non-empty string", where)
    doc_id = str(doc_id)
    if doc_id in seen:
        return Problem(str(path), f"duplicate {options.id_col} '{doc_id}' (first seen at {seen[doc_id]})", where)
    seen[doc_id] = f"{path}:{where}"
    meta = {key: text_or_none(row.get(col)) for key, col in
            (("source", options.source_col), ("date", options.date_col), ("url", options.url_col))}
    if options.unit == "document":
        doc = document_from_text(doc_id, text, options, **meta)
    else:
        doc = Document(doc_id, [Paragraph(0, None, text.strip())], unit="paragraph", **meta)
    if isinstance(doc, Document):
        try:
            doc.tasks = row_tasks(row.get(options.task_col), options)
        except ValueError as err:
            return Problem(str(path), f"field '{options.task_col}': {err}", where)
    return doc


def row_tasks(cell, options: ReadOptions) -> tuple[str, ...] | None:
    """The tasks named in a row's task cell (comma- or semicolon-separated, any case), spelled as in
    `options.known_tasks` and limited to `options.tasks`; None (every task) when neither names any.
    A name that is not a known task is a ValueError."""
    named = [t.strip() for t in re.split(r"[,;]", text_or_none(cell) or "") if t.strip()]
    by_fold = {t.casefold(): t for t in options.known_tasks}
    if by_fold:
        unknown = [t for t in named if t.casefold() not in by_fold]
        if unknown:
            raise ValueError(f"unknown task(s) {', '.join(unknown)} (tasks: {', '.join(options.known_tasks)})")
        named = [by_fold[t.casefold()] for t in named]
    if not named:
        return options.tasks or None
    return tuple(t for t in dict.fromkeys(named) if not options.tasks or t in options.tasks)


def text_or_none(value) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def _read_table(path: Path, options: ReadOptions, seen: dict[str, str]) -> Iterator[Document | Problem]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _read_parquet(path, options, seen)
        return
    with path.open("rb") as handle:
        head = handle.read(8192)
    if reason := _check_bytes(path, head):
        yield Problem(str(path), reason)
        return
    if suffix == ".jsonl":
        yield from _read_jsonl(path, options, seen)
    else:
        yield from _read_csv(path, options, seen)


def _read_jsonl(path: Path, options: ReadOptions, seen: dict) -> Iterator[Document | Problem]:
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
            yield _row_document(path, number, obj, options, seen)


def _read_csv(path: Path, options: ReadOptions, seen: dict) -> Iterator[Document | Problem]:
    with path.open("r", encoding="utf-8-sig", errors="strict", newline="") as handle:
        reader = csv.DictReader(handle)
        try:
            header = reader.fieldnames or []
            missing = [c for c in (options.id_col, options.text_col) if c not in header]
            if missing:
                yield Problem(str(path), f"missing column(s) {', '.join(map(repr, missing))} "
                                         f"(columns: {', '.join(header)})", 1)
                return
            for row in reader:
                if None in row or any(v is None for v in row.values()):
                    yield Problem(str(path), f"malformed row: number of fields differs from the header's "
                                             f"{len(header)}", reader.line_num)
                    continue
                yield _row_document(path, reader.line_num, row, options, seen)
        except UnicodeDecodeError as err:
            yield Problem(str(path), f"not valid UTF-8: {err.reason} (after line {reader.line_num})")
        except csv.Error as err:
            yield Problem(str(path), f"malformed CSV: {err}", reader.line_num)


def _read_parquet(path: Path, options: ReadOptions, seen: dict) -> Iterator[Document | Problem]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several types for a file that is not Parquet
        yield Problem(str(path), f"not a readable Parquet file: {err}")
        return
    names = parquet.schema_arrow.names
    missing = [c for c in (options.id_col, options.text_col) if c not in names]
    if missing:
        yield Problem(str(path), f"missing column(s) {', '.join(map(repr, missing))} (columns: {', '.join(names)})")
        return
    wanted = [c for c in dict.fromkeys((options.id_col, options.text_col, options.source_col,
                                        options.date_col, options.url_col, options.task_col)) if c in names]
    number = 0
    for batch in parquet.iter_batches(batch_size=8192, columns=wanted):
        for row in batch.to_pylist():
            number += 1
            yield _row_document(path, number, row, options, seen)


# ---------------------------------------------------------------------------- URLs

def _url_lines(text: str) -> list[tuple[int, str]]:
    return [(n, ln.strip()) for n, ln in enumerate(text.splitlines(), 1)
            if ln.strip() and not ln.strip().startswith("#")]


def _host(url: str | None) -> str | None:
    if not url:
        return None
    import httpx
    return httpx.URL(url).host or None


def _read_url_list(path: Path, options: ReadOptions) -> Iterator[Document | Problem]:
    data = path.read_bytes()
    if reason := _check_bytes(path, data):
        yield Problem(str(path), reason)
        return
    try:
        lines = _url_lines(_decode(data))
    except ValueError as err:
        yield Problem(str(path), str(err))
        return
    yield from _read_urls(lines, str(path), options)


def _read_urls(lines: list[tuple[int | None, str]], where: str, options: ReadOptions) -> Iterator[Document | Problem]:
    import httpx

    with httpx.Client(timeout=options.timeout, follow_redirects=True,
                      headers={"User-Agent": "stance-score/1"}) as client:
        for number, url in lines:
            if not _URL.match(url):
                yield Problem(where, f"not an http(s) URL: {url!r}", number)
                continue
            try:
                response = fetch(client, url, options.retries)
            except FetchError as err:
                yield Problem(where, f"{url}: {err}", number)
                continue
            content_type = response.headers.get("content-type", "").lower()
            body = response.text
            if not body.strip():
                yield Problem(where, f"{url}: empty response", number)
            elif "html" in content_type or body.lstrip()[:1] == "<":
                yield _relocate(_html_document(url, body, options, url=url), where, number)
            elif content_type.startswith("text/"):
                yield _relocate(document_from_text(url, body, options, source=_host(url), url=url), where, number)
            else:
                yield Problem(where, f"{url}: unsupported content type '{content_type}'", number)


def _relocate(item: Document | Problem, where: str, number: int | None) -> Document | Problem:
    """Problems with a fetched page are reported at the URL list's line."""
    if isinstance(item, Problem):
        return Problem(where, f"{item.path}: {item.reason}", number)
    return item


class FetchError(Exception):
    pass


def fetch(client, url: str, retries: int):
    """GET with retries (exponential back-off) on timeouts, connection errors, 429 and 5xx."""
    import httpx

    last = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(0.25 * 2 ** (attempt - 1))
        try:
            response = client.get(url)
        except httpx.TimeoutException:
            last = f"timed out after {client.timeout.read}s"
            continue
        except httpx.TransportError as err:
            last = f"connection failed: {err}"
            continue
        if response.status_code == 429 or response.status_code >= 500:
            last = f"HTTP {response.status_code} {response.reason_phrase}"
            continue
        if response.status_code >= 400:
            raise FetchError(f"HTTP {response.status_code} {response.reason_phrase}")
        return response
    raise FetchError(f"{last} ({retries + 1} attempts)")
