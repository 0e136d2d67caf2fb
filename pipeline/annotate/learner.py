"""The loop that closes while annotators work: a fast model refitted in the app, and a queue re-ranked by it.

At start-up a background thread embeds every paragraph once with the embed_lr encoder (read from, and
written to, the on-disk EmbeddingCache, so only the first start pays for it); after every `retrain_every`
new labels it refits the embed_lr heads on those cached embeddings (logistic regressions: seconds) and
re-ranks the queue. It never writes to the MLflow registry: promotion stays with `dvc repro` and
`stance register`. The champion (registry alias or a model folder) is re-loaded when its alias moves or
its folder is rewritten, checked cheaply on each wake-up, so a running app picks up a new model.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from rich.console import Console

from pipeline.annotate.project import Project
from pipeline.annotate.queue import COMPONENTS, queue_components, queue_scores
from pipeline.config import QueueParams, validate_section
from pipeline.labels import gold_labels

Predict = Callable[[list[str]], dict[str, np.ndarray]]


@dataclass(frozen=True)
class Ranking:
    """One ranking of the pool: scores, their components and the current model's probabilities."""
    version: int = 0
    model: str = "none"          # where suggestions and uncertainty come from: fast | champion | none
    fitted_on: int = 0           # gold items (paragraph, task) the fast model was fitted on
    labels_seen: int = 0         # labels in the store when it was fitted
    trigger: str = "start"       # what made this ranking
    created_at: float = field(default_factory=time.time)
    index: dict[str, int] = field(default_factory=dict)  # paragraph_id -> row of `components` and `proba`
    components: dict[str, np.ndarray] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    proba: dict[str, np.ndarray] | None = None  # task -> (rows, classes), of `model`

    def suggestion(self, paragraph_id: str, classes: dict[str, list[str]]) -> dict[str, dict] | None:
        """{task: {label, probability}} for one paragraph, or None without a model."""
        if self.proba is None or paragraph_id not in self.index:
            return None
        row = self.index[paragraph_id]
        out = {}
        for task, proba in self.proba.items():
            best = int(np.argmax(proba[row]))
            out[task] = {"label": classes[task][best], "probability": round(float(proba[row, best]), 3)}
        return out

    def top(self, ids: set[str], n: int) -> list[dict]:
        """The `n` best-scored paragraphs among `ids`, with their score components."""
        best = sorted((p for p in ids if p in self.scores), key=lambda p: -self.scores[p])[:n]
        return [{"paragraph_id": p, "score": round(self.scores[p], 4),
                 **{name: round(float(self.components[name][self.index[p]]), 4) for name in COMPONENTS}} for p in best]


def champion_predictor(console: Console, model_uri: str | None = None) -> Predict | None:
    """predict_proba of the registered champion (or of `model_uri`: a model folder or MLflow URI),
    or None, with the reason printed, when there is none."""
    try:
        from pipeline.champion import load_champion

        model = load_champion(model_uri)
    except Exception as err:  # no registry, no model, or no alias yet: all mean "no champion"
        console.print(f"[yellow]no champion model ({type(err).__name__}: {err}); "
                      "going on without its predictions[/yellow]")
        return None
    return model.predict_proba


def champion_version(model_uri: str | None) -> str | None:
    """A cheap fingerprint of what the champion is now: its folder's manifest mtime, or the version the
    registry alias points at. A change means a new model to load."""
    if model_uri and Path(model_uri).is_dir():
        manifest = Path(model_uri) / "stance_model.json"
        return str(manifest.stat().st_mtime_ns) if manifest.exists() else None
    try:
        from mlflow import MlflowClient

        from pipeline.champion import champion_uri
        from pipeline.tracking import tracking_uri

        uri = model_uri or champion_uri()
        name, _, alias = uri.removeprefix("models:/").partition("@")
        if not uri.startswith("models:/") or not alias:
            return uri  # a fixed version or run never moves
        store = tracking_uri()
        return str(MlflowClient(store, store).get_model_version_by_alias(name, alias).version)
    except Exception:  # noqa: BLE001 - no registry or no alias yet: no champion
        return None


class FastModel:
    """embed_lr heads on the paragraphs' embeddings: the encoder runs once per text, a refit only fits heads."""

    def __init__(self, hyperparams: dict, seed: int):
        from pipeline.models.embed_lr import EmbedLogReg

        self.params = validate_section(EmbedLogReg.Params, hyperparams, "models.embed_lr")
        self.seed = seed

    def embed(self, texts: list[str]) -> np.ndarray:
        from pipeline.models.encoder import encoder_fingerprint, frozen_encoder, setup_torch
        from pipeline.models.weights import encoder_dir

        setup_torch(self.seed)
        folder = encoder_dir(self.params.encoder)
        encoder = frozen_encoder(folder, encoder_fingerprint(folder))
        return encoder.embed(texts, self.params.max_length, self.params.batch_size, persist=True,
                             layers=self.params.layers)

    def fit_predict(self, X: np.ndarray, rows: dict[str, list[tuple[int, str]]],
                    classes: dict[str, list[str]]) -> dict[str, np.ndarray] | None:
        """Per task, fit on `rows[task]` = [(row of X, label)] and predict every row of X;
        None until every task has labels."""
        from pipeline.models.head import LogRegHead

        if not all(rows.get(task) for task in classes):
            return None
        out = {}
        for task, labelled in rows.items():
            index, labels = zip(*labelled)
            head = LogRegHead(classes[task], self.params.C, self.seed).fit(X[list(index)], labels)
            out[task] = head.predict_proba(X)
        return out


