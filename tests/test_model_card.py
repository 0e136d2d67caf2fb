"""The model card is a template fed from params, the schema and the metrics: its figures follow them,
its sections follow what was measured, and its wording names no task, class or domain of its own."""

from __future__ import annotations

import re
import tomllib

import pytest
from jinja2 import Environment

from pipeline import register
from pipeline.config import load_params
from pipeline.schema import load_schema
from support import REPO

TEMPLATE = REPO / "pipeline" / "templates" / register.CARD_TEMPLATE


def _headline(schema, task: str, support: int, seed: float) -> dict:
    per_class = {name: {"precision": seed, "recall": seed, "f1": seed, "support": support + i}
                 for i, name in enumerate(schema.labels(task))}
    return {"macro_f1": seed, "macro_f1_ci_low": seed - 0.1, "macro_f1_ci_high": seed + 0.1, "per_class": per_class}


def _family(schema, seed: float, support: int, curve: bool = True, **extra) -> dict:
    metrics = {"macro_f1": seed, "transfer_macro_f1": seed - 0.01, "train_seconds": 1.5, "evaluate_seconds": 12.0,
               "score_paragraphs_per_second": 900.0, **extra}
    for task in schema.task_names:
        metrics[task] = {**_headline(schema, task, support, seed), "ece_uncalibrated": 0.2, "ece_calibrated": 0.1,
                         "temperature_used": True, "transfer": _headline(schema, task, support, seed - 0.01)}
        if curve:
            metrics[task]["learning_curve"] = [{"fraction": 0.0, "train_labels": 30, "macro_f1": 0.3},
                                               {"fraction": 1.0, "train_labels": 300, "macro_f1": seed}]
    return metrics


def _behaviour(schema) -> dict:
    rate = {"n": 4, "passed": 3, "pass_rate": 0.75}
    return {"model": "models/fast", "family": "fast",
            "tests": {"inv_case": {"type": "INV", "checks": "swaps keep the class", "cases": 4, **rate,
                                   "by_task": {t: rate for t in schema.task_names}}},
            "by_task": {t: rate for t in schema.task_names}}


def _card(params, schema, behaviour: dict | None = None, times: dict | None = None, **families) -> str:
    decision = {"model_name": params.registry.model_name, "alias": params.registry.alias, "champion_version": 3,
                "champion_family": next(iter(families)), "reason": "it wins"}
    summary = {"paragraphs": 400, "articles": 40,
               "by_origin": {"authored": {"paragraphs": 300, "articles": 30},
                             "scraped": {"paragraphs": 100, "articles": 10}}}
    return register.model_card(decision, families, schema, summary, params, ["slow_one"], behaviour, times)


@pytest.fixture
def inputs():
    params, schema = load_params(REPO / "params.yaml"), load_schema(REPO / "labels" / "schema.yaml")
    return params, schema


def test_every_figure_follows_params_and_metrics(inputs):
    params, schema = inputs
    evaluate = params.evaluate.model_copy(update={"n_splits": 4, "n_repeats": 2, "n_bootstrap": 321,
                                                  "confidence": 0.9, "calibration_bins": 7,
                                                  "n_repeats_by_family": {"slow_one": 1}})
    params = params.model_copy(update={"evaluate": evaluate, "registry": params.registry.model_copy(
        update={"min_test_support": 50})})
    inference = {"precision": "bf16", "paragraphs": 100, "min_agreement": 0.97, "agreement": {"bf16": 0.98}}
    times = {"ingest": {"seconds": 4.2, "finished": "2026-01-01T10:00:00+00:00"},
             "train@fast": {"seconds": 300.4, "finished": "2026-01-01T10:05:00+00:00"}}
    card = _card(params, schema, _behaviour(schema), times, fast=_family(schema, 0.7, 40, inference=inference),
                 slow=_family(schema, 0.6, 60, curve=False))
    assert "by 2 x (slow_one: 1 x) repeated stratified 4-fold cross-validation" in card
    assert "(321 resamples)" in card and "headline macro-F1 [90% CI]" in card and "(7 bins)" in card
    assert "| fast (champion) | **mean** | **0.700** | **0.690** |" in card
    first = schema.labels(schema.task_names[0])[0]
    assert f"`{schema.task_names[0]}` / `{first}` has only 40 test examples (fewer than 50)" in card
    assert "has only 60" not in card  # the other family's classes have enough test examples
    assert "| model | task | 0% (30 labels) | 100% (300 labels) |" in card
    assert "at least 97% of a fixed set of labelled paragraphs" in card and "| fast | bf16 | 100 | 98.0% |" in card
    assert "| inv_case | INV | swaps keep the class | 4 | " + "75% (3/4) | " * len(schema.task_names) in card
    assert "measured on 10 `scraped` articles (100 paragraphs)" in card and "75% of the labelled" in card
    assert "| train@fast | 300 | 2026-01-01T10:05:00+00:00 |" in card and "| **all listed** | **305** | |" in card
    sections = re.findall(r"^## (.+)$", card, flags=re.MULTILINE)
    assert sections == ["Tasks", "How the numbers were measured", "Comparison (headline metric)",
                        "Per-class scores (headline, out-of-fold, all repeats pooled)", "Learning curve",
                        "Scoring precision", "Stage times", "Behavioural tests (CheckList style)",
                        "Intended use and limits"]
    assert card.endswith("out of distribution.\n") and not re.search(r" +$", card, flags=re.MULTILINE)


def test_sections_without_measurements_are_left_out(inputs):
    params, schema = inputs
    card = _card(params, schema, None, fast=_family(schema, 0.7, 40, curve=False))
    assert "## Learning curve" not in card and "## Scoring precision" not in card
    assert "## Behavioural tests" not in card and "## Stage times" not in card
    assert "## Intended use and limits" in card


def test_template_names_no_task_class_or_domain_term(inputs):
    """The wording is the pipeline's: tasks, classes and topic terms reach the card only from the schema."""
    _, schema = inputs
    text = TEMPLATE.read_text(encoding="utf-8").lower()
    words = set(re.findall(r"[\w–-]+", text))
    named = {*schema.task_names, *(label for t in schema.task_names for label in schema.labels(t)),
             *(term for terms in schema.topic_groups.values() for term in terms)}
    assert not {n.lower() for n in named if n != "none"} & words
    prose = "".join(value for _, kind, value in Environment().lex(text) if kind == "data")  # outside the tags
    prose = prose.replace("f1", "").replace("n_splits: 0", "")  # a metric's name; a setting's meaning
    assert not re.search(r"\d", prose), "a figure is typed into the template instead of coming from params or metrics"


def test_template_ships_with_the_package():
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"][
        "package-data"]["pipeline"]
    assert any(TEMPLATE.relative_to(REPO / "pipeline").match(p.removeprefix("**/")) for p in patterns)


def test_stage_times_are_recorded_outside_git_and_dvc(tmp_path, monkeypatch):
    from pipeline import stage_times

    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setenv("STANCE_ROOT", str(tmp_path))
    with stage_times.timed("ingest"):
        pass
    with pytest.raises(RuntimeError), stage_times.timed("dataset"):
        raise RuntimeError("a failed stage records no time")
    recorded = stage_times.recorded()
    assert list(recorded) == ["ingest"] and recorded["ingest"]["seconds"] >= 0
    assert (tmp_path / stage_times.STAGE_TIMES_FILE).exists()
    assert register.pipeline_stage_times(load_params(tmp_path / "params.yaml")) == recorded
