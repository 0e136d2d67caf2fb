"""Import and export labels in other tools' formats: Label Studio, Prodigy, doccano, CSV.

Pure text-in/text-out conversions, so the round trip (export -> import gives back the
same labels, annotators, rationales and notes) is testable without any I/O. Problems
on import are collected and reported all at once with file, line (or task) and field.

Layouts, chosen so each tool can load them and nothing is lost:
- label-studio: a tasks JSON array, one task per paragraph, labelled or not (`data.paragraph_id`,
  `data.text`); one annotation per annotator (`completed_by.email`) with a `choices`
  result per schema task and `textarea` results `<task>_rationale` / `<task>_note`;
  the champion's predictions as pre-annotations when there is one.
- prodigy: JSONL, one `choice` example per (paragraph, task, annotator): `label` is the
  task, `accept` the class, `_annotator_id` the annotator, `meta.paragraph_id`.
- doccano: JSONL, one line per (paragraph, annotator), `label` a list of `task:class`.
- csv: one row per (paragraph, task, annotator), the annotations.jsonl fields plus text.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from typing import Any, Callable, Iterable

from pipeline.labels import Annotation, LabelFileError, jsonl_lines
from pipeline.schema import LabelSchema

FORMATS = ("label-studio", "prodigy", "doccano", "csv")
CSV_FIELDS = ["paragraph_id", "task", "label", "annotator", "rationale", "note", "text"]

Paragraphs = dict[str, dict]                       # paragraph_id -> {"text", "source", "title", ...}
Predictions = dict[str, dict[str, dict[str, float]]]  # paragraph_id -> task -> class -> probability


def export_labels(fmt: str, labels: Iterable[Annotation], paragraphs: Paragraphs, schema: LabelSchema,
                  predictions: Predictions | None = None) -> str:
    """Serialise labels (sorted, so the same labels give the same file)."""
    labels = sorted(labels, key=lambda a: (a.paragraph_id, a.task, a.annotator))
    if fmt == "label-studio":
        return _export_label_studio(labels, paragraphs, schema, predictions or {})
    if fmt == "prodigy":
        return _jsonl(_prodigy_line(a, paragraphs, schema) for a in labels)
    if fmt == "doccano":
        return _jsonl(_doccano_lines(labels, paragraphs))
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, CSV_FIELDS, lineterminator="\n", quoting=csv.QUOTE_ALL)
        writer.writeheader()
        for a in labels:
            row = {**_fields(a), "text": paragraphs.get(a.paragraph_id, {}).get("text", "")}
            writer.writerow({k: _inert_cell(v) for k, v in row.items()})
        return out.getvalue()
    raise ValueError(f"unknown format '{fmt}' (known: {', '.join(FORMATS)})")


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _inert_cell(value: str) -> str:
    """OWASP CSV injection advice: a cell a spreadsheet would run as a formula gets a leading "'"
    (and every cell is quoted)."""
    return "'" + value if value.startswith(FORMULA_STARTS) else value


def import_labels(fmt: str, text: str, where: str, schema: LabelSchema) -> list[Annotation]:
    """Parse `text` (the content of file `where`) into labels; raises LabelFileError listing every problem."""
    readers: dict[str, Callable[[str, str, LabelSchema, list[str]], list[Annotation]]] = {
        "label-studio": _import_label_studio, "prodigy": _import_prodigy,
        "doccano": _import_doccano, "csv": _import_csv}
    if fmt not in readers:
        raise ValueError(f"unknown format '{fmt}' (known: {', '.join(FORMATS)})")
    problems: list[str] = []
    labels = readers[fmt](text, where, schema, problems)
    seen: dict[tuple[str, str, str], int] = {}
    for a in labels:
        key = (a.paragraph_id, a.task, a.annotator)
        seen[key] = seen.get(key, 0) + 1
    problems += [f"{where}: paragraph '{p}', task '{t}', annotator '{n}': labelled {c} times"
                 for (p, t, n), c in seen.items() if c > 1]
    if problems:
        raise LabelFileError(problems)
    return labels


# --- shared helpers -----------------------------------------------------------------------

def _fields(a: Annotation) -> dict[str, str]:
    return {"paragraph_id": a.paragraph_id, "task": a.task, "label": a.label, "annotator": a.annotator,
            "rationale": a.rationale, "note": a.note}


def _jsonl(objects: Iterable[dict]) -> str:
    return "".join(json.dumps(obj, ensure_ascii=False) + "\n" for obj in objects)


def _make(where: str, schema: LabelSchema, problems: list[str], **fields: Any) -> Annotation | None:
    """One validated label, or None with the reasons appended to `problems`."""
    before = len(problems)
    for name in ("paragraph_id", "task", "label", "annotator"):
        if not isinstance(fields.get(name), str) or not fields[name].strip():
            problems.append(f"{where}: field '{name}': missing or not a non-empty string")
    for name in ("rationale", "note"):
        if not isinstance(fields.get(name) or "", str):
            problems.append(f"{where}: field '{name}': must be a string")
    if len(problems) == before and (msg := schema.check(fields["task"], fields["label"])):
        problems.append(f"{where}: field '{'task' if fields['task'] not in schema.tasks else 'label'}': {msg}")
    if len(problems) > before:
        return None
    return Annotation(paragraph_id=fields["paragraph_id"], task=fields["task"], label=fields["label"],
                      annotator=fields["annotator"], rationale=fields.get("rationale") or "",
                      note=fields.get("note") or "")


def _json_lines(text: str, where: str, problems: list[str]) -> Iterable[tuple[str, dict]]:
    for lineno, line in jsonl_lines(text):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            problems.append(f"{where}:{lineno}: malformed JSON ({err.msg} at column {err.colno})")
            continue
        if not isinstance(obj, dict):
            problems.append(f"{where}:{lineno}: expected a JSON object")
            continue
        yield f"{where}:{lineno}", obj


# --- Label Studio ---------------------------------------------------------------------------

def _choice(task: str, label: str) -> dict:
    return {"from_name": task, "to_name": "text", "type": "choices", "value": {"choices": [label]}}


def _textarea(name: str, value: str) -> dict:
    return {"from_name": name, "to_name": "text", "type": "textarea", "value": {"text": [value]}}


def _export_label_studio(labels: list[Annotation], paragraphs: Paragraphs, schema: LabelSchema,
                         predictions: Predictions) -> str:
    grouped: dict[str, dict[str, list[Annotation]]] = defaultdict(lambda: defaultdict(list))
    for a in labels:
        grouped[a.paragraph_id][a.annotator].append(a)
    ids = sorted(set(grouped) | set(paragraphs) | set(predictions))  # unlabelled paragraphs become open tasks
    tasks = []
    for number, pid in enumerate(ids, start=1):
        para = paragraphs.get(pid, {})
        task: dict[str, Any] = {
            "id": number,
            "data": {"paragraph_id": pid, "text": para.get("text", ""), "source": para.get("source", ""),
                     "title": para.get("title", "")},
            "annotations": [],
        }
        for annotator, own in sorted(grouped.get(pid, {}).items()):
            result = []
            for a in own:
                result.append(_choice(a.task, a.label))
                if a.rationale:
                    result.append(_textarea(f"{a.task}_rationale", a.rationale))
                if a.note:
                    result.append(_textarea(f"{a.task}_note", a.note))
            task["annotations"].append({"completed_by": {"email": annotator}, "was_cancelled": False,
                                        "result": result})
        if pid in predictions:
            result = []
            for name in schema.task_names:
                scores = predictions[pid].get(name)
                if scores:
                    best = max(scores, key=scores.get)
                    result.append({**_choice(name, best), "score": round(float(scores[best]), 6)})
            task["predictions"] = [{"model_version": "champion", "result": result,
                                    "score": round(min(r["score"] for r in result), 6) if result else 0.0}]
        tasks.append(task)
    return json.dumps(tasks, ensure_ascii=False, indent=1) + "\n"


def _annotator_of(completed_by: Any) -> Any:
    """Label Studio writes a user object (with email) in full exports and a bare id elsewhere."""
    if isinstance(completed_by, dict):
        return completed_by.get("email") or completed_by.get("username") or (
            f"ls-user-{completed_by['id']}" if "id" in completed_by else None)
    if isinstance(completed_by, int):
        return f"ls-user-{completed_by}"
    return completed_by


def _import_label_studio(text: str, where: str, schema: LabelSchema, problems: list[str]) -> list[Annotation]:
    try:
        tasks = json.loads(text)
    except json.JSONDecodeError as err:
        problems.append(f"{where}:{err.lineno}: malformed JSON ({err.msg} at column {err.colno})")
        return []
    if not isinstance(tasks, list):
        problems.append(f"{where}: expected a JSON array of Label Studio tasks")
        return []
    labels = []
    for number, task in enumerate(tasks, start=1):
        at = f"{where}: task #{number}"
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("paragraph_id"), str):
            problems.append(f"{at}: field 'data.paragraph_id': missing")
            continue
        for index, annotation in enumerate(task.get("annotations") or [], start=1):
            if not isinstance(annotation, dict) or annotation.get("was_cancelled"):
                continue
            annotator = _annotator_of(annotation.get("completed_by"))
            chosen: dict[str, str] = {}
            extra: dict[tuple[str, str], str] = {}
            for item in annotation.get("result") or []:
                name, value = item.get("from_name"), item.get("value") or {}
                if item.get("type") == "choices" and name in schema.tasks:
                    choices = value.get("choices") or []
                    if len(choices) != 1:
                        problems.append(f"{at}, annotation #{index}: field '{name}': expected exactly one choice")
                        continue
                    chosen[name] = choices[0]
                elif item.get("type") == "textarea" and isinstance(name, str) and name.rpartition("_")[2] in (
                        "rationale", "note") and name.rpartition("_")[0] in schema.tasks:
                    task_name, _, kind = name.rpartition("_")
                    extra[(task_name, kind)] = "\n".join(value.get("text") or [])
                else:
                    problems.append(f"{at}, annotation #{index}: field '{name}': not a task of the schema "
                                    f"(tasks: {', '.join(schema.task_names)})")
            for task_name, label in chosen.items():
                made = _make(f"{at}, annotation #{index}", schema, problems, paragraph_id=data["paragraph_id"],
                             task=task_name, label=label, annotator=annotator,
                             rationale=extra.get((task_name, "rationale"), ""),
                             note=extra.get((task_name, "note"), ""))
                if made:
                    labels.append(made)
    return labels


# --- Prodigy --------------------------------------------------------------------------------

def _prodigy_line(a: Annotation, paragraphs: Paragraphs, schema: LabelSchema) -> dict:
    para = paragraphs.get(a.paragraph_id, {})
    line = {"text": para.get("text", ""),
            "meta": {"paragraph_id": a.paragraph_id, "source": para.get("source", ""), "title": para.get("title", "")},
            "label": a.task,
            "options": [{"id": c, "text": c} for c in schema.labels(a.task)],
            "accept": [a.label], "answer": "accept", "_view_id": "choice",
            "_annotator_id": a.annotator, "_session_id": a.annotator}
    if a.rationale:
        line["rationale"] = a.rationale
    if a.note:
        line["note"] = a.note
    return line


def _import_prodigy(text: str, where: str, schema: LabelSchema, problems: list[str]) -> list[Annotation]:
    labels = []
    for at, obj in _json_lines(text, where, problems):
        if obj.get("answer") not in ("accept", "reject", "ignore"):
            problems.append(f"{at}: field 'answer': expected accept, reject or ignore")
            continue
        if obj["answer"] != "accept":  # reject/ignore answers carry no class
            continue
        accept = obj.get("accept") or []
        if len(accept) != 1:
            problems.append(f"{at}: field 'accept': expected exactly one class, got {len(accept)}")
            continue
        made = _make(at, schema, problems, paragraph_id=(obj.get("meta") or {}).get("paragraph_id"),
                     task=obj.get("label"), label=accept[0], annotator=obj.get("_annotator_id"),
                     rationale=obj.get("rationale"), note=obj.get("note"))
        if made:
            labels.append(made)
    return labels


# --- doccano --------------------------------------------------------------------------------

def _doccano_lines(labels: list[Annotation], paragraphs: Paragraphs) -> Iterable[dict]:
    grouped: dict[tuple[str, str], list[Annotation]] = defaultdict(list)
    for a in labels:
        grouped[(a.paragraph_id, a.annotator)].append(a)
    for (pid, annotator), own in sorted(grouped.items()):
        line: dict[str, Any] = {"paragraph_id": pid, "text": paragraphs.get(pid, {}).get("text", ""),
                                "label": [f"{a.task}:{a.label}" for a in own], "user": annotator}
        if rationale := {a.task: a.rationale for a in own if a.rationale}:
            line["rationale"] = rationale
        if note := {a.task: a.note for a in own if a.note}:
            line["note"] = note
        yield line


def _import_doccano(text: str, where: str, schema: LabelSchema, problems: list[str]) -> list[Annotation]:
    labels = []
    for at, obj in _json_lines(text, where, problems):
        rationale, note = obj.get("rationale") or {}, obj.get("note") or {}
        if not isinstance(rationale, dict) or not isinstance(note, dict):
            problems.append(f"{at}: fields 'rationale'/'note': expected an object keyed by task")
            continue
        for item in obj.get("label") or []:
            task, sep, label = item.partition(":") if isinstance(item, str) else ("", "", "")
            if not sep:
                problems.append(f"{at}: field 'label': '{item}' is not 'task:class'")
                continue
            made = _make(at, schema, problems, paragraph_id=obj.get("paragraph_id"), task=task, label=label,
                         annotator=obj.get("user"), rationale=rationale.get(task), note=note.get(task))
            if made:
                labels.append(made)
    return labels


# --- CSV ------------------------------------------------------------------------------------

def _import_csv(text: str, where: str, schema: LabelSchema, problems: list[str]) -> list[Annotation]:
    reader = csv.DictReader(io.StringIO(text))
    missing = [f for f in ("paragraph_id", "task", "label", "annotator") if f not in (reader.fieldnames or [])]
    if missing:
        problems.append(f"{where}:1: missing column(s) {', '.join(missing)}")
        return []
    labels = []
    for row in reader:
        made = _make(f"{where}:{reader.line_num}", schema, problems, **{k: row.get(k) for k in CSV_FIELDS[:-1]})
        if made:
            labels.append(made)
    return labels
