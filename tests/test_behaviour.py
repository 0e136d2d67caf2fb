"""The behavioural suite: the committed file is valid against the schema, and pass rates count what
they say (a scorer whose answers are known stands in for a model: the arithmetic is under test)."""

from __future__ import annotations

import numpy as np
import pytest
from support import REPO

from pipeline.behaviour import load_suite, run_suite
from pipeline.config import ConfigError
from pipeline.schema import load_schema

SCHEMA = load_schema(REPO / "labels" / "schema.yaml")


class WordScorer:
    """First class of every task unless the text holds "not" (then the second); "7" flips it back."""

    def predict_proba(self, texts):
        out = {}
        for task in SCHEMA.task_names:
            k = len(SCHEMA.labels(task))
            rows = np.full((len(texts), k), 0.1 / (k - 1))
            for i, text in enumerate(texts):
                rows[i, int(("not" in text.split()) != ("7" in text))] = 0.9
            out[task] = rows
        return out


def test_the_committed_suite_loads_against_the_schema():
    suite = load_suite(REPO / "labels" / "behaviour.yaml", SCHEMA)
    assert suite.invariance and suite.directional
    assert {t.task for t in suite.directional} <= set(SCHEMA.tasks)


def test_pass_rates_count_cases_and_pairs(tmp_path):
    task, first = SCHEMA.task_names[0], SCHEMA.labels(SCHEMA.task_names[0])[0]
    (tmp_path / "suite.yaml").write_text(f"""
invariance:
  - name: numbers
    cases:
      - {{template: "ties grew by {{}} percent", fillers: ["3", "5"]}}
      - {{template: "ties grew by {{}} percent", fillers: ["3", "7"]}}
directional:
  - name: negation
    task: {task}
    class: {first}
    direction: down
    pairs: [["ties are strong", "ties are not strong"], ["ties are not weak", "ties are not weak at all"]]
  - name: other domain
    task: no_such_task
    class: x
    direction: up
    pairs: [["a", "b"]]
""", encoding="utf-8")
    rows = run_suite(WordScorer(), load_suite(tmp_path / "suite.yaml", SCHEMA), SCHEMA)
    invariance = [r for r in rows if r["kind"] == "invariance"]
    assert len(invariance) == len(SCHEMA.task_names) and all(r["passed"] == 1 and r["total"] == 2 for r in invariance)
    (directional,) = [r for r in rows if r["kind"] == "directional"]  # the other domain's test is left out
    assert (directional["passed"], directional["total"], directional["pass_rate"]) == (1, 2, 0.5)
    assert directional["expectation"] == f"{task}: P({first}) down"


def test_a_class_the_task_lacks_is_an_error_naming_the_file(tmp_path):
    task = SCHEMA.task_names[0]
    path = tmp_path / "suite.yaml"
    path.write_text(f"directional: [{{name: n, task: {task}, class: nope, direction: up, pairs: [[a, b]]}}]\n")
    with pytest.raises(ConfigError, match=f"{path}.*unknown class 'nope'"):
        load_suite(path, SCHEMA)
