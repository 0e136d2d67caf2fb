"""Behavioural tests of a model in the style of CheckList (labels/behaviour.yaml): invariance of the
predicted class to names and numbers, and directional tests (a negated, or attributed-and-rejected,
claim must lower the probability of the class the plain claim supports).

They measure, they do not gate: `register` reports each test's pass rate in the model card. Tasks and
classes are named in the YAML and checked against the schema on load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Protocol, Sequence

import numpy as np
from pydantic import Field

from pipeline.config import ConfigError, Strict, load_yaml
from pipeline.schema import LabelSchema


class InvarianceCase(Strict):
    template: str = Field(pattern=r"\{\}", description="text with one {} where each filler goes")
    fillers: list[str] = Field(min_length=2)


class Invariance(Strict):
    name: str
    cases: list[InvarianceCase] = Field(min_length=1)


class Directional(Strict):
    name: str
    task: str
    class_: str = Field(alias="class")
    direction: Literal["up", "down"]
    pairs: list[tuple[str, str]] = Field(min_length=1, description="(base text, variant text)")


class Suite(Strict):
    invariance: list[Invariance] = Field(default_factory=list)
    directional: list[Directional] = Field(default_factory=list)


class Scorer(Protocol):
    def predict_proba(self, texts: Sequence[str]) -> dict[str, np.ndarray]: ...


def load_suite(path: Path, schema: LabelSchema) -> Suite:
    """The suite, its directional tests checked against the schema: a class the task lacks is an error;
    a task the schema lacks (a suite written for another domain) is left out of the run."""
    suite = load_yaml(path, Suite)
    for test in suite.directional:
        if test.task in schema.tasks and (problem := schema.check(test.task, test.class_)):
            raise ConfigError(f"{path}: directional test '{test.name}': {problem}")
    return suite


def run_suite(model: Scorer, suite: Suite, schema: LabelSchema) -> list[dict[str, Any]]:
    """One row per test (invariance: per test and task; directional: per test, task and class): passed,
    total and the pass rate. An invariance case passes when every filler gets the same class."""
    rows = []
    for test in suite.invariance:
        passed = {task: 0 for task in schema.task_names}
        for case in test.cases:
            proba = model.predict_proba([case.template.replace("{}", filler) for filler in case.fillers])
            for task in schema.task_names:
                passed[task] += int(len(set(proba[task].argmax(axis=1))) == 1)
        rows += [_row("invariance", test.name, f"{task}: same class", passed[task], len(test.cases))
                 for task in schema.task_names]
    for test in (t for t in suite.directional if t.task in schema.tasks):
        column = schema.labels(test.task).index(test.class_)
        proba = model.predict_proba([text for pair in test.pairs for text in pair])[test.task][:, column]
        change = proba[1::2] - proba[0::2]
        moved = change < 0 if test.direction == "down" else change > 0
        rows.append(_row("directional", test.name, f"{test.task}: P({test.class_}) {test.direction}",
                         int(moved.sum()), len(test.pairs)))
    return rows


def _row(kind: str, name: str, expectation: str, passed: int, total: int) -> dict[str, Any]:
    return {"kind": kind, "test": name, "expectation": expectation, "passed": passed, "total": total,
            "pass_rate": round(passed / total, 4)}
