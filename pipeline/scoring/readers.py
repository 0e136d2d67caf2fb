"""Input discovery and readers: files, folders, globs, tables and URL lists -> a stream of documents.

Every reader yields `Document`s (one scored unit with its paragraphs) or `Problem`s (a file,
line or URL that was skipped and why), so one bad input never stops the batch. Pages (text,
Markdown, HTML files and fetched URLs) are read by `pipeline.documents` and segmented by
`pipeline.segment`, exactly as ingest reads the pages the model learnt from.
"""

from __future__ import annotations

import codecs
import csv
import errno
import glob
import json
import os
import re
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from pipeline.documents import (DOCUMENT_SUFFIXES, HTML_SUFFIXES, TEXT_SUFFIXES, UnreadableDocument, bom_encoding,
                                 is_html, main_text, page_markup, unreadable_reason)
from pipeline.documents import decode
from pipeline.segment import segment_text

if TYPE_CHECKING:
    import pyarrow as pa

TABLE_SUFFIXES = {".jsonl", ".csv", ".parquet"}
URL_LIST_SUFFIXES = {".urls"}
SUPPORTED = {*DOCUMENT_SUFFIXES, *TABLE_SUFFIXES, *URL_LIST_SUFFIXES}
UNITS = ("paragraph", "document")

_URL = re.compile(r"^https?://\S+$", re.I)
_UNDECODED = re.compile("[\udc80-\udcff]")  # bytes kept by the surrogateescape error handler
CSV_FIELD_LIMIT = 64 * 1024 * 1024  # a whole book fits in a cell; the csv default (128 KB) does not fit a long article


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
    """One discovered input: a local file, a single URL given on the command line, or a path
    found while walking a folder that cannot be read (kind `skipped`, reason in extras)."""
    location: str
    kind: str  # text | html | table | urls | url | skipped
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
        head = decode(path.read_bytes()[:65536])
    except (OSError, ValueError):  # a cut multi-byte character or a bad byte: not a URL list
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
            for found, reason in _walk(path):
                if reason:
                    if found not in seen:
                        seen.add(found)
                        sources.append(Source(found, "skipped", {"reason": reason}))
                else:
                    add(found, _kind(Path(found)))
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


def _walk(folder: Path) -> list[tuple[str, str | None]]:
    """Supported files under `folder` (sorted, hidden names left out) as (path, None), and what
    could not be walked as (path, reason): unreadable folders, symlink loops, dangling links.
    Symlinked folders are not followed, as with Path.rglob."""
    found: list[tuple[str, str | None]] = []

    def unreadable(err: OSError) -> None:
        found.append((err.filename or str(folder), f"cannot read folder: {err.strerror or err}"))

    for top, dirs, files in os.walk(folder, onerror=unreadable):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files + [d for d in dirs if os.path.islink(os.path.join(top, d))]:
            path = Path(top, name)
            if name.startswith("."):
                continue
            if path.is_symlink():
                try:
                    target = path.resolve(strict=True)
                except (RuntimeError, OSError) as err:  # RuntimeError: a loop, before Python 3.13
                    if isinstance(err, RuntimeError) or err.errno == errno.ELOOP:
                        found.append((str(path), "symlink loop"))
                    elif path.suffix.lower() in SUPPORTED:
                        found.append((str(path), f"broken symlink: {err.strerror or err}"))
                    continue
                if target.is_dir():
                    loop = Path(top).resolve().is_relative_to(target)
                    found.append((str(path), "symlink loop (points to an enclosing folder)" if loop
                                  else "symlinked folder, not followed"))
                    continue
            if path.is_file() and path.suffix.lower() in SUPPORTED:
                found.append((str(path), None))
    return sorted(found)


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
        if source.kind == "skipped":
            yield Problem(source.location, source.extras["reason"])
            continue
        try:
            if source.kind == "url":
                yield from _read_urls([(None, source.location)], source.location, options)
            elif source.kind == "table":
                yield from _read_table(Path(source.location), options, seen)
            else:
                reader = {"text": _read_page_file, "html": _read_page_file, "urls": _read_url_list}[source.kind]
                yield from reader(Path(source.location), options)
        except OSError as err:
            yield Problem(source.location, f"cannot read: {err.strerror or err}")
        except Exception as err:  # any failure reading one input skips (the rest of) that input only
            yield Problem(source.location, f"cannot read: {type(err).__name__}: {err}")


# ---------------------------------------------------------------------------- documents

def document_from_text(doc_id: str, text: str, options: ReadOptions, source: str | None = None,
                       date: str | None = None, url: str | None = None) -> Document | Problem:
    """Segment an article's text into paragraphs with the ingest segmenter."""
    articles = segment_text(text, min_words=options.min_words)
    paragraphs = [Paragraph(i, a.title or None, p) for i, a in enumerate(articles) for p in a.paragraphs]
    if not paragraphs:
        return Problem(doc_id, f"no body paragraphs after segmentation (min_words={options.min_words})")
    return Document(doc_id, paragraphs, source=source, date=date, url=url)


def _read_page_file(path: Path, options: ReadOptions) -> Iterator[Document | Problem]:
    try:
        markup = page_markup(path.read_bytes(), is_html(path))
    except UnreadableDocument as err:
        yield Problem(str(path), str(err))
        return
    if is_html(path):
        yield _html_document(str(path), markup, options, url=None)
    else:
        yield document_from_text(str(path), main_text(markup, html=False), options, source=path.name)


