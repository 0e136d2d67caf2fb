"""Pure scoring core: documents -> paragraph table with scores -> article table.

Scores come only from `StanceModel.score_frame`, the same call the MLflow pyfunc makes, so
the CLI, the pyfunc and Spark give identical numbers. Tasks and classes come from the model's
schema; nothing here names one.

Article stance (per task): the class with the highest MEAN probability over the article's
paragraphs; its confidence is that mean probability. Next to it, `share_<class>` is the share
of paragraphs whose predicted label is the class, and `top_<class>` lists the (up to k)
paragraphs predicted as that class with the highest probability for it — so a long article
that is mostly neutral but holds a few strongly worded paragraphs shows both.
"""

from __future__ import annotations

import json
from typing import Iterable

import numpy as np
import pandas as pd

from pipeline.scoring.readers import Document

BASE_COLUMNS = ["id", "doc_id", "article_index", "title", "paragraph_index", "text", "source", "date", "url"]
TASKS_COLUMN = "_tasks"  # internal: the tasks a row is scored on (None: all); not written out
ARTICLE_BASE = ["doc_id", "article_index", "title", "source", "date", "url", "n_paragraphs"]


def proba_column(task: str, label: str) -> str:
    return f"{task}__p_{label}"


def paragraph_columns(schema) -> list[str]:
    columns = list(BASE_COLUMNS)
    for task in schema.task_names:
        columns += [task] + [proba_column(task, c) for c in schema.labels(task)]
    return columns


def article_columns(schema) -> list[str]:
    columns = list(ARTICLE_BASE)
    for task in schema.task_names:
        labels = schema.labels(task)
        columns += [f"{task}__stance", f"{task}__confidence"]
        columns += [f"{task}__share_{c}" for c in labels]
        columns += [f"{task}__mean_p_{c}" for c in labels]
        columns += [f"{task}__top_{c}" for c in labels]
    return columns


def paragraphs_frame(documents: Iterable[Document]) -> pd.DataFrame:
    """One row per paragraph, unscored. A paragraph-unit row keeps its input id."""
    rows = []
    for doc in documents:
        for index, para in enumerate(doc.paragraphs):
            rows.append({
                "id": doc.doc_id if doc.unit == "paragraph" else f"{doc.doc_id}#{index}",
                "doc_id": doc.doc_id, "article_index": para.article_index, "title": para.title,
                "paragraph_index": index, "text": para.text,
                "source": doc.source, "date": doc.date, "url": doc.url, TASKS_COLUMN: doc.tasks,
            })
    return pd.DataFrame(rows, columns=[*BASE_COLUMNS, TASKS_COLUMN])


def score_texts(model, texts: list[str]) -> pd.DataFrame:
    """`model.score_frame` on length-sorted texts (similar lengths pad together), original order back."""
    if not texts:
        return model.score_frame([])
    order = np.argsort([len(t) for t in texts], kind="stable")
    scored = model.score_frame([texts[i] for i in order])
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return scored.iloc[inverse].reset_index(drop=True)


def score_paragraphs(model, frame: pd.DataFrame) -> pd.DataFrame:
    """Append per task T the label column `T` and one probability column per class."""
    scored = score_texts(model, frame["text"].tolist())
    out = frame.reset_index(drop=True).copy()
    routed = out[TASKS_COLUMN] if TASKS_COLUMN in out else pd.Series([None] * len(out))
    for task in model.schema.task_names:
        applies = np.array([tasks is None or task in tasks for tasks in routed], dtype=bool)
        out[task] = scored[task].astype(str).where(applies, None)  # a task a row is not routed to stays null
        for label in model.schema.labels(task):
            out[proba_column(task, label)] = np.where(applies, [float(s[label]) for s in scored[f"{task}_scores"]],
                                                      np.nan)
    return out[paragraph_columns(model.schema)]


def articles_frame(paragraphs: pd.DataFrame, schema, top_k: int = 3) -> pd.DataFrame:
    """Aggregate scored paragraphs per (doc_id, article_index); see the module docstring."""
    if paragraphs.empty:
        return pd.DataFrame(columns=article_columns(schema))
    keys = ["doc_id", "article_index"]
    groups = paragraphs.groupby(keys, sort=False)
    out = groups.agg(title=("title", "first"), source=("source", "first"), date=("date", "first"),
                     url=("url", "first"), n_paragraphs=("text", "size")).reset_index()
    for task in schema.task_names:
        labels = schema.labels(task)
        means = groups[[proba_column(task, c) for c in labels]].mean().to_numpy()
        best = np.nan_to_num(means, nan=-1.0).argmax(axis=1)  # an article never routed to the task: null
        out[f"{task}__stance"] = [None if np.isnan(m).all() else labels[i] for m, i in zip(means, best)]
        out[f"{task}__confidence"] = means[np.arange(len(best)), best].round(6)
        for j, label in enumerate(labels):
            out[f"{task}__share_{label}"] = (paragraphs[task] == label).groupby(
                [paragraphs[k] for k in keys], sort=False).mean().to_numpy().round(6)
            out[f"{task}__mean_p_{label}"] = means[:, j].round(6)
        for label in labels:
            out[f"{task}__top_{label}"] = _top_paragraphs(paragraphs, out[keys], task, label, top_k)
    return out[article_columns(schema)]


def _top_paragraphs(paragraphs: pd.DataFrame, keys: pd.DataFrame, task: str, label: str, k: int) -> list[str]:
    """Per article, a JSON list of its k strongest paragraphs predicted as `label`."""
    column = proba_column(task, label)
    hits = paragraphs[paragraphs[task] == label].sort_values(column, ascending=False, kind="stable")
    top = hits.groupby(["doc_id", "article_index"], sort=False).head(k)
    found: dict[tuple, list] = {}
    for doc_id, article, index, p, text in zip(top["doc_id"], top["article_index"], top["paragraph_index"],
                                                top[column], top["text"]):
        found.setdefault((doc_id, article), []).append({"paragraph_index": int(index), "p": float(p), "text": text})
    return [json.dumps(found.get((d, a), []), ensure_ascii=False)
            for d, a in zip(keys["doc_id"], keys["article_index"])]
