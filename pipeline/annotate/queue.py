"""What to label next: active learning mixed with random and second-opinion picks.

Most picks go to the paragraphs where the current champion is least sure (they teach
the model most); a share are uniformly random (so the labelled set can still serve
as an unbiased evaluation sample); a share send paragraphs one colleague already
labelled to a second annotator (so agreement can be measured). Each pick is a
seeded draw from (seed, annotator, how many paragraphs they have finished), so a
reload shows the same paragraph and two annotators do not march in lockstep.
"""

from __future__ import annotations

import random
import threading
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
from rich.console import Console

from pipeline.labels import Annotation

UNCERTAINTY_METHODS = ("margin", "entropy")


@dataclass(frozen=True)
class QueueOptions:
    random_share: float = 0.2      # share of picks drawn uniformly at random
    double_share: float = 0.1      # share of picks that ask for a second opinion
    annotators_per_paragraph: int = 2  # a paragraph stops being offered for agreement at this many
    uncertainty: str = "margin"
    seed: int = 42

    def __post_init__(self) -> None:
        for name in ("random_share", "double_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name.replace('_', '-')} must be between 0 and 1")
        if self.random_share + self.double_share > 1:
            raise ValueError("random-share + double-share must not exceed 1")
        if self.annotators_per_paragraph < 1:
            raise ValueError("annotators-per-paragraph must be at least 1")
        if self.uncertainty not in UNCERTAINTY_METHODS:
            raise ValueError(f"uncertainty must be one of {', '.join(UNCERTAINTY_METHODS)}")


@dataclass(frozen=True)
class Pick:
    paragraph_id: str
    reason: str   # resume | uncertain | random | agreement


def uncertainty_scores(probas: dict[str, np.ndarray], method: str) -> np.ndarray:
    """Mean over tasks of the per-row uncertainty (higher = less sure), in [0, 1]."""
    per_task = []
    for proba in probas.values():
        proba = np.clip(np.asarray(proba, dtype=float), 1e-12, 1.0)
        if method == "margin":
            top = np.sort(proba, axis=1)[:, ::-1]
            per_task.append(1.0 - (top[:, 0] - top[:, 1]))
        else:
            per_task.append(-(proba * np.log(proba)).sum(axis=1) / np.log(proba.shape[1]))
    return np.mean(per_task, axis=0)


def next_paragraph(paragraphs: pd.DataFrame, labels: Iterable[Annotation], skipped: set[str], annotator: str,
                   tasks: Sequence[str], uncertainty: dict[str, float], options: QueueOptions,
                   last: str | None = None) -> Pick | None:
    """The paragraph to show `annotator` now (None when nothing is left for them).

    `paragraphs` is indexed by paragraph_id, with columns paragraph_id and on_topic; `uncertainty` maps paragraph_id to
    a score (empty when no champion: then the order is a seeded shuffle)."""
    mine: dict[str, set[str]] = defaultdict(set)
    others: dict[str, set[str]] = defaultdict(set)
    for lab in labels:
        if lab.annotator == annotator:
            mine[lab.paragraph_id].add(lab.task)
        else:
            others[lab.paragraph_id].add(lab.annotator)
    needed = set(tasks)
    known = set(paragraphs["paragraph_id"])
    partial = [p for p, done in mine.items() if p in known and not needed <= done and p not in skipped]
    if partial:  # finish what was started, most recent first
        return Pick(last if last in partial else sorted(partial)[0], "resume")
    finished = {p for p, done in mine.items() if needed <= done}
    open_ = paragraphs[~paragraphs["paragraph_id"].isin(finished | skipped)]
    if open_.empty:
        return None
    fresh = open_[~open_["paragraph_id"].isin(others)]
    second = open_[open_["paragraph_id"].map(lambda p: 0 < len(others.get(p, ())) < options.annotators_per_paragraph)]

    rng = random.Random(f"{options.seed}:{annotator}:{len(finished) + len(skipped)}")
    draw = rng.random()
    if draw < options.double_share and not second.empty:
        return Pick(_most_uncertain(second, uncertainty, options.seed)[0], "agreement")
    if fresh.empty:
        fresh = second if not second.empty else open_
    if draw < options.double_share + options.random_share:
        tier = _first_tier(fresh)
        return Pick(sorted(tier["paragraph_id"])[rng.randrange(len(tier))], "random")
    return Pick(_most_uncertain(fresh, uncertainty, options.seed)[0], "uncertain")


def _first_tier(frame: pd.DataFrame) -> pd.DataFrame:
    """On-topic paragraphs when there are any left: they are what the product scores."""
    on_topic = frame[frame["on_topic"].astype(bool)]
    return on_topic if not on_topic.empty else frame


def _most_uncertain(frame: pd.DataFrame, uncertainty: dict[str, float], seed: int) -> list[str]:
    """On-topic first, then most uncertain first; unscored paragraphs in a stable seeded shuffle."""
    tie = {p: random.Random(f"{seed}:{p}").random() for p in frame["paragraph_id"]}
    return sorted(frame["paragraph_id"],
                  key=lambda p: (not bool(frame.at[p, "on_topic"]), -uncertainty.get(p, -1.0), tie[p]))


class UncertaintyCache:
    """Champion uncertainty per paragraph, computed once per paragraph text.

    `predict` is StanceModel.predict_proba of the champion, or None when none is
    registered (the queue then falls back to a seeded random order)."""

    def __init__(self, predict: Callable[[list[str]], dict[str, np.ndarray]] | None, method: str):
        self.predict = predict
        self.method = method
        self._scores: dict[str, float] = {}
        self._lock = threading.Lock()

    def scores(self, paragraphs: pd.DataFrame) -> dict[str, float]:
        if self.predict is None:
            return {}
        with self._lock:
            todo = paragraphs[~paragraphs["paragraph_id"].isin(self._scores)]
            if len(todo):
                values = uncertainty_scores(self.predict(list(todo["text"])), self.method)
                self._scores.update(zip(todo["paragraph_id"], map(float, values)))
            return dict(self._scores)


def champion_predictor(console: Console, model_uri: str | None = None
                       ) -> Callable[[list[str]], dict[str, np.ndarray]] | None:
    """predict_proba of the registered champion (or of `model_uri`: a model folder or MLflow URI),
    or None, with the reason printed, when there is none."""
    try:
        from pipeline.tracking import load_champion

        model = load_champion(model_uri)
    except Exception as err:  # no registry, no model, or no alias yet: all mean "no champion"
        console.print(f"[yellow]no champion model ({type(err).__name__}: {err}); "
                      "going on without model predictions[/yellow]")
        return None
    return model.predict_proba
