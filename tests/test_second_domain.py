"""The README's "A second domain" walk, through the CLI only: a table of posts in, scores per row's task out."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from support import EXAMPLE, stance

pytestmark = pytest.mark.slow  # trains or serves real models, or runs the pipeline end to end

TASKS = ["bike_lanes", "four_day_week", "school_phones"]


@pytest.fixture(scope="module")
def walked(tmp_path_factory) -> Path:
    """The project of the README walk after ingest -> import -> dataset -> train tfidf_lr and embed_lr."""
    root = tmp_path_factory.mktemp("tweets")
    (root / "data" / "raw").mkdir(parents=True)
    (root / "labels").mkdir()
    shutil.copy(EXAMPLE / "params.yaml", root / "params.yaml")
    shutil.copy(EXAMPLE / "schema.yaml", root / "labels" / "schema.yaml")
    shutil.copy(EXAMPLE / "posts.csv", root / "data" / "raw" / "posts.csv")
    for step in (["ingest"], ["labels", "import", "--format", "csv", str(EXAMPLE / "labels.csv"), "--annotator", "gold"],
                 ["dataset"], ["train", "--family", "tfidf_lr"], ["train", "--family", "embed_lr"]):
        done = stance(root, *step)
        assert done.returncode == 0, f"stance {' '.join(step)}:\n{done.stdout}\n{done.stderr}"
        if step == ["ingest"]:
            assert "posts.csv: 201 kept; ignored column(s) target" in done.stderr  # every row, however short, is one paragraph
    return root


def _gold() -> dict[str, tuple[str, str]]:
    with open(EXAMPLE / "test.csv", encoding="utf-8", newline="") as f:
        return {r["id"]: (r["target"], r["stance"]) for r in csv.DictReader(f)}


@pytest.mark.parametrize("family", ["tfidf_lr", "embed_lr"])
def test_each_post_is_scored_on_its_own_target_only(walked, family):
    out = walked / f"scores-{family}.jsonl"
    done = stance(walked, "score", str(EXAMPLE / "test.csv"), "--out", str(out), "--model", f"models/{family}",
                  "--task-col", "target")
    assert done.returncode == 0, done.stderr
    gold = _gold()
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").split("\n") if line]
    assert sorted(r["id"] for r in rows) == sorted(gold)
    correct = 0
    for row in rows:
        target, stance_ = gold[row["id"]]
        assert set(row[f"{target}_scores"]) == {"favor", "against", "none"}
        assert all(row[t] is None and row[f"{t}_scores"] is None for t in TASKS if t != target)
        correct += row[target] == stance_
    assert correct / len(rows) >= 0.6, f"{family}: {correct}/{len(rows)} test posts right"


def test_tasks_option_limits_the_run_and_card_counts_partial_labels(walked):
    out = walked / "only-bikes.jsonl"
    done = stance(walked, "score", str(EXAMPLE / "test.csv"), "--out", str(out), "--model", "models/tfidf_lr",
                  "--task-col", "none-such", "--tasks", "bike_lanes")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").split("\n") if line]
    assert all(r["bike_lanes"] in ("favor", "against", "none") and r["four_day_week"] is None
               and r["school_phones"] is None for r in rows)
    card = (walked / "data" / "DATASET_CARD.md").read_text(encoding="utf-8")
    assert "Partial labels are supported" in card and "| bike_lanes | 67 |" in card
    assert "| posts.csv | 201 |" in card  # the ingest report: kept, and dropped by reason
    metrics = json.loads((walked / "metrics" / "train" / "tfidf_lr.json").read_text(encoding="utf-8"))
    assert metrics["bike_lanes"]["cv"] and metrics["macro_f1"] is not None
