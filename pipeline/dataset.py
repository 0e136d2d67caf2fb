"""Stage `dataset`: paragraphs + label files -> a Hugging Face dataset and its card.

One row per paragraph that has a gold label for at least one task; a task without a
gold label for that paragraph holds -1 (ClassLabel's "no label"), so partial labels (a
paragraph labelled on some tasks only) are supported: each task trains and is evaluated on
its own labelled rows. The `article` column ("source#article_index") and ingest's `group`
column are what cross-validation can keep together (`evaluate.group_by`).
"""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pandas as pd

from pipeline.config import load_params, resolve
from pipeline.ingest import DROP_REASONS, article_keys, load_drop_report, load_paragraphs, origins
from pipeline.labels import agreement, conflicts, gold_labels, load_adjudications, load_annotations
from pipeline.schema import LabelSchema, load_schema
from pipeline.stage_times import timed

MISSING = -1


def build_frame(paragraphs: pd.DataFrame, gold: dict[tuple[str, str], str], schema: LabelSchema) -> pd.DataFrame:
    """Labelled paragraphs with one integer label column per task (schema class index or -1)."""
    labelled_ids = {pid for pid, _ in gold}
    frame = paragraphs[paragraphs["paragraph_id"].isin(labelled_ids)].copy()
    frame["article"] = article_keys(frame)
    frame["origin"] = origins(frame)
    frame["group"] = frame["group"].astype(str) if "group" in frame else frame["article"]
    for task in schema.task_names:
        names = schema.labels(task)
        frame[task] = [names.index(gold[(pid, task)]) if (pid, task) in gold else MISSING
                       for pid in frame["paragraph_id"]]
    columns = ["paragraph_id", "source", "origin", "article", "group", "on_topic", "text", *schema.task_names]
    return frame[columns].sort_values("paragraph_id").reset_index(drop=True)


def to_hf_dataset(frame: pd.DataFrame, schema: LabelSchema) -> datasets.Dataset:
    features = datasets.Features({
        "paragraph_id": datasets.Value("string"),
        "source": datasets.Value("string"),
        "origin": datasets.Value("string"),
        "article": datasets.Value("string"),
        "group": datasets.Value("string"),
        "on_topic": datasets.Value("bool"),
        "text": datasets.Value("string"),
        **{task: datasets.ClassLabel(names=schema.labels(task)) for task in schema.task_names},
    })
    return datasets.Dataset.from_pandas(frame, features=features, preserve_index=False)


def class_counts(frame: pd.DataFrame, schema: LabelSchema) -> dict[str, dict[str, int]]:
    return {task: {name: int((frame[task] == i).sum()) for i, name in enumerate(schema.labels(task))}
            for task in schema.task_names}


def summarize(frame: pd.DataFrame, annotations, adjudications, schema: LabelSchema) -> dict:
    """Counts and agreement: what the dataset card and `dvc metrics` show."""
    disagreements = conflicts(annotations, adjudications)
    adjudicated = {(a.paragraph_id, a.task) for a in adjudications}
    return {
        "paragraphs": int(len(frame)),
        "articles": int(frame["article"].nunique()),
        "annotators": sorted({a.annotator for a in annotations}),
        "annotations": len(annotations),
        "labelled_per_task": {task: int((frame[task] >= 0).sum()) for task in schema.task_names},
        "class_counts": class_counts(frame, schema),
        "by_origin": {
            origin: {"paragraphs": int(len(part)), "articles": int(part["article"].nunique()),
                     "class_counts": class_counts(part, schema)}
            for origin, part in frame.groupby("origin", sort=True)
        },
        "agreement": agreement(annotations, schema),
        "disagreements": len(disagreements),
        "disagreements_unresolved": len([k for k in disagreements if k not in adjudicated]),
    }


