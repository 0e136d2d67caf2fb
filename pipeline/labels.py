"""Label files: strict loading, gold-label resolution and inter-annotator agreement.

`labels/annotations.jsonl` holds one object per (paragraph, task, annotator);
`labels/adjudications.jsonl` holds the final word on disagreements. Every problem in
either file is reported with file, line and field, all at once, so an annotator can
fix a file in one go.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
from sklearn.metrics import cohen_kappa_score

from pipeline.annotate.auth import check_name
from pipeline.schema import LabelSchema


class LabelFileError(ValueError):
    """One or more invalid lines in a label file; `problems` lists 'file:line: field ...' strings."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class Annotation:
    paragraph_id: str
    task: str
    label: str
    annotator: str
    rationale: str = ""
    note: str = ""
    suggestion_shown: bool | None = None     # None: not recorded (labels from before suggestions, imports)
    suggestion_accepted: bool | None = None  # the label equals the model's suggestion that was shown


@dataclass(frozen=True)
class Adjudication:
    paragraph_id: str
    task: str
    label: str
    adjudicator: str
    note: str = ""


ANNOTATION_FIELDS = {"paragraph_id": True, "task": True, "label": True, "annotator": True,
                     "rationale": False, "note": False, "suggestion_shown": False, "suggestion_accepted": False}
BOOL_FIELDS = ("suggestion_shown", "suggestion_accepted")
ADJUDICATION_FIELDS = {"paragraph_id": True, "task": True, "label": True, "adjudicator": True, "note": False}
NAME_FIELDS = ("annotator", "adjudicator")


def jsonl_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of a JSONL text, split on "\\n" only.

    Labels are written with ensure_ascii=False, so a note may hold U+2028, U+2029, U+0085
    or a form feed verbatim; str.splitlines() would cut the record there.
    """
    for number, line in enumerate(text.split("\n"), start=1):
        yield number, line.removesuffix("\r")


def parse_json(text: str, where: str, expected: type, what: str, problems: list[str],
               first_line: int = 1) -> Any | None:
    """`text`, which starts at line `first_line` of `where`, parsed as JSON of type `expected` (`what` names
    it); None when it is malformed or of another type, with a problem naming the line added to `problems`."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        problems.append(f"{where}:{first_line + err.lineno - 1}: malformed JSON ({err.msg} at column {err.colno})")
        return None
    if not isinstance(value, expected):
        problems.append(f"{where}:{first_line}: expected {what}, got {type(value).__name__}")
        return None
    return value


def json_objects(text: str, where: str, problems: list[str]) -> Iterator[tuple[int, str, dict]]:
    """(line number, "file:line", object) for each JSON object line; blank lines are skipped, and a line
    that is not a JSON object becomes a problem naming its line."""
    for lineno, line in jsonl_lines(text):
        if line.strip() and (obj := parse_json(line, where, dict, "a JSON object", problems, lineno)) is not None:
            yield lineno, f"{where}:{lineno}", obj


def _read_records(path: Path, fields: dict[str, bool], schema: LabelSchema,
                  paragraph_ids: set[str] | None, key_fields: tuple[str, ...]) -> tuple[list[dict], list[str]]:
    records, problems, seen = [], [], {}
    if not path.exists():
        return records, problems
    for lineno, where, obj in json_objects(path.read_text(encoding="utf-8"), str(path), problems):
        line_problems = [f"{where}: field '{k}': unknown field (allowed: {', '.join(fields)})"
                         for k in obj if k not in fields]
        for name, required in fields.items():
            value = obj.get(name)
            if value is None and not required:
                continue
            if name in BOOL_FIELDS:
                if not isinstance(value, bool):
                    line_problems.append(f"{where}: field '{name}': must be true or false")
            elif not isinstance(value, str) or (required and not value.strip()):
                line_problems.append(f"{where}: field '{name}': {'missing' if value is None else 'must be a non-empty string'}")
            elif name in NAME_FIELDS:
                try:
                    check_name(value)
                except ValueError as err:
                    line_problems.append(f"{where}: field '{name}': {err}")
        if not line_problems:
            if msg := schema.check(obj["task"], obj["label"]):
                field = "task" if obj["task"] not in schema.tasks else "label"
                line_problems.append(f"{where}: field '{field}': {msg}")
            if paragraph_ids is not None and obj["paragraph_id"] not in paragraph_ids:
                line_problems.append(f"{where}: field 'paragraph_id': unknown paragraph id '{obj['paragraph_id']}'")
            key = tuple(obj[k] for k in key_fields)
            if key in seen:
                line_problems.append(f"{where}: duplicate of line {seen[key]} (same {', '.join(key_fields)})")
            seen.setdefault(key, lineno)
        problems.extend(line_problems)
        if not line_problems:
            records.append({k: v for k, v in obj.items() if v is not None})
    return records, problems