class LearningLoop:
    """Owns the current Ranking; a daemon thread refits and re-ranks, the app only reads `ranking`."""

    def __init__(self, project: Project, queue: QueueParams, fast: FastModel | None, model_uri: str | None,
                 console: Console, check_every: float = 15.0):
        self.project = project
        self.queue = queue
        self.fast = fast
        self.model_uri = model_uri
        self.console = console
        self.check_every = check_every
        self.status = "starting"
        self._ranking = Ranking()
        self._new_labels = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="learning-loop", daemon=True)
        self._pool_version: tuple | None = None
        self._ids: list[str] = []
        self._X: np.ndarray | None = None
        self._fast_proba: dict[str, np.ndarray] | None = None
        self._fitted_on = 0
        self._labels_seen = 0
        self._champion: Predict | None = None
        self._champion_version: str | None = None
        self._champion_proba: dict[str, np.ndarray] | None = None

    @property
    def ranking(self) -> Ranking:
        return self._ranking

    @property
    def labels_since_fit(self) -> int:
        return self._new_labels

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)

    def label_saved(self) -> None:
        with self._lock:
            self._new_labels += 1
            due = self.queue.retrain_every and self._new_labels >= self.queue.retrain_every
        if due:
            self._wake.set()

    def _run(self) -> None:
        trigger = "start"
        while not self._stop.is_set():
            try:
                self._refresh(trigger)
                self.status = "ready"
            except Exception as err:  # noqa: BLE001 - the app keeps serving the last ranking
                self.status = f"error: {type(err).__name__}: {err}"
                self.console.print(f"[red]learning loop[/red] {self.status}")
            self._wake.wait(self.check_every)
            self._wake.clear()
            trigger = "check"

    def _refresh(self, trigger: str) -> None:
        """One wake-up: take in new paragraphs, a moved champion and due labels; re-rank if any changed."""
        if not self.project.pool.path.exists():
            return
        snapshot = self.project.pool.current()
        reasons = []
        if snapshot.version != self._pool_version:
            self._ids = list(snapshot.frame["paragraph_id"])
            texts = list(snapshot.frame["text"])
            self._X = self._embed(texts)
            self._pool_version = snapshot.version
            reasons.append("paragraphs")
        version = champion_version(self.model_uri)
        if version != self._champion_version:
            self._champion = champion_predictor(self.console, self.model_uri) if version else None
            self._champion_version = version
            reasons.append("champion")
        if {"paragraphs", "champion"} & set(reasons):
            self.status = "champion predicting"
            self._champion_proba = self._champion(list(snapshot.frame["text"])) if self._champion else None
        with self._lock:  # labels saved from here on count towards the next refit
            due = (bool(self.queue.retrain_every) and self._new_labels >= self.queue.retrain_every
                   or trigger == "start" or "paragraphs" in reasons)
            if due:
                self._new_labels = 0
        if due and self._X is not None:
            self.status = "refitting"
            self._fit()
            reasons.append("refit")
        if reasons:
            self._rerank(" + ".join(reasons))

    def _embed(self, texts: list[str], chunk: int = 128) -> np.ndarray | None:
        """Embeddings of `texts` in chunks, each written to the disk cache as it is done: a restart
        mid-way keeps what was embedded, and the stats view shows progress."""
        if self.fast is None:
            return None
        started, parts = time.perf_counter(), []
        try:
            for start in range(0, len(texts), chunk):
                self.status = f"embedding paragraphs ({start}/{len(texts)})"
                parts.append(self.fast.embed(texts[start:start + chunk]))
                if self._stop.is_set():
                    return None
        except Exception as err:  # noqa: BLE001 - e.g. encoder package missing: go on with the champion only
            self.console.print(f"[yellow]fast model off: cannot embed paragraphs ({type(err).__name__}: {err})"
                               "[/yellow]")
            self.fast = None
            return None
        self.console.print(f"[green]learning loop[/green] {len(texts)} paragraphs embedded in "
                           f"{time.perf_counter() - started:.1f} s")
        return np.concatenate(parts) if parts else None

    def _fit(self) -> None:
        schema = self.project.schema
        labels = self.project.store.labels()
        self._labels_seen = len(labels)
        gold = gold_labels(labels, self.project.adjudications())
        index = {p: i for i, p in enumerate(self._ids)}
        rows = {task: [] for task in schema.task_names}
        for (pid, task), label in sorted(gold.items()):
            if pid in index and task in rows:
                rows[task].append((index[pid], label))
        classes = {task: schema.labels(task) for task in schema.task_names}
        self._fast_proba = self.fast.fit_predict(self._X, rows, classes)
        self._fitted_on = sum(map(len, rows.values())) if self._fast_proba is not None else 0

    def _rerank(self, trigger: str) -> None:
        schema = self.project.schema
        fast, champion = self._fast_proba, self._champion_proba
        current = fast or champion
        counts = {task: [0] * len(schema.labels(task)) for task in schema.task_names}
        for lab in self.project.store.labels():
            if lab.task in counts:
                counts[lab.task][schema.labels(lab.task).index(lab.label)] += 1
        components = queue_components(current, fast, champion, counts, self.queue.method, len(self._ids))
        weights = {name: getattr(self.queue, name) for name in COMPONENTS}
        scores = queue_scores(components, weights) if current else None
        self._ranking = Ranking(
            version=self._ranking.version + 1, model="fast" if fast else "champion" if champion else "none",
            fitted_on=self._fitted_on if fast else 0, labels_seen=self._labels_seen if fast else 0, trigger=trigger,
            index={p: i for i, p in enumerate(self._ids)}, components=components,
            scores=dict(zip(self._ids, map(float, scores))) if scores is not None else {}, proba=current)
