"""Label files are validated strictly; gold labels, agreement and the HF dataset follow from them."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from pipeline.config import ConfigError
from pipeline.dataset import build, to_hf_dataset
from pipeline.labels import (Adjudication, Annotation, LabelFileError, agreement, gold_labels,
                             krippendorff_alpha_nominal, load_annotations, write_jsonl_sorted)
from pipeline.schema import LabelSchema, load_schema

SCHEMA = load_schema()
TASK = SCHEMA.task_names[0]
LABELS = SCHEMA.labels(TASK)


def _line(**fields) -> str:
    base = {"paragraph_id": "p1", "task": TASK, "label": LABELS[0], "annotator": "ann-a", "rationale": "cue"}
    base.update(fields)
    return json.dumps({k: v for k, v in base.items() if v is not ...})


def test_every_problem_is_reported_with_file_line_and_field(tmp_path):
    path = tmp_path / "annotations.jsonl"
    path.write_text("\n".join([
        _line(),                                   # 1 ok
        _line(label="maybe", annotator="ann-b"),   # 2 unknown class
        "{not json",                               # 3 malformed
        _line(paragraph_id="nope"),                # 4 unknown paragraph
        _line(),                                   # 5 duplicate of 1
        _line(task="sentiment"),                   # 6 unknown task
        _line(annotator=...),                      # 7 missing field
        _line(colour="red"),                       # 8 unknown field
    ]) + "\n", encoding="utf-8")
    with pytest.raises(LabelFileError) as err:
        load_annotations(path, SCHEMA, paragraph_ids={"p1"})
    problems = err.value.problems
    assert f"{path}:2: field 'label': unknown class 'maybe'" in problems[0]
    assert f"{path}:3: malformed JSON" in problems[1]
    assert f"{path}:4: field 'paragraph_id': unknown paragraph id 'nope'" in problems[2]
    assert f"{path}:5: duplicate of line 1" in problems[3]
    assert f"{path}:6: field 'task': unknown task 'sentiment'" in problems[4]
    assert f"{path}:7: field 'annotator': missing" in problems[5]
    assert f"{path}:8: field 'colour': unknown field" in problems[6]


def test_schema_errors_name_the_file_and_field(tmp_path):
    bad = tmp_path / "schema.yaml"
    bad.write_text(yaml.safe_dump({"tasks": {"t": {"question": "q?", "classes": {"a": {"definition": "x"}}}}}))
    with pytest.raises(ConfigError, match=r"schema.yaml: field 'tasks.t': .*at least two classes"):
        load_schema(bad)


def test_gold_labels_prefer_adjudication_and_skip_open_disagreements():
    a, b = LABELS[0], LABELS[1]
    anns = [Annotation("p1", TASK, a, "x"), Annotation("p1", TASK, a, "y"),
            Annotation("p2", TASK, a, "x"), Annotation("p2", TASK, b, "y"),
            Annotation("p3", TASK, a, "x"), Annotation("p3", TASK, b, "y")]
    gold = gold_labels(anns, [Adjudication("p3", TASK, b, "lead")])
    assert gold == {("p1", TASK): a, ("p3", TASK): b}


def test_krippendorff_alpha_matches_the_textbook_formula():
    assert krippendorff_alpha_nominal([["a", "a"], ["b", "b"], ["a", "a"]]) == pytest.approx(1.0)
    units = [[x, y] for x, y in zip("aaabbaacca", "babbbaacaa")] + [["a", "b", "b"]]
    # alpha = 1 - (N - 1) * sum_{c != k} o_ck / sum_{c != k} n_c n_k, o from the coincidence matrix
    cats = "abc"
    o = np.zeros((3, 3))
    for u in units:
        for i, x in enumerate(u):
            for j, y in enumerate(u):
                if i != j:
                    o[cats.index(x), cats.index(y)] += 1 / (len(u) - 1)
    n_c = o.sum(axis=1)
    big_n = n_c.sum()
    off = ~np.eye(3, dtype=bool)
    expected = 1 - (big_n - 1) * o[off].sum() / (np.outer(n_c, n_c)[off].sum())
    assert krippendorff_alpha_nominal(units) == pytest.approx(expected)
    assert krippendorff_alpha_nominal([["a"]]) != krippendorff_alpha_nominal([["a"]])  # nan: nothing to compare


def test_agreement_reports_kappa_and_alpha_per_task():
    a, b = LABELS[0], LABELS[1]
    anns = []
    for i, (x, y) in enumerate([(a, a), (b, b), (a, b), (b, b), (a, a)]):
        anns += [Annotation(f"p{i}", TASK, x, "ann-a"), Annotation(f"p{i}", TASK, y, "ann-b")]
    report = agreement(anns, SCHEMA)[TASK]
    assert report["items_multiply_annotated"] == 5
    assert report["percent_agreement"] == 0.8
    from sklearn.metrics import cohen_kappa_score
    expected = cohen_kappa_score([a, b, a, b, a], [a, b, b, b, a])
    assert report["pairwise"][0]["annotators"] == ["ann-a", "ann-b"]
    assert report["pairwise"][0]["cohen_kappa"] == pytest.approx(expected, abs=1e-4)


def test_sorted_writer_is_deterministic(tmp_path):
    rows = [{"paragraph_id": "b", "task": TASK, "label": "x"}, {"paragraph_id": "a", "task": TASK, "label": "y"}]
    first, second = tmp_path / "1.jsonl", tmp_path / "2.jsonl"
    write_jsonl_sorted(first, rows, ("paragraph_id", "task"))
    write_jsonl_sorted(second, list(reversed(rows)), ("paragraph_id", "task"))
    assert first.read_bytes() == second.read_bytes()


def test_dataset_uses_schema_classlabels_and_a_new_task_needs_no_code(tmp_path):
    raw = yaml.safe_load(open(load_schema.__globals__["resolve"]("labels/schema.yaml")))
    raw["tasks"]["us_role"] = {"question": "How is the US portrayed?",
                               "classes": {"mediator": {"definition": "m"}, "spoiler": {"definition": "s"}}}
    schema = LabelSchema.model_validate(raw)
    paragraphs = pd.DataFrame({"paragraph_id": ["p1", "p2"], "source": ["s.txt", "s.txt"], "article_index": [0, 1],
                               "paragraph_index": [0, 0], "title": ["t", "t"], "on_topic": [True, True],
                               "text": ["one", "two"]})
    ann = tmp_path / "a.jsonl"
    ann.write_text("\n".join(json.dumps(r) for r in [
        {"paragraph_id": "p1", "task": "us_role", "label": "spoiler", "annotator": "x"},
        {"paragraph_id": "p2", "task": TASK, "label": LABELS[1], "annotator": "x"},
    ]) + "\n")
    frame, summary = build(paragraphs, ann, tmp_path / "none.jsonl", schema)
    assert list(frame["us_role"]) == [1, -1] and list(frame[TASK]) == [-1, 1]
    assert summary["class_counts"]["us_role"] == {"mediator": 0, "spoiler": 1}
    ds = to_hf_dataset(frame, schema)
    assert ds.features["us_role"].names == ["mediator", "spoiler"]
    assert list(frame["article"]) == ["s.txt#0", "s.txt#1"]
