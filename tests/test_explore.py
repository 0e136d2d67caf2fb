"""The notebooks' tables, checked against what the pipeline itself wrote for a trained project."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pipeline import explore
from pipeline.config import load_params, resolve
from pipeline.dataset import load_frame
from pipeline.ingest import load_paragraphs
from pipeline.labels import Annotation, load_annotations
from pipeline.schema import load_schema
from pipeline.segment import is_interview_question

pytestmark = pytest.mark.slow  # trains or serves real models, or runs the pipeline end to end


@pytest.fixture
def loaded(trained):
    params, schema = load_params(), load_schema()
    return params, schema, load_frame(resolve(params.dataset.out_dir))


@pytest.fixture(scope="module")
def oof(trained_project) -> pd.DataFrame:
    return explore.out_of_fold(trained_project / "models" / "tfidf_lr")


def test_class_balance_adds_up_to_the_dataset_summary(trained, loaded):
    _, schema, frame = loaded
    balance = explore.class_balance(frame, schema)
    summary = json.loads((trained / "data" / "dataset_summary.json").read_text())
    for task in schema.task_names:
        totals = balance[balance["task"] == task].groupby("class")["paragraphs"].sum()
        assert totals.to_dict() == summary["class_counts"][task]
        shares = balance[balance["task"] == task].groupby("source")["share"].sum()
        assert shares.round(6).eq(1).all()


def test_paragraph_lengths_and_examples(loaded):
    params, schema, frame = loaded
    paragraphs = load_paragraphs(resolve(params.ingest.paragraphs))
    lengths = explore.paragraph_lengths(paragraphs, frame["paragraph_id"])
    assert lengths["labelled"].sum() == len(frame)
    short = paragraphs.loc[lengths["words"] < params.ingest.min_words, "text"]
    assert short.map(is_interview_question).all()  # the one kind of paragraph kept however short
    task = schema.task_names[0]
    examples = explore.examples_per_class(frame, schema, task, n=2)
    assert set(examples["class"]) <= set(schema.labels(task)) and examples.groupby("class").size().max() <= 2


def test_out_of_fold_predictions_are_the_train_stages(trained, loaded, oof):
    _, schema, _ = loaded
    for task in schema.task_names:
        plotted = pd.read_csv(trained / "plots" / "tfidf_lr" / "confusion" / f"{task}.csv")
        mine = oof[oof["task"] == task].set_index("paragraph_id").loc[plotted["paragraph_id"]]
        assert mine["predicted"].tolist() == plotted["predicted"].tolist()
        assert mine["gold"].tolist() == plotted["actual"].tolist()
        assert all(abs(sum(s.values()) - 1) < 1e-3 for s in mine["scores"])


def test_misclassified_carries_rationales_most_confident_first(trained, loaded, oof):
    params, schema, _ = loaded
    annotations = load_annotations(resolve(params.labels.annotations), schema)
    wrong = explore.misclassified(oof, annotations)
    assert len(wrong) == int((oof["gold"] != oof["predicted"]).sum()) > 0
    assert (wrong["gold"] != wrong["predicted"]).all() and wrong["rationale"].str.len().gt(0).all()
    for _, part in wrong.groupby("task"):
        assert part["confidence"].is_monotonic_decreasing
    for task in schema.task_names:
        table = explore.confusion_by_source(oof, schema, task)
        assert table.to_numpy().sum() == int((oof["task"] == task).sum())
        assert list(table.columns) == schema.labels(task)


def test_rationales_list_every_annotator():
    notes = explore.rationales([Annotation("p", "t", "a", "bob", "because"), Annotation("p", "t", "b", "amy")])
    assert notes == {("p", "t"): "amy (b): -\nbob (a): because"}