def load_annotations(path: Path, schema: LabelSchema, paragraph_ids: Iterable[str] | None = None) -> list[Annotation]:
    """All annotations, validated against the schema and (optionally) the known paragraph ids."""
    ids = set(paragraph_ids) if paragraph_ids is not None else None
    records, problems = _read_records(Path(path), ANNOTATION_FIELDS, schema, ids,
                                      ("paragraph_id", "task", "annotator"))
    if problems:
        raise LabelFileError(problems)
    return [Annotation(**r) for r in records]


def load_adjudications(path: Path, schema: LabelSchema, paragraph_ids: Iterable[str] | None = None) -> list[Adjudication]:
    ids = set(paragraph_ids) if paragraph_ids is not None else None
    records, problems = _read_records(Path(path), ADJUDICATION_FIELDS, schema, ids, ("paragraph_id", "task"))
    if problems:
        raise LabelFileError(problems)
    return [Adjudication(**r) for r in records]


def by_item(annotations: Iterable[Annotation]) -> dict[tuple[str, str], dict[str, str]]:
    """(paragraph_id, task) -> {annotator: label}."""
    items: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    for a in annotations:
        items[(a.paragraph_id, a.task)][a.annotator] = a.label
    return dict(items)


def gold_labels(annotations: Iterable[Annotation], adjudications: Iterable[Adjudication]) -> dict[tuple[str, str], str]:
    """The training label per (paragraph, task): the adjudication if any, else a unanimous label.

    Items whose annotators disagree and that nobody has adjudicated yet are left out
    (they show up in `conflicts`), so a model never trains on a coin flip.
    """
    final = {(a.paragraph_id, a.task): a.label for a in adjudications}
    for item, labels in by_item(annotations).items():
        if item not in final and len(set(labels.values())) == 1:
            final[item] = next(iter(labels.values()))
    return final


def conflicts(annotations: Iterable[Annotation], adjudications: Iterable[Adjudication]) -> dict[tuple[str, str], dict[str, str]]:
    """Items with disagreeing annotators, adjudicated or not."""
    return {item: labels for item, labels in by_item(annotations).items() if len(set(labels.values())) > 1}


def krippendorff_alpha_nominal(units: list[list[str]]) -> float:
    """Krippendorff's alpha for nominal data; each unit is the list of labels it received (>= 2 to count)."""
    units = [u for u in units if len(u) >= 2]
    categories = sorted({label for u in units for label in u})
    if not units or len(categories) < 2:
        return float("nan")
    index = {c: i for i, c in enumerate(categories)}
    coincidence = np.zeros((len(categories), len(categories)))
    for unit in units:
        counts = np.bincount([index[label] for label in unit], minlength=len(categories)).astype(float)
        coincidence += (np.outer(counts, counts) - np.diag(counts)) / (len(unit) - 1)
    n_c = coincidence.sum(axis=1)
    n = n_c.sum()
    observed = coincidence.sum() - np.trace(coincidence)
    expected = (n * n - (n_c ** 2).sum()) / (n - 1)
    return float(1.0 - observed / expected) if expected > 0 else float("nan")


