"""Behavioural tests of a trained model, in the style of CheckList (Ribeiro et al., 2020).

A held-out F1 says how often the model is right; these say *what* it has learned. The suites
are data (`labels.behaviour` in params.yaml: a folder of JSONL files, one record a line):

    {"kind": "slot", "name": "...", "values": [...]}          interchangeable names of one kind
    {"kind": "test", "name": "...", "type": "INV" | "DIR", "checks": "...", ...}
    {"kind": "case", "test": "...", "text": "...", ...}        a paragraph of one test

- INV (invariance): swapping a named entity for another of the same slot, or scaling the numbers,
  must not change the predicted class of any task. Bases are the test's cases plus, optionally,
  paragraphs of the dataset; a base with nothing to perturb is skipped.
- DIR (directional): a case names, per task, the class the text must get (`expect`) and/or a class
  whose probability must drop from `base` to `text` (`away_from`), e.g. a claim that is attributed
  and then rejected.

Classes are validated against the schema on load. Results are pass rates per test and per task,
reported (metrics/behaviour.json, the model card), never a gate.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.config import ConfigError, resolve
from pipeline.schema import LabelSchema

REPORT_FILE = "behaviour.json"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Slot(_Record):
    """Interchangeable entities of one kind; an entity is a name or a list of its forms, fullest first
    (["Vladimir Putin", "Putin"]): a swap replaces each form by the same form of the other entity."""
    kind: Literal["slot"]
    name: str = Field(min_length=1)
    values: list[list[str]] = Field(min_length=2)

    @field_validator("values", mode="before")
    @classmethod
    def _forms(cls, values: Any) -> Any:
        return [[v] if isinstance(v, str) else v for v in values] if isinstance(values, list) else values

    @model_validator(mode="after")
    def _distinct(self) -> "Slot":
        forms = [f for entity in self.values for f in entity]
        if not all(entity and all(f.strip() for f in entity) for entity in self.values):
            raise ValueError("an entity needs at least one non-empty form")
        if len(set(forms)) < len(forms):
            raise ValueError("a form appears twice")
        return self


class TestDef(_Record):
    kind: Literal["test"]
    name: str = Field(min_length=1)
    type: Literal["INV", "DIR"]
    checks: str = Field(min_length=1, description="what the test checks, in one sentence (shown in reports)")
    perturb: list[Literal["entities", "numbers"]] = Field(default_factory=list, description="INV only")
    number_factors: list[float] = Field(default_factory=lambda: [0.5, 3.0], min_length=1)
    dataset_paragraphs: int = Field(0, ge=0, description="INV only: this many dataset paragraphs as extra bases")
    variants: int = Field(2, ge=1, description="INV only: perturbed copies per base")

    @model_validator(mode="after")
    def _consistent(self) -> "TestDef":
        if self.type == "INV" and not self.perturb:
            raise ValueError("an INV test needs 'perturb' (entities and/or numbers)")
        if self.type == "DIR" and (self.perturb or self.dataset_paragraphs):
            raise ValueError("'perturb' and 'dataset_paragraphs' apply to INV tests only")
        return self


class Case(_Record):
    kind: Literal["case"]
    test: str = Field(min_length=1)
    text: str = Field(min_length=1)
    base: str | None = Field(None, min_length=1, description="DIR: the text `away_from` is compared with")
    expect: dict[str, str] = Field(default_factory=dict, description="DIR: task -> class `text` must get")
    away_from: dict[str, str] = Field(default_factory=dict,
                                      description="DIR: task -> class whose probability must drop from base to text")

    @model_validator(mode="after")
    def _base_for_direction(self) -> "Case":
        if self.away_from and self.base is None:
            raise ValueError("'away_from' needs a 'base' text to compare with")
        return self


_KINDS = {"slot": Slot, "test": TestDef, "case": Case}


Slots = dict[str, list[list[str]]]  # slot -> entities -> forms


@dataclass(frozen=True)
class Suites:
    slots: Slots
    tests: dict[str, TestDef]
    cases: dict[str, list[Case]]  # test name -> its cases


def _parse_line(line: str, where: str) -> _Record:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{where}: invalid JSON: {err.msg}") from None
    if not isinstance(raw, dict) or raw.get("kind") not in _KINDS:
        raise ConfigError(f"{where}: field 'kind': must be one of {', '.join(_KINDS)}")
    try:
        return _KINDS[raw["kind"]].model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(f"field '{'.'.join(map(str, e['loc'])) or 'kind'}': {e['msg']}" for e in err.errors())
        raise ConfigError(f"{where}: {problems}") from None


def load_suites(folder: Path, schema: LabelSchema) -> Suites:
    """Every `*.jsonl` under `folder`, validated (classes against the schema); errors name file, line, field."""
    folder = Path(folder)
    files = sorted(folder.glob("*.jsonl"))
    if not files:
        raise ConfigError(f"{folder}: no behavioural test files (*.jsonl)")
    slots: Slots = {}
    tests: dict[str, TestDef] = {}
    cases: list[tuple[str, Case]] = []
    for path in files:
        for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            record = _parse_line(line, where)
            if isinstance(record, Slot):
                if record.name in slots:
                    raise ConfigError(f"{where}: field 'name': slot '{record.name}' is defined twice")
                slots[record.name] = record.values
            elif isinstance(record, TestDef):
                if record.name in tests:
                    raise ConfigError(f"{where}: field 'name': test '{record.name}' is defined twice")
                tests[record.name] = record
            else:
                for key in ("expect", "away_from"):
                    for task, label in getattr(record, key).items():
                        problem = schema.check(task, label)
                        if problem:
                            raise ConfigError(f"{where}: field '{key}.{task}': {problem}")
                cases.append((where, record))
    by_test: dict[str, list[Case]] = {name: [] for name in tests}
    for where, case in cases:
        test = tests.get(case.test)
        if test is None:
            raise ConfigError(f"{where}: field 'test': no test named '{case.test}' (have: {', '.join(tests)})")
        if test.type == "DIR" and not (case.expect or case.away_from):
            raise ConfigError(f"{where}: field 'expect': a case of DIR test '{test.name}' needs 'expect' "
                              "and/or 'away_from'")
        if test.type == "INV" and (case.expect or case.away_from or case.base):
            raise ConfigError(f"{where}: field 'expect': a case of INV test '{test.name}' has only 'text'")
        by_test[case.test].append(case)
    for test in tests.values():
        if "entities" in test.perturb and not slots:
            raise ConfigError(f"{folder}: test '{test.name}' perturbs entities but no file defines a slot")
    return Suites(slots, tests, by_test)


# --- perturbations -------------------------------------------------------------------------------

# a number, with thousands commas and decimals; units may follow ("240bn", "30%"), ordinals are not numbers
_NUMBER = re.compile(r"(?<![\w.,-])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?!\d|,\d|st\b|nd\b|rd\b|th\b)")


_NAME_BEFORE = re.compile(r"\b[A-Z][\w-]*\s$")  # "Power of Siberia 2", "Article 5", "June 5": part of a name or date


def _is_year(whole: str, decimals: str | None) -> bool:
    return not decimals and len(whole) == 4 and 1800 <= int(whole) <= 2100


def _kept(match: re.Match) -> bool:
    return _is_year(match.group(1), match.group(2)) or bool(_NAME_BEFORE.search(match.string[:match.start()]))


def perturb_numbers(text: str, factor: float) -> str:
    """Every number scaled by `factor`, keeping its format (thousands commas, decimals); years and numbers that
    follow a capitalised word (names, dates) are left alone."""
    def scale(match: re.Match) -> str:
        whole, decimals = match.group(1), match.group(2)
        if _kept(match):
            return match.group(0)
        places = len(decimals) - 1 if decimals else 0
        value = round(float(whole.replace(",", "") + (decimals or "")) * factor, places)
        return f"{value:,.{places}f}" if "," in whole else f"{value:.{places}f}"
    return _NUMBER.sub(scale, text)


def has_numbers(text: str) -> bool:
    return any(not _kept(m) for m in _NUMBER.finditer(text))


def _entity_pattern(slots: Slots) -> re.Pattern:
    forms = sorted({f for entities in slots.values() for entity in entities for f in entity}, key=len, reverse=True)
    return re.compile(r"(?<!\w)(" + "|".join(map(re.escape, forms)) + r")(?!\w)")


def perturb_entities(text: str, slots: Slots, rng: random.Random) -> str | None:
    """Every entity `text` names (any form) swapped, all its mentions, for another entity of its slot;
    None when the text names none."""
    where = {f: (slot, e, i) for slot, entities in slots.items() for e, entity in enumerate(entities)
             for i, f in enumerate(entity)}
    pattern = _entity_pattern(slots)
    named = sorted({where[m][:2] for m in pattern.findall(text)})
    if not named:
        return None
    other = {(slot, e): rng.choice([k for k in range(len(slots[slot])) if k != e]) for slot, e in named}

    def swap(match: re.Match) -> str:
        slot, e, i = where[match.group(1)]
        forms = slots[slot][other[(slot, e)]]
        return forms[min(i, len(forms) - 1)]
    return pattern.sub(swap, text)


def perturbable(text: str, test: TestDef, slots: Slots) -> bool:
    return (("entities" in test.perturb and bool(slots) and _entity_pattern(slots).search(text) is not None)
            or ("numbers" in test.perturb and has_numbers(text)))


def variants_of(text: str, test: TestDef, slots: Slots, rng: random.Random) -> list[str]:
    """Up to `test.variants` distinct perturbed copies of `text` (entities swapped and/or numbers scaled)."""
    out: list[str] = []
    for i in range(test.variants * 3):  # a few extra draws: two draws can give the same copy
        variant = text
        if "entities" in test.perturb:
            variant = perturb_entities(variant, slots, rng) or variant
        if "numbers" in test.perturb and has_numbers(variant):
            variant = perturb_numbers(variant, test.number_factors[i % len(test.number_factors)])
        if variant != text and variant not in out:
            out.append(variant)
        if len(out) == test.variants:
            break
    return out


# --- cases and scoring ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Item:
    """One scored unit: an INV base with its variants, or a DIR case."""
    test: str
    text: str
    variants: tuple[str, ...] = ()
    base: str | None = None
    expect: dict[str, str] = field(default_factory=dict)
    away_from: dict[str, str] = field(default_factory=dict)

    def texts(self) -> list[str]:
        return [self.text, *self.variants, *([self.base] if self.base else [])]


def build_items(suites: Suites, dataset_texts: Sequence[str], seed: int) -> list[Item]:
    """Every scored unit of every test; dataset bases are a seeded sample, so runs repeat exactly."""
    items: list[Item] = []
    for name, test in suites.tests.items():
        rng = random.Random(f"{seed}:{name}")
        if test.type == "DIR":
            items += [Item(name, c.text, base=c.base, expect=c.expect, away_from=c.away_from)
                      for c in suites.cases[name]]
            continue
        pool = [t for t in dataset_texts if perturbable(t, test, suites.slots)]
        sampled = rng.sample(pool, min(test.dataset_paragraphs, len(pool)))
        for text in [c.text for c in suites.cases[name]] + sampled:
            variants = variants_of(text, test, suites.slots, rng)
            if variants:
                items.append(Item(name, text, tuple(variants)))
    return items


Probabilities = dict[str, dict[str, dict[str, float]]]  # text -> task -> class -> probability


def predict(model, texts: Sequence[str]) -> Probabilities:
    """{text: {task: {class: p}}} from any model with `predict_proba` (per task, schema class order) and `schema`."""
    unique = list(dict.fromkeys(texts))
    proba = model.predict_proba(unique) if unique else {}
    return {text: {task: dict(zip(model.schema.labels(task), map(float, p[i]))) for task, p in proba.items()}
            for i, text in enumerate(unique)}


def _top(scores: dict[str, float]) -> str:
    return max(scores, key=scores.get)


def outcomes(item: Item, probs: Probabilities) -> dict[str, bool]:
    """Pass/fail per task the item tests (INV: every task the model predicts)."""
    if item.variants:
        before = probs[item.text]
        return {task: all(_top(probs[v][task]) == _top(scores) for v in item.variants)
                for task, scores in before.items()}
    result = {}
    for task in dict.fromkeys([*item.expect, *item.away_from]):
        if task not in probs[item.text]:
            continue
        ok = True
        if task in item.expect:
            ok = _top(probs[item.text][task]) == item.expect[task]
        if task in item.away_from:
            label = item.away_from[task]
            ok = ok and probs[item.text][task][label] < probs[item.base][task][label]
        result[task] = ok
    return result


def _rate(passed: int, n: int) -> dict[str, Any]:
    return {"n": n, "passed": passed, "pass_rate": round(passed / n, 4) if n else None}


MAX_FAILURES = 3  # failing examples kept per test, to show what went wrong


def score(suites: Suites, items: Sequence[Item], probs: Probabilities) -> dict[str, Any]:
    """Pass rates per test (overall and per task) and per task over all tests, with a few failing examples."""
    tests: dict[str, Any] = {}
    totals: dict[str, list[int]] = {}
    for name, test in suites.tests.items():
        per_task: dict[str, list[int]] = {}
        failures = []
        for item in (i for i in items if i.test == name):
            for task, ok in outcomes(item, probs).items():
                per_task.setdefault(task, [0, 0])
                per_task[task][0] += ok
                per_task[task][1] += 1
                totals.setdefault(task, [0, 0])
                totals[task][0] += ok
                totals[task][1] += 1
                if not ok and len(failures) < MAX_FAILURES:
                    failures.append({"task": task, "text": item.text, "got": _top(probs[item.text][task]),
                                     **({"variants": {v: _top(probs[v][task]) for v in item.variants}}
                                        if item.variants else {}),
                                     **({"expect": item.expect[task]} if task in item.expect else {}),
                                     **({"away_from": {"class": item.away_from[task],
                                                       "p_base": round(probs[item.base][task][item.away_from[task]], 4),
                                                       "p_text": round(probs[item.text][task][item.away_from[task]], 4)}}
                                        if task in item.away_from else {})})
        passed, n = sum(p for p, _ in per_task.values()), sum(c for _, c in per_task.values())
        tests[name] = {"type": test.type, "checks": test.checks, **_rate(passed, n),
                       "cases": sum(1 for i in items if i.test == name),
                       "by_task": {task: _rate(*pn) for task, pn in per_task.items()}, "failures": failures}
    return {"tests": tests, "by_task": {task: _rate(*pn) for task, pn in totals.items()}}


def run(model, suites: Suites, dataset_texts: Sequence[str], seed: int) -> dict[str, Any]:
    """Build every test's items, score them with `model` in one batch, and return the pass rates."""
    items = build_items(suites, dataset_texts, seed)
    probs = predict(model, [t for item in items for t in item.texts()])
    return score(suites, items, probs)