def _html_document(doc_id: str, html: str, options: ReadOptions, url: str | None) -> Document | Problem:
    import trafilatura

    text = main_text(html, html=True)
    if not text.strip():
        return Problem(doc_id, "no main text found in the HTML")
    meta = trafilatura.extract_metadata(html)
    source = (meta.sitename or meta.hostname) if meta else None
    date = meta.date if meta else None
    return document_from_text(doc_id, text, options, source=source or _host(url) or Path(doc_id).name,
                              date=date, url=url)


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
    if suffix == ".csv" and bom_encoding(head) in ("utf-16", "utf-32"):
        yield Problem(str(path), "UTF-16/32 CSV is not supported: save it as UTF-8")
        return
    if reason := unreadable_reason(head):
        yield Problem(str(path), reason)
        return
    if suffix == ".jsonl":
        yield from _read_jsonl(path, options, seen)
    else:
        yield from _read_csv(path, options, seen)


def jsonl_objects(path: Path) -> Iterator[tuple[int, dict] | Problem]:
    """(line number, object) for each non-blank line of a JSONL file, or a Problem naming the line. Lines end
    at `\n` only (U+2028 and friends are text), and each line is decoded on its own."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(decode(raw))
            except ValueError as err:
                yield Problem(str(path), f"invalid JSON: {err}", number)
                continue
            if not isinstance(obj, dict):
                yield Problem(str(path), "not a JSON object", number)
                continue
            yield number, obj


def _read_jsonl(path: Path, options: ReadOptions, seen: dict) -> Iterator[Document | Problem]:
    for item in jsonl_objects(path):
        yield item if isinstance(item, Problem) else _row_document(path, *item, options, seen)


def _read_csv(path: Path, options: ReadOptions, seen: dict) -> Iterator[Document | Problem]:
    """Rows are checked one by one: a bad row (undecodable bytes, a broken quote, a wrong field
    count) is reported at its line and the next row is read as usual."""
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    with path.open("rb") as handle:
        lines = ((n, raw.removeprefix(codecs.BOM_UTF8) if n == 1 else raw) for n, raw in enumerate(handle, 1))
        records = csv_records((n, raw.decode("utf-8", "surrogateescape")) for n, raw in lines)
        header: list[str] | None = None
        for number, fields, error in records:
            if error is None and any(_UNDECODED.search(value) for value in fields):
                error = "not valid UTF-8 (is the file in another encoding, e.g. Latin-1? save it as UTF-8)"
            if header is None:
                if error:
                    yield Problem(str(path), f"header: {error}", number)
                    return
                header = fields
                missing = [c for c in (options.id_col, options.text_col) if c not in header]
                if missing:
                    yield Problem(str(path), f"missing column(s) {', '.join(map(repr, missing))} "
                                             f"(columns: {', '.join(header)})", number)
                    return
            elif error:
                yield Problem(str(path), error, number)
            elif fields and len(fields) != len(header):
                yield Problem(str(path), f"malformed row: {len(fields)} fields, the header has {len(header)}",
                              number)
            elif fields:
                yield _row_document(path, number, dict(zip(header, fields)), options, seen)


def csv_records(lines: Iterator[tuple[int, str]]) -> Iterator[tuple[int, list[str], str | None]]:
    """(first line number, fields, error) per CSV record of numbered physical lines.

    Strict parsing, so a stray or unbalanced quote is an error rather than a cell that silently
    swallows the rows after it. A record that fails is reported at its first line, and parsing
    resumes on the line after it.
    """
    replay: deque[tuple[int, str]] = deque()
    consumed: list[tuple[int, str]] = []

    def feed() -> Iterator[str]:
        while True:
            item = replay.popleft() if replay else next(lines, None)
            if item is None:
                return
            consumed.append(item)
            yield item[1]

    reader = csv.reader(feed(), strict=True)
    while True:
        consumed.clear()
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            if not consumed:
                return
            replay.extendleft(reversed(consumed[1:]))
            reason = f"unbalanced quote ({err})" if "end of data" in str(err) or "after '\"'" in str(err) else str(err)
            yield consumed[0][0], [], f"malformed CSV: {reason}"
            reader = csv.reader(feed(), strict=True)
            continue
        yield consumed[0][0], fields, None


def parquet_batches(path: Path, options: ReadOptions, batch_size: int) -> Iterator[pa.RecordBatch | Problem]:
    """Record batches of the columns scoring reads, or one Problem for an unreadable file or missing columns."""
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path, pre_buffer=False)  # pre-buffered column chunks stay cached: memory grew with the file
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
    yield from parquet.iter_batches(batch_size=batch_size, columns=wanted)


def _read_parquet(path: Path, options: ReadOptions, seen: dict) -> Iterator[Document | Problem]:
    number = 0
    for batch in parquet_batches(path, options, batch_size=8192):
        if isinstance(batch, Problem):
            yield batch
            return
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
    if reason := unreadable_reason(data):
        yield Problem(str(path), reason)
        return
    try:
        lines = _url_lines(decode(data))
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
                yield _relocate(_read_url(client, url, options), where, number)
            except FetchError as err:
                yield Problem(where, f"{url}: {err}", number)
            except Exception as err:  # e.g. httpx.InvalidURL for http://host:abc/: this URL only
                yield Problem(where, f"{url}: {type(err).__name__}: {err}", number)


def _read_url(client, url: str, options: ReadOptions) -> Document | Problem:
    response = fetch(client, url, options.retries)
    content_type = response.headers.get("content-type", "").lower()
    body = response.text
    if not body.strip():
        return Problem(url, "empty response")
    if "html" in content_type or body.lstrip()[:1] == "<":
        return _html_document(url, body, options, url=url)
    if content_type.startswith("text/"):
        return document_from_text(url, body, options, source=_host(url), url=url)
    return Problem(url, f"unsupported content type '{content_type}'")


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
