"""Tables the notebooks show: class balance, paragraph lengths, examples, and the champion's
out-of-fold mistakes with their scores and the annotators' rationales.

Pure functions over the pipeline's own outputs (the paragraphs table, the labelled frame,
the annotations), so notebooks only load, call and plot. Label columns in the frame are
schema class indices (-1 = no gold label), as `pipeline.dataset.load_frame` returns them.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from pipeline.config import OUT_OF_FOLD_FILE
from pipeline.dataset import MISSING
from pipeline.labels import Annotation
from pipeline.schema import LabelSchema


def class_balance(frame: pd.DataFrame, schema: LabelSchema, by: str = "source") -> pd.DataFrame:
    """Gold-labelled paragraphs per task, `by` value and class (every class listed, zeros included)."""
    rows = []
    for task in schema.task_names:
        labelled = frame[frame[task] != MISSING]
        for group, part in labelled.groupby(by, sort=True):
            counts = np.bincount(part[task], minlength=len(schema.labels(task)))
            rows += [{"task": task, by: group, "class": name, "paragraphs": int(n), "share": n / len(part)}
                     for name, n in zip(schema.labels(task), counts)]
    return pd.DataFrame(rows, columns=["task", by, "class", "paragraphs", "share"])


def paragraph_lengths(paragraphs: pd.DataFrame, labelled_ids: Iterable[str] = ()) -> pd.DataFrame:
    """Words per paragraph with its source, topic flag and whether it carries a gold label."""
    labelled = set(labelled_ids)
    return pd.DataFrame({
        "paragraph_id": paragraphs["paragraph_id"],
        "source": paragraphs["source"],
        "on_topic": paragraphs["on_topic"],
        "labelled": paragraphs["paragraph_id"].isin(labelled),
        "words": paragraphs["text"].str.split().str.len(),
    })


def examples_per_class(frame: pd.DataFrame, schema: LabelSchema, task: str, n: int = 2,
                       seed: int = 0) -> pd.DataFrame:
    """Up to `n` random gold examples of each class of `task`, in schema class order."""
    picks = []
    for index, name in enumerate(schema.labels(task)):
        rows = frame[frame[task] == index]
        picks.append(rows.sample(min(n, len(rows)), random_state=seed).assign(**{"class": name}))
    return pd.concat(picks)[["class", "paragraph_id", "source", "text"]].reset_index(drop=True)


def out_of_fold(model_dir: Path) -> pd.DataFrame:
    """The out-of-fold predictions the train stage wrote for a family (`models/<family>/`): one row per
    (paragraph, task) with a gold label; predictions are those of plots/<family>/confusion/."""
    path = Path(model_dir) / OUT_OF_FOLD_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no out-of-fold predictions; run `dvc repro` (the train stage writes them)")
    frame = pd.read_parquet(path)
    return frame.assign(scores=frame["scores"].map(json.loads))


def rationales(annotations: Iterable[Annotation]) -> dict[tuple[str, str], str]:
    """(paragraph_id, task) -> "annotator (label): rationale" for each annotator, one per line."""
    notes: dict[tuple[str, str], list[str]] = defaultdict(list)
    for a in sorted(annotations, key=lambda a: a.annotator):
        notes[(a.paragraph_id, a.task)].append(f"{a.annotator} ({a.label}): {a.rationale or '-'}")
    return {key: "\n".join(lines) for key, lines in notes.items()}


def misclassified(oof: pd.DataFrame, annotations: Iterable[Annotation]) -> pd.DataFrame:
    """Out-of-fold mistakes, most confident first, with the annotators' labels and rationales."""
    notes = rationales(annotations)
    wrong = oof[oof["gold"] != oof["predicted"]].copy()
    wrong["rationale"] = [notes.get((pid, task), "") for pid, task in zip(wrong["paragraph_id"], wrong["task"])]
    return wrong.sort_values(["task", "confidence"], ascending=[True, False]).reset_index(drop=True)


def confusion_by_source(oof: pd.DataFrame, schema: LabelSchema, task: str) -> pd.DataFrame:
    """Counts of (source, gold) x predicted for one task; classes in schema order, zeros kept."""
    rows = oof[oof["task"] == task]
    classes = schema.labels(task)
    table = pd.crosstab([rows["source"], pd.Categorical(rows["gold"], classes)],
                        pd.Categorical(rows["predicted"], classes), dropna=False)
    table.index.names, table.columns.name = ["source", "gold"], "predicted"
    return table[table.sum(axis=1) > 0]