# --- I/O edge ------------------------------------------------------------------------------------

def measure(model_dir: Path, params, schema: LabelSchema) -> dict[str, Any]:
    """Load the model folder (and the dataset's paragraphs, when a test samples them) and run the suites."""
    from pipeline.model import StanceModel

    suites = load_suites(resolve(params.labels.behaviour), schema)
    dataset_dir = resolve(params.dataset.out_dir)
    texts: list[str] = []
    if any(t.dataset_paragraphs for t in suites.tests.values()) and dataset_dir.exists():
        from pipeline.dataset import load_frame

        texts = load_frame(dataset_dir)["text"].tolist()
    model = StanceModel.load(Path(model_dir))
    return {"model": Path(model_dir).as_posix(), "family": model.family, **run(model, suites, texts, params.seed)}


def champion_dir(params) -> Path:
    """models/<family> of the champion recorded by `stance register` (registry.champion)."""
    path = resolve(params.registry.champion)
    if not path.exists():
        raise ConfigError(f"{path}: no champion recorded yet (run `stance register`, or pass --model)")
    return resolve(params.train.model_dir(json.loads(path.read_text(encoding="utf-8"))["champion_family"]))


def run_stage(model: Path | None, params, schema: LabelSchema) -> tuple[dict[str, Any], Path]:
    """`stance behaviour`: the suites on `model` (default: the champion's folder), written to metrics/."""
    report = measure(model or champion_dir(params), params, schema)
    path = resolve(params.train.metrics_dir).parent / REPORT_FILE
    write_report(report, path)
    return report, path


