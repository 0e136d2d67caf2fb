"""Any labelled dataset works end to end: the contract, step by step through the `stance` command line only.

In a copy of the project: a 3-task favor/against/none schema with no topic block, empty label files,
data/raw holding only a CSV with columns id,text,target; then ingest, label import (id,task,label with
upper-case labels, --annotator gold), dataset, train tfidf_lr with `evaluate.group_by: id`, and score
a test CSV routed by its `target` column. Every step exits 0; every test row gets its own task's label
and every other task column is null.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import yaml
from support import EXAMPLE, REPO, stance

pytestmark = pytest.mark.slow  # trains or serves real models, or runs the pipeline end to end

def contract_project(root: Path) -> None:
    """Steps 1-3: the repository's params.yaml and labels folder, with the schema replaced, the label
    files emptied and the raw corpus replaced by one CSV of id,text,target."""
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    shutil.copytree(REPO / "labels", root / "labels", ignore=shutil.ignore_patterns("store.sqlite*", "annotators.json"))
    schema = yaml.safe_load((EXAMPLE / "schema.yaml").read_text(encoding="utf-8"))
    assert "topic" not in schema and len(schema["tasks"]) == 3
    assert all(list(t["classes"]) == ["favor", "against", "none"] for t in schema["tasks"].values())
    shutil.copy(EXAMPLE / "schema.yaml", root / "labels" / "schema.yaml")
    for name in ("annotations.jsonl", "adjudications.jsonl"):
        (root / "labels" / name).write_text("", encoding="utf-8")
    (root / "data" / "raw").mkdir(parents=True)
    shutil.copy(EXAMPLE / "posts.csv", root / "data" / "raw" / "posts.csv")
    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    params["evaluate"]["group_by"] = "id"
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")


def test_contract_table_in_scores_out_with_per_row_tasks(tmp_path):
    root = tmp_path / "clone"
    root.mkdir()
    contract_project(root)
    with open(EXAMPLE / "posts.csv", encoding="utf-8", newline="") as f:
        assert next(csv.reader(f)) == ["id", "text", "target"]
    with open(EXAMPLE / "labels.csv", encoding="utf-8", newline="") as f:
        labels = list(csv.DictReader(f))
    assert list(labels[0]) == ["id", "task", "label"] and all(r["label"].isupper() for r in labels)
    with open(EXAMPLE / "test.csv", encoding="utf-8", newline="") as f:
        test_rows = [{"id": r["id"], "text": r["text"], "target": r["target"]} for r in csv.DictReader(f)]
    with open(tmp_path / "TEST.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, ["id", "text", "target"])
        writer.writeheader()
        writer.writerows(test_rows)

    steps = [
        ["ingest"],
        ["labels", "import", "--format", "csv", str(EXAMPLE / "labels.csv"), "--annotator", "gold"],
        ["dataset"],
        ["train", "--family", "tfidf_lr"],
        ["score", str(tmp_path / "TEST.csv"), "--out", str(tmp_path / "OUT.jsonl"), "--model", "models/tfidf_lr",
         "--task-col", "target"],
    ]
    for step in steps:
        done = stance(root, *step)
        assert done.returncode == 0, f"stance {' '.join(step)}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"

    tasks = list(yaml.safe_load((EXAMPLE / "schema.yaml").read_text(encoding="utf-8"))["tasks"])
    classes = {"favor", "against", "none"}
    out = [json.loads(line) for line in (tmp_path / "OUT.jsonl").read_text(encoding="utf-8").split("\n") if line]
    assert sorted(r["id"] for r in out) == sorted(r["id"] for r in test_rows)
    target = {r["id"]: r["target"] for r in test_rows}
    for row in out:
        assert row[target[row["id"]]] in classes, row
        assert all(row[task] is None for task in tasks if task != target[row["id"]]), row
