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

On import, a record names its paragraph by id (`paragraph_id`, or the user's own `id` that
`stance ingest` kept from a table) or else by its exact text; records that match no paragraph
are reported with their line (or task) and left out. Class and task names match the schema
case-insensitively; `annotator` may be given once for a file that has none. Records of the right
syntax but the wrong shape (a string where an object belongs, numbers where text belongs) are
problems naming file, record and field, never a traceback.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from pipeline.annotate.auth import check_name
from pipeline.labels import Annotation, LabelFileError, json_objects, parse_json
from pipeline.schema import LabelSchema

FORMATS = ("label-studio", "prodigy", "doccano", "csv")
CSV_FIELDS = ["paragraph_id", "task", "label", "annotator", "rationale", "note", "text"]
CSV_IMPORT_FIELDS = ["id", *CSV_FIELDS]  # `id`: the user's own id, kept by `stance ingest` as the paragraph id
CSV_FIELD_LIMIT = 16 * 1024 * 1024  # a rationale or a whole article may sit in one cell; 16 MB bounds memory

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


class ParagraphIndex:
    """The known paragraphs, to resolve a record's id (or, failing that, its exact text) to a paragraph id."""

    def __init__(self, ids: Iterable[str], texts: Iterable[tuple[str, str]] = ()):
        self.ids = set(ids)
        self.by_text: dict[str, str] = {}
        for pid, text in texts:
            self.by_text.setdefault(text, pid)

    def match(self, paragraph_id: Any, text: Any) -> str | None:
        if isinstance(paragraph_id, (str, int)) and not isinstance(paragraph_id, bool) and str(paragraph_id) in self.ids:
            return str(paragraph_id)
        if isinstance(text, str):
            return self.by_text.get(text) or self.by_text.get(text.strip())
        return None


@dataclass
class ImportResult:
    labels: list[Annotation]
    unmatched: list[str] = field(default_factory=list)  # "where: why" for records that match no paragraph
    notes: list[str] = field(default_factory=list)      # e.g. CSV columns that were ignored


@dataclass
class _Context:
    """What every reader needs besides the text: the schema, the paragraphs and a default annotator."""
    schema: LabelSchema
    paragraphs: ParagraphIndex | None
    annotator: str | None
    problems: list[str] = field(default_factory=list)
    result: ImportResult = field(default_factory=lambda: ImportResult([]))


def import_labels(fmt: str, text: str, where: str, schema: LabelSchema, paragraphs: ParagraphIndex | None = None,
                  annotator: str | None = None) -> ImportResult:
    """Parse `text` (the content of file `where`) into labels matched to `paragraphs` (None: take ids as given).

    Raises LabelFileError listing every invalid record; records that match no paragraph are not errors,
    they are listed in `unmatched`."""
    readers: dict[str, Callable[[str, str, _Context], None]] = {
        "label-studio": _import_label_studio, "prodigy": _import_prodigy,
        "doccano": _import_doccano, "csv": _import_csv}
    if fmt not in readers:
        raise ValueError(f"unknown format '{fmt}' (known: {', '.join(FORMATS)})")
    ctx = _Context(schema, paragraphs, annotator)
    if annotator is not None:
        try:
            check_name(annotator)
        except ValueError as err:
            raise LabelFileError([f"--annotator: {err}"]) from None
    readers[fmt](text, where, ctx)
    seen: dict[tuple[str, str, str], int] = {}
    for a in ctx.result.labels:
        key = (a.paragraph_id, a.task, a.annotator)
        seen[key] = seen.get(key, 0) + 1
    ctx.problems += [f"{where}: paragraph '{p}', task '{t}', annotator '{n}': labelled {c} times"
                     for (p, t, n), c in seen.items() if c > 1]
    if ctx.problems:
        raise LabelFileError(ctx.problems)
    return ctx.result


# --- shared helpers -----------------------------------------------------------------------

def _fields(a: Annotation) -> dict[str, str]:
    return {"paragraph_id": a.paragraph_id, "task": a.task, "label": a.label, "annotator": a.annotator,
            "rationale": a.rationale, "note": a.note}


def _jsonl(objects: Iterable[dict]) -> str:
    return "".join(json.dumps(obj, ensure_ascii=False) + "\n" for obj in objects)


