"""Where the annotation side reads and writes: the paths named in params.yaml, opened once.

The I/O edge shared by the app and the `stance labels` commands, so both see the same
files, the same store and the same validation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pipeline.annotate.paragraphs import COLUMNS, ParagraphPool
from pipeline.annotate.store import LabelStore
from pipeline.config import Params, load_params, resolve
from pipeline.labels import Adjudication, Annotation, load_adjudications, load_annotations
from pipeline.schema import LabelSchema, load_schema


@dataclass
class Project:
    params: Params
    schema: LabelSchema
    store: LabelStore
    pool: ParagraphPool
    adjudications_path: Path
    guidelines: Path

    @classmethod
    def open(cls) -> "Project":
        params = load_params()
        annotations = resolve(params.labels.annotations)
        schema_file = resolve(params.labels.schema_file)
        return cls(params=params, schema=load_schema(schema_file),
                   store=LabelStore(annotations.parent / "store.sqlite", annotations),
                   pool=ParagraphPool(resolve(params.ingest.paragraphs)),
                   adjudications_path=resolve(params.labels.adjudications),
                   guidelines=schema_file.parent / "GUIDELINES.md")

    def import_label_file(self) -> None:
        """Idempotent: labels already in annotations.jsonl (e.g. expert seeds from git) enter the store.

        Run before any write through the store, so the mirror it rewrites keeps them."""
        self.store.sync_from_file(self.annotations())

    def annotations(self) -> list[Annotation]:
        return load_annotations(self.store.annotations_path, self.schema)

    def adjudications(self) -> list[Adjudication]:
        return load_adjudications(self.adjudications_path, self.schema)

    def paragraphs(self) -> pd.DataFrame:
        """Paragraphs indexed by id; empty (with the right columns) before the first `stance ingest`."""
        if not self.pool.path.exists():
            return pd.DataFrame(columns=COLUMNS).set_index("paragraph_id", drop=False)
        return self.pool.current().frame
