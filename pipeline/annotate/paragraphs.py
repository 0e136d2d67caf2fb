"""The pool of paragraphs to label: data/paragraphs.parquet, re-read when it changes.

Re-reading on change (not once at start) is what makes paragraphs from a new
`stance ingest` show up in a running app.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.config import ConfigError
from pipeline.ingest import COLUMNS, OPTIONAL_COLUMNS, REQUIRED_COLUMNS


@dataclass(frozen=True)
class Snapshot:
    frame: pd.DataFrame          # indexed by paragraph_id, article order
    version: tuple[int, int]     # (mtime_ns, size) of the parquet it came from

    def has(self, paragraph_id: str) -> bool:
        return paragraph_id in self.frame.index

    def record(self, paragraph_id: str) -> dict:
        row = self.frame.loc[paragraph_id]
        return {"paragraph_id": paragraph_id, "source": str(row["source"]), "title": str(row["title"]),
                "article_index": int(row["article_index"]), "paragraph_index": int(row["paragraph_index"]),
                "on_topic": bool(row["on_topic"]), "text": str(row["text"])}

    def neighbours(self, paragraph_id: str) -> tuple[str | None, str | None]:
        """Text of the previous and next paragraph of the same article (None at the edges)."""
        row = self.frame.loc[paragraph_id]
        article = self.frame[(self.frame["source"] == row["source"])
                             & (self.frame["article_index"] == row["article_index"])]
        before = article[article["paragraph_index"] < row["paragraph_index"]]
        after = article[article["paragraph_index"] > row["paragraph_index"]]
        return (str(before["text"].iloc[-1]) if len(before) else None,
                str(after["text"].iloc[0]) if len(after) else None)


def read_paragraphs(path: Path) -> pd.DataFrame:
    """Load and check the parquet written by `stance ingest`."""
    try:
        frame = pd.read_parquet(path)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no paragraphs yet; run `stance ingest` first") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ConfigError(f"{path}: missing column(s) {', '.join(missing)}")
    frame = frame.assign(**{c: v for c, v in OPTIONAL_COLUMNS.items() if c not in frame.columns})
    frame = frame[COLUMNS].astype({"paragraph_id": str})
    dupes = frame["paragraph_id"][frame["paragraph_id"].duplicated()]
    if len(dupes):
        raise ConfigError(f"{path}: field 'paragraph_id': duplicate id '{dupes.iloc[0]}'")
    frame = frame.sort_values(["source", "article_index", "paragraph_index"], kind="stable")
    return frame.set_index("paragraph_id", drop=False)


class ParagraphPool:
    """Thread-safe access to the latest paragraphs parquet."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None

    def current(self) -> Snapshot:
        stat = self.path.stat() if self.path.exists() else None
        version = (stat.st_mtime_ns, stat.st_size) if stat else (0, 0)
        with self._lock:
            if self._snapshot is None or self._snapshot.version != version:
                self._snapshot = Snapshot(read_paragraphs(self.path), version)
            return self._snapshot
