"""What to label next: active learning mixed with random and second-opinion picks.

Most picks go to the paragraphs with the highest queue score (`queue_scores`): where the
current model is least sure, where the fast model and the champion disagree, and where a
class that is rare in the labels so far is likely (they teach the model most); a share are
uniformly random (so the labelled set can still serve as an unbiased evaluation sample); a
share send paragraphs one colleague already labelled to a second annotator (so agreement can
be measured). Each pick is a seeded draw from (seed, annotator, how many paragraphs they have
finished), so a reload shows the same paragraph and two annotators do not march in lockstep.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from pipeline.labels import Annotation

COMPONENTS = ("uncertainty", "disagreement", "rarity")


@dataclass(frozen=True)
class QueueOptions:
    random_share: float = 0.2      # share of picks drawn uniformly at random
    double_share: float = 0.1      # share of picks that ask for a second opinion
    annotators_per_paragraph: int = 2  # a paragraph stops being offered for agreement at this many
    seed: int = 42

    def __post_init__(self) -> None:
        for name in ("random_share", "double_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name.replace('_', '-')} must be between 0 and 1")
        if self.random_share + self.double_share > 1:
            raise ValueError("random-share + double-share must not exceed 1")
        if self.annotators_per_paragraph < 1:
            raise ValueError("annotators-per-paragraph must be at least 1")


@dataclass(frozen=True)
class Pick:
    paragraph_id: str
    reason: str   # resume | ranked | random | agreement


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
                   tasks: Sequence[str], scores: dict[str, float], options: QueueOptions,
                   last: str | None = None) -> Pick | None:
    """The paragraph to show `annotator` now (None when nothing is left for them).

    `paragraphs` is indexed by paragraph_id, with columns paragraph_id and on_topic; `scores` maps paragraph_id to
    its queue score (empty when there is no model yet: then the order is a seeded shuffle). A paragraph the
    annotator finished or skipped is never offered to them again."""
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
        return Pick(ranked(second, scores, options.seed)[0], "agreement")
    if fresh.empty:
        fresh = second if not second.empty else open_
    if draw < options.double_share + options.random_share:
        tier = _first_tier(fresh)
        return Pick(sorted(tier["paragraph_id"])[rng.randrange(len(tier))], "random")
    return Pick(ranked(fresh, scores, options.seed)[0], "ranked")


def _first_tier(frame: pd.DataFrame) -> pd.DataFrame:
    """On-topic paragraphs when there are any left: they are what the product scores."""
    on_topic = frame[frame["on_topic"].astype(bool)]
    return on_topic if not on_topic.empty else frame


def ranked(frame: pd.DataFrame, scores: dict[str, float], seed: int) -> list[str]:
    """On-topic first, then highest score first; unscored paragraphs in a stable seeded shuffle."""
    tie = {p: random.Random(f"{seed}:{p}").random() for p in frame["paragraph_id"]}
    on_topic = frame["on_topic"].astype(bool).to_dict()
    return sorted(frame["paragraph_id"], key=lambda p: (not on_topic[p], -scores.get(p, -1.0), tie[p]))


def disagreement_scores(first: dict[str, np.ndarray], second: dict[str, np.ndarray]) -> np.ndarray:
    """Mean over tasks of the total variation distance between two models' rows, in [0, 1]."""
    return np.mean([0.5 * np.abs(np.asarray(first[t]) - np.asarray(second[t])).sum(axis=1) for t in first], axis=0)


def rarity_scores(probas: dict[str, np.ndarray], label_counts: dict[str, list[int]]) -> np.ndarray:
    """Mean over tasks of the expected rarity of the paragraph's class, in [0, 1]: a class's rarity is
    1 - its label count / the most frequent class's count (tasks with no labels yet add 0)."""
    per_task = []
    for task, proba in probas.items():
        counts = np.asarray(label_counts.get(task, [0] * proba.shape[1]), dtype=float)
        rarity = 1.0 - counts / counts.max() if counts.max() > 0 else np.zeros_like(counts)
        per_task.append(np.asarray(proba) @ rarity)
    return np.mean(per_task, axis=0)


def queue_components(current: dict[str, np.ndarray] | None, fast: dict[str, np.ndarray] | None,
                     champion: dict[str, np.ndarray] | None, label_counts: dict[str, list[int]],
                     method: str, n: int) -> dict[str, np.ndarray]:
    """Each score component per row (COMPONENTS order): `current` is the model whose suggestions are
    shown (the fast model once fitted, else the champion); disagreement needs both models."""
    zeros = np.zeros(n)
    return {"uncertainty": uncertainty_scores(current, method) if current else zeros,
            "disagreement": disagreement_scores(fast, champion) if fast and champion else zeros,
            "rarity": rarity_scores(current, label_counts) if current else zeros}


def queue_scores(components: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    return sum(weights[name] * components[name] for name in COMPONENTS)