def _make(where: str, ctx: _Context, paragraph_id: Any = None, text: Any = None, **fields: Any) -> None:
    """Add one validated label to `ctx.result`, or append the reasons to `ctx.problems`; a valid record
    that matches no paragraph goes to `ctx.result.unmatched`."""
    problems = ctx.problems
    before = len(problems)
    if fields.get("annotator") in (None, "") and ctx.annotator:
        fields["annotator"] = ctx.annotator
    for name in ("task", "label", "annotator"):
        if not isinstance(fields.get(name), str) or not fields[name].strip():
            hint = " (or give --annotator)" if name == "annotator" else ""
            problems.append(f"{where}: field '{name}': missing or not a non-empty string{hint}")
    for name in ("rationale", "note"):
        if not isinstance(fields.get(name) or "", str):
            problems.append(f"{where}: field '{name}': must be a string")
    if paragraph_id is not None and (not isinstance(paragraph_id, (str, int)) or isinstance(paragraph_id, bool)
                                     or not str(paragraph_id).strip()):
        problems.append(f"{where}: field 'paragraph_id': must be a non-empty string")
    elif paragraph_id is None and not (isinstance(text, str) and text.strip()):
        problems.append(f"{where}: field 'paragraph_id': missing (and no text to match by)")
    if len(problems) > before:
        return
    try:
        check_name(fields["annotator"])
    except ValueError as err:
        problems.append(f"{where}: field 'annotator': {err}")
        return
    task, label = ctx.schema.canonical(fields["task"].strip(), fields["label"].strip())
    if msg := ctx.schema.check(task, label):
        problems.append(f"{where}: field '{'task' if task not in ctx.schema.tasks else 'label'}': {msg}")
        return
    if ctx.paragraphs is None:
        matched = str(paragraph_id) if paragraph_id is not None else None
    else:
        matched = ctx.paragraphs.match(paragraph_id, text)
    if matched is None:
        ctx.result.unmatched.append(
            f"{where}: no paragraph " + (f"with id '{paragraph_id}'" + (" or this text" if text else "")
                                         if paragraph_id is not None else "with this exact text"))
        return
    ctx.result.labels.append(Annotation(paragraph_id=matched, task=task, label=label,
                                        annotator=fields["annotator"], rationale=fields.get("rationale") or "",
                                        note=fields.get("note") or ""))


def _shape(value: Any, kind: type, default: Any) -> Any:
    """`value` when it has the expected JSON type, `default` when absent, else None (a shape problem)."""
    if value is None:
        return default
    return value if isinstance(value, kind) else None


def _strings(value: Any) -> list[str] | None:
    """A JSON list of strings, or None when it is anything else."""
    return value if isinstance(value, list) and all(isinstance(v, str) for v in value) else None


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


def _import_label_studio(text: str, where: str, ctx: _Context) -> None:
    problems, schema = ctx.problems, ctx.schema
    tasks = parse_json(text, where, list, "a JSON array of Label Studio tasks", problems)
    if tasks is None:
        return
    for number, task in enumerate(tasks, start=1):
        at = f"{where}: task #{number}"
        data = task.get("data") if isinstance(task, dict) else None
        if not isinstance(data, dict):
            problems.append(f"{at}: field 'data': expected an object")
            continue
        reference = data.get("paragraph_id", data.get("id"))
        if reference is None and not isinstance(data.get("text"), str):
            problems.append(f"{at}: field 'data.paragraph_id': missing (and no data.text to match by)")
            continue
        annotations = _shape(task.get("annotations"), list, [])
        if annotations is None:
            problems.append(f"{at}: field 'annotations': expected a list")
            continue
        for index, annotation in enumerate(annotations, start=1):
            if not isinstance(annotation, dict) or annotation.get("was_cancelled"):
                continue
            here = f"{at}, annotation #{index}"
            annotator = _annotator_of(annotation.get("completed_by"))
            results = _shape(annotation.get("result"), list, [])
            if results is None:
                problems.append(f"{here}: field 'result': expected a list")
                continue
            chosen: dict[str, str] = {}
            extra: dict[tuple[str, str], str] = {}
            for k, item in enumerate(results, start=1):
                if not isinstance(item, dict):
                    problems.append(f"{here}: field 'result[{k}]': expected an object, got {type(item).__name__}")
                    continue
                name, value = item.get("from_name"), _shape(item.get("value"), dict, {})
                if value is None:
                    problems.append(f"{here}: field 'result[{k}].value': expected an object")
                    continue
                if item.get("type") == "choices" and isinstance(name, str) and ctx.schema.canonical(name, "")[0] in schema.tasks:
                    choices = _strings(value.get("choices"))
                    if choices is None or len(choices) != 1:
                        problems.append(f"{here}: field '{name}': expected exactly one choice (a string)")
                        continue
                    chosen[name] = choices[0]
                elif item.get("type") == "textarea" and isinstance(name, str) and name.rpartition("_")[2] in (
                        "rationale", "note") and name.rpartition("_")[0] in schema.tasks:
                    lines = _strings(_shape(value.get("text"), list, []))
                    if lines is None:
                        problems.append(f"{here}: field '{name}.text': expected a list of strings")
                        continue
                    task_name, _, kind = name.rpartition("_")
                    extra[(task_name, kind)] = "\n".join(lines)
                else:
                    problems.append(f"{here}: field '{name}': not a task of the schema "
                                    f"(tasks: {', '.join(schema.task_names)})")
            for task_name, label in chosen.items():
                _make(here, ctx, paragraph_id=reference, text=data.get("text"), task=task_name, label=label,
                      annotator=annotator, rationale=extra.get((task_name, "rationale"), ""),
                      note=extra.get((task_name, "note"), ""))


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


