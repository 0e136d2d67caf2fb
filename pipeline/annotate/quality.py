"""Label quality: conflicts, adjudication and likely label errors.

Agreement statistics and gold-label resolution live in pipeline/labels.py; this module
adds what a reviewer acts on: the list of disagreements, a way to record the final
word on one, and the labels a model trained on everything else finds implausible.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from filelock import FileLock

from pipeline.evaluate import cross_validate
from pipeline.ingest import article_keys
from pipeline.labels import (Adjudication, Annotation, annotator_confusion, by_item, conflicts,
                             gold_labels, write_jsonl_sorted)
from pipeline.models import build_classifier
from pipeline.schema import LabelSchema


@dataclass(frozen=True)
class Conflict:
    paragraph_id: str
    task: str
    votes: dict[str, str]              # annotator -> label
    adjudication: Adjudication | None  # the final word, if someone gave it


def list_conflicts(annotations: list[Annotation], adjudications: list[Adjudication]) -> list[Conflict]:
    """Disagreements, unadjudicated first (they block training), then by paragraph and task."""
    final = {(a.paragraph_id, a.task): a for a in adjudications}
    rows = [Conflict(pid, task, dict(sorted(votes.items())), final.get((pid, task)))
            for (pid, task), votes in conflicts(annotations, adjudications).items()]
    return sorted(rows, key=lambda c: (c.adjudication is not None, c.paragraph_id, c.task))


def confusions(annotations: list[Annotation], schema: LabelSchema) -> dict[str, dict[tuple[str, str], np.ndarray]]:
    """Per task, per annotator pair (first, second) with shared items: the confusion matrix
    (rows: first, columns: second)."""
    items = by_item(annotations)
    out: dict[str, dict[tuple[str, str], np.ndarray]] = {}
    for task in schema.task_names:
        pairs: dict[tuple[str, str], np.ndarray] = {}
        annotators = sorted({a for (_, t), votes in items.items() if t == task and len(votes) > 1 for a in votes})
        for i, first in enumerate(annotators):
            for second in annotators[i + 1:]:
                matrix = annotator_confusion(annotations, schema, task, first, second)
                if matrix.sum():
                    pairs[(first, second)] = matrix
        out[task] = pairs
    return out


def add_adjudication(existing: list[Adjudication], annotations: list[Annotation], schema: LabelSchema,
                     decision: Adjudication) -> list[Adjudication]:
    """The adjudications with `decision` recorded (replacing an earlier one on the same item)."""
    if problem := schema.check(decision.task, decision.label):
        raise ValueError(problem)
    if (decision.paragraph_id, decision.task) not in by_item(annotations):
        raise ValueError(f"paragraph '{decision.paragraph_id}' has no '{decision.task}' annotation to adjudicate")
    if not decision.adjudicator.strip():
        raise ValueError("the adjudicator's name (--by) must not be empty")
    kept = [a for a in existing if (a.paragraph_id, a.task) != (decision.paragraph_id, decision.task)]
    return kept + [decision]


def write_adjudications(path: Path, adjudications: list[Adjudication], lock: FileLock) -> None:
    """Sorted by (paragraph_id, task), atomically, under `lock` (the label store's)."""
    records = [{"paragraph_id": a.paragraph_id, "task": a.task, "label": a.label,
                "adjudicator": a.adjudicator, "note": a.note} for a in adjudications]
    with lock:
        write_jsonl_sorted(path, records, ("paragraph_id", "task"))


def out_of_fold_proba(texts: list[str], y: np.ndarray, groups: list[str], classes: list[str],
                      family: str, hyperparams: dict[str, Any], seed: int, n_splits: int) -> np.ndarray:
    """Probabilities for every item (`y`: class indices) from a model that never saw its article:
    the evaluation's cross-validation, one repeat, with every labelled row eligible for a test fold."""
    cv = cross_validate(build_classifier(family, hyperparams, classes, seed), texts, y,
                        np.asarray(groups, dtype=object), classes, n_splits, n_repeats=1, seed=seed)
    return cv.proba[0]


def suspicious_labels(annotations: list[Annotation], adjudications: list[Adjudication], paragraphs: pd.DataFrame,
                      schema: LabelSchema, family: str, hyperparams: dict[str, Any], seed: int, n_splits: int,
                      advance: Callable[[], None] = lambda: None) -> pd.DataFrame:
    """Gold labels that cleanlab flags as likely errors, most suspicious first.

    `paragraphs` is indexed by paragraph_id with columns text, source, article_index."""
    from cleanlab.filter import find_label_issues

    gold = gold_labels(annotations, adjudications)
    votes = by_item(annotations)
    rows = []
    for task in schema.task_names:
        items = sorted((pid, label) for (pid, t), label in gold.items() if t == task and pid in paragraphs.index)
        classes = schema.labels(task)
        advance()
        if len(items) < 4 or len({label for _, label in items}) < 2:
            continue
        ids = [pid for pid, _ in items]
        frame = paragraphs.loc[ids]
        groups = list(article_keys(frame))
        if len(set(groups)) < 2:
            continue
        given = [label for _, label in items]
        y = np.array([classes.index(label) for label in given])
        proba = out_of_fold_proba(list(frame["text"]), y, groups, classes, family, hyperparams, seed, n_splits)
        flagged = find_label_issues(labels=y, pred_probs=proba, return_indices_ranked_by="self_confidence")
        for index in flagged:
            pid = ids[index]
            rows.append({"paragraph_id": pid, "task": task, "label": given[index],
                         "suggested": classes[int(proba[index].argmax())],
                         "label_probability": round(float(proba[index, y[index]]), 4),
                         "annotators": ", ".join(f"{n}={lab}" for n, lab in sorted(votes.get((pid, task), {}).items())),
                         "text": str(frame.at[pid, "text"])})
    return pd.DataFrame(rows, columns=["paragraph_id", "task", "label", "suggested", "label_probability",
                                       "annotators", "text"])
