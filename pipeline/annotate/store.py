"""The durable label store: SQLite (WAL, synchronous=FULL) mirrored into annotations.jsonl.

Why both: SQLite gives atomic, crash-safe, concurrent writes; the JSONL mirror is what
git and `dvc repro` see. A label is acknowledged once its transaction committed, which
with synchronous=FULL means it is on disk: a save costs one small transaction whatever
the store's size. The mirror is rewritten from a snapshot read under an inter-process
lock (sorted, fixed key order: the same labels give the same bytes), so mirror versions
are monotonic and the last writer's file holds every committed label. Commands rewrite it
before they return; the app batches it (`background_mirror`: at most about once a second
while labels arrive, and at shutdown), and every start rewrites it from the store, so a
kill -9 leaves the mirror at most one batch behind and loses nothing acknowledged.

Labels written by people through this store (the app, imports) are authoritative: a
restart never drops them. Labels that came from annotations.jsonl itself (expert seed
labels committed to git) follow the file, so correcting them there is enough.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from filelock import FileLock

from pipeline.annotate.auth import check_name, hash_token, new_token, token_matches
from pipeline.labels import Annotation, write_jsonl_sorted

ORIGIN_FILE = "file"      # came from annotations.jsonl (follows the file)
ORIGIN_PERSON = "person"  # written through the app or an import (never dropped)

_DDL = """
CREATE TABLE IF NOT EXISTS labels (
    paragraph_id TEXT NOT NULL,
    task TEXT NOT NULL,
    annotator TEXT NOT NULL,
    label TEXT NOT NULL,
    rationale TEXT NOT NULL DEFAULT '',
    note TEXT NOT NULL DEFAULT '',
    origin TEXT NOT NULL,
    saved_at REAL NOT NULL,
    suggestion_shown INTEGER,
    suggestion_accepted INTEGER,
    PRIMARY KEY (paragraph_id, task, annotator)
);
CREATE TABLE IF NOT EXISTS skips (
    annotator TEXT NOT NULL,
    paragraph_id TEXT NOT NULL,
    saved_at REAL NOT NULL,
    PRIMARY KEY (annotator, paragraph_id)
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    annotator TEXT NOT NULL,
    paragraph_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    task TEXT,
    previous TEXT
);
CREATE TABLE IF NOT EXISTS annotators (
    name TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (
    annotator TEXT PRIMARY KEY,
    show_suggestions INTEGER NOT NULL
);
"""
# Columns added after the first release: a store from before gets them (NULL: not recorded), keeping every label.
_MIGRATIONS = {"labels": ("suggestion_shown INTEGER", "suggestion_accepted INTEGER")}
_LABEL_COLUMNS = "paragraph_id, task, label, annotator, rationale, note, suggestion_shown, suggestion_accepted"


def label_key(label: Annotation) -> tuple[str, str, str]:
    return (label.paragraph_id, label.task, label.annotator)


def annotation_record(label: Annotation) -> dict[str, str | bool]:
    """The canonical line: fixed key order, `note` and the suggestion flags only when there are some."""
    line: dict[str, str | bool] = {"paragraph_id": label.paragraph_id, "task": label.task, "label": label.label,
                                   "annotator": label.annotator, "rationale": label.rationale}
    if label.note:
        line["note"] = label.note
    for name in ("suggestion_shown", "suggestion_accepted"):
        if getattr(label, name) is not None:
            line[name] = getattr(label, name)
    return line


def _annotation(row: tuple) -> Annotation:
    """An Annotation from a row of _LABEL_COLUMNS (SQLite keeps the flags as 0/1/NULL)."""
    *text, shown, accepted = row
    return Annotation(*text, suggestion_shown=None if shown is None else bool(shown),
                      suggestion_accepted=None if accepted is None else bool(accepted))


class LabelStore:
    """Label store at `db_path`, mirrored into `annotations_path`."""

    def __init__(self, db_path: Path, annotations_path: Path):
        self.db_path = Path(db_path)
        self.annotations_path = Path(annotations_path)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        # next to the db so it is covered by the same .gitignore entry (store.sqlite*); every writer of the
        # label files (the store's mirror, the adjudications) takes it
        self.lock = FileLock(str(self.db_path) + ".lock")
        self._mirror_writer: _MirrorWriter | None = None
        self._connections = threading.local()
        self._write_lock = threading.Lock()
        with self._connect() as conn:
            conn.executescript(_DDL)
            for table, columns in _MIGRATIONS.items():
                present = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
                for column in columns:
                    if column.split()[0] not in present:
                        conn.execute(f"ALTER TABLE {table} ADD COLUMN {column}")

    # --- connections -------------------------------------------------------------------

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, opened once (the app's worker threads each keep one)."""
        conn = getattr(self._connections, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.db_path, timeout=60, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=60000")
            self._connections.conn = conn
        yield conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE: writers queue on the write lock instead of failing mid-transaction.

        Threads of one process queue on a Python lock first: SQLite's busy handler retries
        with sleeps of up to 100 ms, which made the slowest saves under load wait for nothing."""
        with self._write_lock, self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # --- labels ------------------------------------------------------------------------

    def save(self, label: Annotation) -> None:
        """Save (or replace) one label from a person; returns once it is durable in the store."""
        check_name(label.annotator)
        with self._transaction() as conn:
            previous = conn.execute(
                "SELECT label, rationale, note, origin, suggestion_shown, suggestion_accepted FROM labels "
                "WHERE paragraph_id=? AND task=? AND annotator=?", label_key(label)).fetchone()
            _upsert(conn, label, ORIGIN_PERSON)
            conn.execute(
                "INSERT INTO events (annotator, paragraph_id, kind, task, previous) VALUES (?, ?, 'label', ?, ?)",
                (label.annotator, label.paragraph_id, label.task,
                 json.dumps(previous) if previous else None))
        self._mirror_changed()

    def save_many(self, labels: Iterable[Annotation]) -> int:
        """Imports: one transaction, not undoable from the app."""
        labels = list(labels)
        for label in labels:
            check_name(label.annotator)
        with self._transaction() as conn:
            for label in labels:
                _upsert(conn, label, ORIGIN_PERSON)
        self.sync_mirror()
        return len(labels)

    def skip(self, annotator: str, paragraph_id: str) -> None:
        with self._transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO skips VALUES (?, ?, ?)", (annotator, paragraph_id, time.time()))
            conn.execute("INSERT INTO events (annotator, paragraph_id, kind) VALUES (?, ?, 'skip')",
                         (annotator, paragraph_id))

    def undo(self, annotator: str) -> str | None:
        """Revert this annotator's last label or skip; returns its paragraph_id (None: nothing to undo)."""
        with self._transaction() as conn:
            row = conn.execute(
                "SELECT seq, paragraph_id, kind, task, previous FROM events WHERE annotator=? "
                "ORDER BY seq DESC LIMIT 1", (annotator,)).fetchone()
            if row is None:
                return None
            seq, paragraph_id, kind, task, previous = row
            if kind == "skip":
                conn.execute("DELETE FROM skips WHERE annotator=? AND paragraph_id=?", (annotator, paragraph_id))
            elif previous is None:
                conn.execute("DELETE FROM labels WHERE paragraph_id=? AND task=? AND annotator=?",
                             (paragraph_id, task, annotator))
            else:
                label, rationale, note, origin, *flags = json.loads(previous)  # no flags: an event from before them
                shown, accepted = flags or (None, None)
                _upsert(conn, _annotation((paragraph_id, task, label, annotator, rationale, note, shown, accepted)),
                        origin)
            conn.execute("DELETE FROM events WHERE seq=?", (seq,))
        if kind == "label":
            self._mirror_changed()
        return paragraph_id

    def labels(self, annotator: str | None = None) -> list[Annotation]:
        query = f"SELECT {_LABEL_COLUMNS} FROM labels"
        args: tuple = ()
        if annotator is not None:
            query, args = query + " WHERE annotator=?", (annotator,)
        with self._connect() as conn:
            return sorted((_annotation(row) for row in conn.execute(query, args)), key=label_key)

    def skipped(self, annotator: str) -> set[str]:
        with self._connect() as conn:
            return {r[0] for r in conn.execute("SELECT paragraph_id FROM skips WHERE annotator=?", (annotator,))}

    def last_paragraph(self, annotator: str) -> str | None:
        """The paragraph of this annotator's most recent action (to resume where they were)."""
        with self._connect() as conn:
            row = conn.execute("SELECT paragraph_id FROM events WHERE annotator=? ORDER BY seq DESC LIMIT 1",
                               (annotator,)).fetchone()
        return row[0] if row else None

    # --- the JSONL mirror -----------------------------------------------------------------

    def sync_from_file(self, file_labels: Iterable[Annotation]) -> None:
        """Startup import, idempotent: file labels fill in and update file-origin rows;
        file-origin rows no longer in the file go; labels people wrote stay."""
        file_labels = {label_key(lab): lab for lab in file_labels}
        with self.lock, self._transaction() as conn:
            rows = conn.execute(f"SELECT {_LABEL_COLUMNS}, origin FROM labels").fetchall()
            stored = {label_key(lab): (lab, origin) for lab, origin in ((_annotation(r[:8]), r[8]) for r in rows)}
            for key, (label, origin) in stored.items():
                if origin == ORIGIN_FILE and key not in file_labels:
                    conn.execute("DELETE FROM labels WHERE paragraph_id=? AND task=? AND annotator=?", key)
            for key, label in file_labels.items():
                current = stored.get(key)
                if current is None or (current[1] == ORIGIN_FILE and current[0] != label):
                    _upsert(conn, label, ORIGIN_FILE)
        self.sync_mirror()

    def sync_mirror(self) -> None:
        """Rewrite annotations.jsonl from a snapshot taken under the inter-process lock."""
        with self.lock:
            write_jsonl_sorted(self.annotations_path, map(annotation_record, self.labels()),
                               ("paragraph_id", "task", "annotator"))

    def _mirror_changed(self) -> None:
        if self._mirror_writer is not None:
            self._mirror_writer.request()
        else:
            self.sync_mirror()

    @contextmanager
    def background_mirror(self, min_interval: float = 1.0) -> Iterator[None]:
        """While open, saves leave the mirror to a background thread that rewrites it in batches;
        on exit the mirror is brought up to date."""
        writer = _MirrorWriter(self.sync_mirror, min_interval)
        self._mirror_writer = writer
        writer.start()
        try:
            yield
        finally:
            self._mirror_writer = None
            writer.stop()
            self.sync_mirror()

    # --- annotators -------------------------------------------------------------------

    def add_annotator(self, name: str) -> str:
        """Create (or re-key) an annotator; returns the token, which is never stored."""
        check_name(name)
        token = new_token()
        with self._transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO annotators VALUES (?, ?, ?)", (name, hash_token(token), time.time()))
        return token

    def show_suggestions(self, annotator: str) -> bool:
        """The annotator's toggle for model suggestions (on unless they switched it off)."""
        with self._connect() as conn:
            row = conn.execute("SELECT show_suggestions FROM settings WHERE annotator=?", (annotator,)).fetchone()
        return True if row is None else bool(row[0])

    def set_show_suggestions(self, annotator: str, on: bool) -> None:
        with self._transaction() as conn:
            conn.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (annotator, int(on)))

    def authenticate(self, name: str, token: str) -> bool:
        with self._connect() as conn:
            row = conn.execute("SELECT token_hash FROM annotators WHERE name=?", (name,)).fetchone()
        return token_matches(token, row[0] if row else None)


class _MirrorWriter(threading.Thread):
    """Rewrites the mirror after changes, one rewrite per batch of saves.

    A batch lasts at least `min_interval` seconds and at least 4x the last rewrite's duration,
    so rewriting never takes more than a fifth of the time however large the store grows.
    """

    def __init__(self, sync, min_interval: float):
        super().__init__(name="label-mirror", daemon=True)
        self._sync = sync
        self._min_interval = min_interval
        self._last_duration = 0.0
        self._changed = threading.Event()
        self._stopping = threading.Event()

    def request(self) -> None:
        self._changed.set()

    def stop(self) -> None:
        self._stopping.set()
        self._changed.set()
        self.join()

    def run(self) -> None:
        while True:
            self._changed.wait()
            if self._stopping.wait(max(self._min_interval, 4 * self._last_duration)):
                return  # the caller rewrites the mirror once more after stop()
            self._changed.clear()
            started = time.perf_counter()
            try:
                self._sync()
            except Exception as err:  # e.g. disk full: labels stay safe in SQLite; try again next batch
                print(f"label store: could not rewrite the mirror ({err}); will retry", file=sys.stderr)
                self._changed.set()
            self._last_duration = time.perf_counter() - started


def _upsert(conn: sqlite3.Connection, label: Annotation, origin: str) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO labels (paragraph_id, task, annotator, label, rationale, note, origin, saved_at, "
        "suggestion_shown, suggestion_accepted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (label.paragraph_id, label.task, label.annotator, label.label, label.rationale, label.note,
         origin, time.time(), label.suggestion_shown, label.suggestion_accepted))