def agreement(annotations: Iterable[Annotation], schema: LabelSchema) -> dict[str, dict]:
    """Per task: items with 2+ annotators, raw agreement, Krippendorff's alpha, and pairwise Cohen's kappa.

    `pairwise` is a list of {"annotators": [first, second], ...}: a key joined from two names
    could not be split back if a name held the separator.
    """
    items = by_item(annotations)
    report: dict[str, dict] = {}
    for task in schema.task_names:
        multi = {pid: labels for (pid, t), labels in items.items() if t == task and len(labels) >= 2}
        annotators = sorted({a for labels in multi.values() for a in labels})
        pairs = []
        for i, first in enumerate(annotators):
            for second in annotators[i + 1:]:
                both = [(l[first], l[second]) for l in multi.values() if first in l and second in l]
                if len(both) >= 2:
                    a, b = zip(*both)
                    kappa = cohen_kappa_score(a, b, labels=schema.labels(task)) if len(set(a) | set(b)) > 1 else float("nan")
                    pairs.append({"annotators": [first, second], "n": len(both),
                                  "cohen_kappa": round(float(kappa), 4)})
        report[task] = {
            "items_multiply_annotated": len(multi),
            "percent_agreement": round(float(np.mean([len(set(l.values())) == 1 for l in multi.values()])), 4) if multi else float("nan"),
            "krippendorff_alpha": round(krippendorff_alpha_nominal([list(l.values()) for l in multi.values()]), 4),
            "pairwise": pairs,
        }
    return report


def model_agreement(annotations: Iterable[Annotation], predicted: dict[tuple[str, str], str],
                    schema: LabelSchema) -> dict[str, dict]:
    """Per task, model against people, kept apart from `agreement` (people against people): every human
    label of a paragraph the model predicted counts once (n, % agreement, Cohen's kappa), plus how often a
    suggestion was shown and accepted (labels recorded before suggestions existed count in neither)."""
    report: dict[str, dict] = {}
    annotations = list(annotations)
    for task in schema.task_names:
        own = [a for a in annotations if a.task == task]
        pairs = [(a.label, predicted[(a.paragraph_id, task)]) for a in own if (a.paragraph_id, task) in predicted]
        kappa = float("nan")
        if pairs and len({label for pair in pairs for label in pair}) > 1:
            kappa = round(float(cohen_kappa_score(*zip(*pairs), labels=schema.labels(task))), 4)
        shown = [a for a in own if a.suggestion_shown]
        report[task] = {
            "n": len(pairs),
            "percent_agreement": round(float(np.mean([h == m for h, m in pairs])), 4) if pairs else float("nan"),
            "cohen_kappa": kappa,
            "suggestions_shown": len(shown),
            "suggestions_accepted": sum(bool(a.suggestion_accepted) for a in shown),
        }
    return report


def annotator_confusion(annotations: Iterable[Annotation], schema: LabelSchema, task: str,
                        first: str, second: str) -> np.ndarray:
    """Counts[i, j]: items `first` labelled class i and `second` labelled class j (schema order)."""
    labels = schema.labels(task)
    matrix = np.zeros((len(labels), len(labels)), dtype=int)
    for (pid, t), votes in by_item(annotations).items():
        if t == task and first in votes and second in votes:
            matrix[labels.index(votes[first]), labels.index(votes[second])] += 1
    return matrix


def write_jsonl_sorted(path: Path, records: Iterable[dict], key_fields: tuple[str, ...]) -> None:
    """Deterministic file: same records -> byte-identical output (sorted, fixed key order, UTF-8)."""
    rows = sorted(records, key=lambda r: tuple(r[k] for k in key_fields))
    text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=False) + "\n" for r in rows)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        import os

        os.fsync(f.fileno())
    tmp.replace(path)