def _import_prodigy(text: str, where: str, ctx: _Context) -> None:
    for _, at, obj in json_objects(text, where, ctx.problems):
        if obj.get("answer") not in ("accept", "reject", "ignore"):
            ctx.problems.append(f"{at}: field 'answer': expected accept, reject or ignore")
            continue
        if obj["answer"] != "accept":  # reject/ignore answers carry no class
            continue
        meta, accept = _shape(obj.get("meta"), dict, {}), _strings(_shape(obj.get("accept"), list, []))
        if meta is None:
            ctx.problems.append(f"{at}: field 'meta': expected an object")
            continue
        if accept is None or len(accept) != 1:
            ctx.problems.append(f"{at}: field 'accept': expected a list of exactly one class name")
            continue
        _make(at, ctx, paragraph_id=meta.get("paragraph_id", meta.get("id")), text=obj.get("text"),
              task=obj.get("label"), label=accept[0], annotator=obj.get("_annotator_id"),
              rationale=obj.get("rationale"), note=obj.get("note"))


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


def _import_doccano(text: str, where: str, ctx: _Context) -> None:
    for _, at, obj in json_objects(text, where, ctx.problems):
        rationale, note = obj.get("rationale") or {}, obj.get("note") or {}
        if not isinstance(rationale, dict) or not isinstance(note, dict):
            ctx.problems.append(f"{at}: fields 'rationale'/'note': expected an object keyed by task")
            continue
        items = _shape(obj.get("label"), list, [])
        if items is None:
            ctx.problems.append(f"{at}: field 'label': expected a list of 'task:class' strings")
            continue
        for item in items:
            task, sep, label = item.partition(":") if isinstance(item, str) else ("", "", "")
            if not sep:
                ctx.problems.append(f"{at}: field 'label': '{item}' is not 'task:class'")
                continue
            _make(at, ctx, paragraph_id=obj.get("paragraph_id", obj.get("id")), text=obj.get("text"), task=task,
                  label=label, annotator=obj.get("user"), rationale=rationale.get(task), note=note.get(task))


# --- CSV ------------------------------------------------------------------------------------

def _import_csv(text: str, where: str, ctx: _Context) -> None:
    """Columns: `task`, `label`, and `id` or `paragraph_id` or `text`; `annotator` unless --annotator gives
    one. Other columns are ignored (and named in the result's notes). Problems are reported per row."""
    csv.field_size_limit(max(csv.field_size_limit(), min(CSV_FIELD_LIMIT, sys.maxsize)))
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        header = reader.fieldnames or []
    except csv.Error as err:
        ctx.problems.append(f"{where}:1: malformed CSV header: {err}")
        return
    missing = [f for f in ("task", "label") if f not in header]
    if not {"id", "paragraph_id", "text"} & set(header):
        missing.append("id (or paragraph_id, or text)")
    if "annotator" not in header and not ctx.annotator:
        missing.append("annotator (or give --annotator)")
    if missing:
        ctx.problems.append(f"{where}:1: missing column(s) {', '.join(missing)} (columns: {', '.join(header)})")
        return
    ignored = [c for c in header if c not in CSV_IMPORT_FIELDS]
    if ignored:
        ctx.result.notes.append(f"{where}: ignored column(s) {', '.join(ignored)} "
                                f"(known: {', '.join(CSV_IMPORT_FIELDS)})")
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            ctx.problems.append(f"{where}:{reader.line_num}: malformed CSV: {err}")
            continue
        at = f"{where}:{reader.line_num}"
        if None in row:
            ctx.problems.append(f"{at}: more fields than the header's {len(header)}")
            continue
        reference = row.get("id") or row.get("paragraph_id") or None
        _make(at, ctx, paragraph_id=reference, text=row.get("text") or None,
              **{k: row.get(k) for k in ("task", "label", "annotator", "rationale", "note")})