def dataset_card(summary: dict, schema: LabelSchema) -> str:
    lines = [
        "# Dataset card: stance paragraphs",
        "",
        "Built by `stance dataset` (DVC stage `dataset`) from `data/paragraphs.parquet` and the label files in `labels/`.",
        "Gold label per (paragraph, task): the adjudicated label where annotators disagreed, otherwise the",
        "unanimous label. Unresolved disagreements are left out until adjudicated (`stance labels conflicts`).",
        "",
        f"- Paragraphs with a gold label: **{summary['paragraphs']}** from {summary['articles']} articles",
        f"- Annotations: {summary['annotations']} by annotators {', '.join(summary['annotators'])}",
        f"- Disagreements: {summary['disagreements']} ({summary['disagreements_unresolved']} unresolved)",
        "",
        "## Labelled paragraphs per task",
        "",
        "Partial labels are supported: a paragraph may carry a gold label for some tasks only (the others",
        "hold -1); each task trains and is evaluated on its own labelled paragraphs.",
        "",
        "| task | labelled paragraphs |",
        "|---|---|",
        *[f"| {task} | {n} |" for task, n in summary.get("labelled_per_task", {}).items()],
        "",
        "## Class counts",
        "",
    ]
    origins = list(summary["by_origin"])
    for task, counts in summary["class_counts"].items():
        lines += [f"**{task}** — {schema.tasks[task].question}", "",
                  "| class | paragraphs | " + " | ".join(origins) + " |", "|---|---|" + "---|" * len(origins)]
        lines += [f"| {name} | {n} | " + " | ".join(str(summary["by_origin"][o]["class_counts"][task][name])
                                                   for o in origins) + " |"
                  for name, n in counts.items()] + [""]
    lines += ["## By origin", "",
              "`scraped`: real pages. `authored`: articles the team wrote from its own knowledge in the voices of the",
              "outlets analysts score (see labels/ANNOTATION_LOG.md); evaluation tests on scraped paragraphs only.", "",
              "| origin | paragraphs | articles |", "|---|---|---|"]
    lines += [f"| {o} | {v['paragraphs']} | {v['articles']} |" for o, v in summary["by_origin"].items()] + [""]
    lines += ["## Inter-annotator agreement", "",
              "| task | items with 2+ annotators | % agreement | Krippendorff's alpha | Cohen's kappa (pair: kappa, n) |",
              "|---|---|---|---|---|"]
    for task, a in summary["agreement"].items():
        pairs = "; ".join(f"{' & '.join(p['annotators'])}: {p['cohen_kappa']}, n={p['n']}"
                          for p in a["pairwise"]) or "—"
        lines.append(f"| {task} | {a['items_multiply_annotated']} | {a['percent_agreement']} | "
                     f"{a['krippendorff_alpha']} | {pairs} |")
    lines += ["", *ingest_report_lines(summary.get("ingest", {}))]
    return "\n".join(lines) + "\n"


def ingest_report_lines(report: dict[str, dict[str, int]]) -> list[str]:
    """The card's section on what `stance ingest` kept and dropped per file."""
    lines = ["## What ingest kept and dropped", "",
             "Per raw file: paragraphs kept, and blocks dropped because they were too short (pages only: fewer",
             "than `ingest.min_words` words; rows of tables are never dropped for length), boilerplate (site",
             "furniture, credits, link lists, text after an end-of-article marker), headings (kept as titles),",
             "duplicates (a repeated block, or an id or text already seen) or empty (table rows without text).",
             ""]
    if not report:
        return lines + ["No report: the paragraphs table predates it; re-run `stance ingest`."]
    lines += [f"| file | kept | {' | '.join(r.replace('_', ' ') for r in DROP_REASONS)} |",
              "|---|---|" + "---|" * len(DROP_REASONS)]
    lines += [f"| {name} | {c.get('kept', 0)} | {' | '.join(str(c.get(r, 0)) for r in DROP_REASONS)} |"
              for name, c in report.items()]
    return lines


def build(paragraphs: pd.DataFrame, annotations_path: Path, adjudications_path: Path,
          schema: LabelSchema) -> tuple[pd.DataFrame, dict]:
    """Validate the label files against schema and paragraphs, then build the labelled frame."""
    ids = set(paragraphs["paragraph_id"])
    annotations = load_annotations(annotations_path, schema, ids)
    adjudications = load_adjudications(adjudications_path, schema, ids)
    frame = build_frame(paragraphs, gold_labels(annotations, adjudications), schema)
    return frame, summarize(frame, annotations, adjudications, schema)


def write(frame: pd.DataFrame, summary: dict, schema: LabelSchema, out_dir: Path, card: Path,
          summary_path: Path) -> None:
    to_hf_dataset(frame, schema).save_to_disk(str(out_dir))
    card.write_text(dataset_card(summary, schema), encoding="utf-8")
    summary_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def run() -> dict:
    """The stage: validate the label files against the schema and the paragraphs, write the dataset, its
    card and its summary where params.yaml says. Returns the summary."""
    with timed("dataset"):
        params = load_params()
        schema = load_schema()
        paragraphs_file = resolve(params.ingest.paragraphs)
        frame, summary = build(load_paragraphs(paragraphs_file), resolve(params.labels.annotations),
                               resolve(params.labels.adjudications), schema)
        summary["ingest"] = load_drop_report(paragraphs_file)
        write(frame, summary, schema, resolve(params.dataset.out_dir), resolve(params.dataset.card),
              resolve(params.dataset.summary))
    return summary


def load_frame(out_dir: Path) -> pd.DataFrame:
    """The labelled frame back from the saved dataset (integer labels, -1 = none given)."""
    return datasets.load_from_disk(str(out_dir)).to_pandas()
