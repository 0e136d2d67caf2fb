"""Behavioural suites: pass rates on cases whose outcome is known, clear errors for bad suite files,
and the `stance behaviour` command on the project's own suites."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline import behaviour
from pipeline.cli import app
from pipeline.config import ConfigError, load_params
from pipeline.model import StanceModel
from pipeline.schema import load_schema

KEYWORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]  # keyword i <-> class i of every task


@pytest.fixture
def keyword_model(project):
    """A real tfidf_lr StanceModel whose prediction is the class of the keyword a text repeats."""
    schema = load_schema()
    data = {}
    for task in schema.task_names:
        labels = schema.labels(task)
        data[task] = ([f"{KEYWORDS[i]} {KEYWORDS[i]} {KEYWORDS[i]}" for i in range(len(labels)) for _ in range(5)],
                      [label for label in labels for _ in range(5)])
    hyper = {"C": 10.0, "word_ngram_max": 1, "char_ngrams": False, "min_df": 1, "max_features": 100}
    return schema, StanceModel.fit(schema, "tfidf_lr", hyper, seed=0, data=data)


def _write(folder: Path, name: str, records: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    return path


def test_pass_rates_on_known_cases(keyword_model, tmp_path):
    schema, model = keyword_model
    tasks = schema.task_names
    first = {t: schema.labels(t)[0] for t in tasks}
    second = {t: schema.labels(t)[1] for t in tasks}
    folder = tmp_path / "suites"
    _write(folder, "suite.jsonl", [
        {"kind": "slot", "name": "word", "values": ["alpha", "bravo"]},       # swapping these flips the class
        {"kind": "slot", "name": "city", "values": ["Harbin", "Kazan"]},      # unseen words: no effect
        {"kind": "test", "name": "inv", "type": "INV", "checks": "swaps", "perturb": ["entities", "numbers"]},
        {"kind": "case", "test": "inv", "text": "alpha alpha near Harbin"},   # fails on every task
        {"kind": "case", "test": "inv", "text": "charlie charlie near Kazan, 240 of them"},  # passes
        {"kind": "case", "test": "inv", "text": "nothing to perturb"},        # skipped
        {"kind": "test", "name": "dir", "type": "DIR", "checks": "keywords"},
        {"kind": "case", "test": "dir", "text": "alpha alpha", "expect": first},     # passes
        {"kind": "case", "test": "dir", "text": "alpha alpha", "expect": second},    # fails
        {"kind": "case", "test": "dir", "base": "alpha alpha", "text": "alpha bravo bravo",
         "away_from": {tasks[0]: first[tasks[0]]}},                                  # passes, first task only
    ])
    report = behaviour.run(model, behaviour.load_suites(folder, schema), dataset_texts=[], seed=0)

    inv, dir_ = report["tests"]["inv"], report["tests"]["dir"]
    assert inv["cases"] == 2 and inv["n"] == 2 * len(tasks) and inv["passed"] == len(tasks)
    assert all(inv["by_task"][t] == {"n": 2, "passed": 1, "pass_rate": 0.5} for t in tasks)
    assert dir_["by_task"][tasks[0]] == {"n": 3, "passed": 2, "pass_rate": round(2 / 3, 4)}
    assert all(dir_["by_task"][t] == {"n": 2, "passed": 1, "pass_rate": 0.5} for t in tasks[1:])
    assert report["by_task"][tasks[0]] == {"n": 5, "passed": 3, "pass_rate": 0.6}
    assert inv["failures"][0]["text"] == "alpha alpha near Harbin"
    rows = behaviour.pass_rates({"model": "m", "family": "tfidf_lr", **report})["tests"]
    assert rows[0] == {"name": "inv", "type": "INV", "checks": "swaps", "cases": 2,
                       "by_task": ["50% (1/2)"] * len(tasks), "all": f"50% ({len(tasks)}/{2 * len(tasks)})"}


def test_number_and_entity_perturbations():
    assert behaviour.perturb_numbers("up 26% to $1,200.50 in 2023, the 2nd rise", 0.5) == \
        "up 13% to $600.25 in 2023, the 2nd rise"
    assert behaviour.perturb_numbers("4,000 tonnes via Power of Siberia 2 and Su-35 jets", 3.0) == \
        "12,000 tonnes via Power of Siberia 2 and Su-35 jets"
    slots = {"leader": [["Vladimir Putin", "Putin"], ["Dmitry Medvedev", "Medvedev"]]}
    assert behaviour.perturb_entities("Vladimir Putin spoke; Putin's aides nodded.", slots, random.Random(0)) == \
        "Dmitry Medvedev spoke; Medvedev's aides nodded."
    assert behaviour.perturb_entities("nobody named", slots, random.Random(0)) is None


def test_unknown_class_names_file_line_and_field(project, tmp_path):
    schema = load_schema()
    task = schema.task_names[0]
    path = _write(tmp_path / "suites", "bad.jsonl", [
        {"kind": "test", "name": "dir", "type": "DIR", "checks": "x"},
        {"kind": "case", "test": "dir", "text": "a", "expect": {task: schema.labels(task)[0]}},
        {"kind": "case", "test": "dir", "text": "b", "expect": {task: "no-such-class"}},
    ])
    with pytest.raises(ConfigError) as err:
        behaviour.load_suites(path.parent, schema)
    assert f"{path}:3: field 'expect.{task}': unknown class 'no-such-class'" in str(err.value)

    _write(tmp_path / "suites", "bad.jsonl", [{"kind": "case", "test": "missing", "text": "a"}])
    with pytest.raises(ConfigError, match=r"bad.jsonl:1: field 'test': no test named 'missing'"):
        behaviour.load_suites(path.parent, schema)


def test_cli_runs_the_project_suites(keyword_model, project, tmp_path):
    schema, model = keyword_model
    model.save(tmp_path / "model")
    result = CliRunner().invoke(app, ["behaviour", "--model", str(tmp_path / "model")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads((project / "metrics" / "behaviour.json").read_text(encoding="utf-8"))
    suites = behaviour.load_suites(project / "labels" / "behaviour", schema)
    assert list(report["tests"]) == list(suites.tests)
    assert set(report["by_task"]) == set(schema.task_names)
    assert all((t["n"] > 0) == bool(suites.cases[name]) for name, t in report["tests"].items())  # no dataset built


def test_register_puts_the_champions_pass_rates_in_the_model_card(trained):
    card = (trained / "MODEL_CARD.md").read_text(encoding="utf-8")
    section = card[card.index("## Behavioural tests"):card.index("## Intended use")]
    assert "`models/tfidf_lr` (tfidf_lr)" in section
    schema = load_schema()
    suites = behaviour.load_suites(trained / "labels" / "behaviour", schema)
    assert all(f"| {name} | {test.type} | {test.checks} |" in section for name, test in suites.tests.items())


def test_a_domain_without_suites_gets_no_card_section(project):
    shutil.rmtree(project / "labels" / "behaviour")
    assert behaviour.for_card(project, "tfidf_lr", load_params(), load_schema()) is None