def for_card(root: Path, family: str, params, schema: LabelSchema) -> dict[str, Any] | None:
    """The champion's pass rates for the model card: measured on models/<family> when that folder exists
    (a few hundred paragraphs), else the last `stance behaviour` report on that family, else None.
    None too for a domain with no suites: entities and claims are domain-specific."""
    if not any(resolve(params.labels.behaviour).glob("*.jsonl")):
        return None
    folder = root / params.train.model_dir(family)
    if (folder / "stance_model.json").exists():
        report = measure(folder, params, schema)
        report["model"] = folder.relative_to(root).as_posix()
        return report
    saved = resolve(params.train.metrics_dir).parent / REPORT_FILE
    if saved.exists():
        report = json.loads(saved.read_text(encoding="utf-8"))
        return report if report.get("family") == family else None
    return None


def write_report(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _percent(rate: dict[str, Any]) -> str:
    return "—" if rate["pass_rate"] is None else f"{rate['pass_rate']:.0%} ({rate['passed']}/{rate['n']})"


def pass_rates(report: dict[str, Any]) -> dict[str, Any]:
    """The report's pass rates as table cells, per test and task and in total: what the model card's
    behaviour section (templates/model_card.md.j2) and the console table show."""
    tasks = list(report["by_task"])
    return {
        "tasks": tasks,
        "tests": [{"name": name, "type": t["type"], "checks": t["checks"], "cases": t["cases"],
                   "by_task": [_percent(t["by_task"][task]) if task in t["by_task"] else "—" for task in tasks],
                   "all": _percent(t)} for name, t in report["tests"].items()],
        "all": [_percent(report["by_task"][task]) for task in tasks],
    }


def rich_table(report: dict[str, Any]):
    """The model card's pass rates as a rich table for the console."""
    from rich.table import Table

    rates = pass_rates(report)
    table = Table(title=f"behavioural tests: {report['model']} ({report['family']})")
    for column in ("test", "type", "cases", *rates["tasks"], "all tasks"):
        table.add_column(column, justify="left" if column in ("test", "type") else "right")
    for t in rates["tests"]:
        table.add_row(t["name"], t["type"], str(t["cases"]), *t["by_task"], t["all"])
    table.add_row("all tests", "", "", *rates["all"], "", style="bold")
    return table
