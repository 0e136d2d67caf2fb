"""Does a candidate beat the champion? Pure verdicts and the comparison table.

"Beats" uses the registry's own rule (`register.decide`: a higher mean macro-F1 over
tasks would move the alias); each task is also placed against the champion's bootstrap
interval, because on tiny data most differences are inside it and the table says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.register import decide


@dataclass(frozen=True)
class Scores:
    """Mean macro-F1 over tasks and, per task, (macro-F1, CI low, CI high)."""
    mean: float
    tasks: dict[str, tuple[float, float, float]]

    @classmethod
    def from_metrics_file(cls, metrics: dict, tasks: list[str]) -> "Scores":
        """From metrics/train/<family>.json (what `dvc metrics show` reads)."""
        return cls(metrics["macro_f1"], {t: (metrics[t]["macro_f1"], metrics[t]["macro_f1_ci_low"],
                                            metrics[t]["macro_f1_ci_high"]) for t in tasks})

    @classmethod
    def from_mlflow_metrics(cls, metrics: dict[str, float], tasks: list[str]) -> "Scores":
        """From the flat metrics the train stage logs to MLflow."""
        return cls(metrics["macro_f1"], {t: (metrics[f"{t}.macro_f1"], metrics[f"{t}.macro_f1_ci_low"],
                                            metrics[f"{t}.macro_f1_ci_high"]) for t in tasks})


@dataclass(frozen=True)
class Candidate:
    name: str  # DVC experiment name
    family: str
    overrides: dict[str, object]  # params as the experiment ran them
    scores: Scores | None  # from the experiment's metrics file; None when it has not run (or failed)
    mlflow_run_id: str | None = None  # from the experiment's models/<family>/mlflow_run.json
    mlflow_macro_f1: float | None = None
    mlflow_exp_name: str | None = None  # the run's dvc.exp_name tag: another name when DVC's run cache reused it


@dataclass(frozen=True)
class Champion:
    label: str  # e.g. "stance-classifier v3 (tfidf_lr)"
    scores: Scores
    run_id: str


@dataclass
class Comparison:
    rows: list[dict] = field(default_factory=list)
    answer: str = ""


def task_position(score: float, champion: tuple[float, float, float]) -> str:
    """Where a task's macro-F1 falls against the champion's interval."""
    _, low, high = champion
    return "above CI" if score > high else "below CI" if score < low else "within CI"


def verdict(candidate: Scores, champion: Scores | None, name: str, metric: str = "macro_f1") -> tuple[bool, str]:
    """Whether the candidate would become champion, and a sentence that also says whether it is noise."""
    beats, reason = decide(name, candidate.mean, champion.mean if champion else None, metric)
    if champion is None:
        return beats, reason
    positions = {t: task_position(candidate.tasks[t][0], champion.tasks[t]) for t in candidate.tasks}
    clear = [t for t, p in positions.items() if p != "within CI"]
    noise = ("; every task is within the champion's CI, so the difference is within noise" if not clear else
             "; " + ", ".join(f"{t} {positions[t]}" for t in clear))
    return beats, reason + noise


def _cell(scores: tuple[float, float, float]) -> str:
    return f"{scores[0]:.3f} [{scores[1]:.3f}, {scores[2]:.3f}]"


def _run_cell(c: Candidate, agree: bool) -> str:
    """The MLflow run id, flagged when its metric disagrees with DVC's or DVC reused another experiment's run."""
    cell = (c.mlflow_run_id or "missing")[:8]
    if c.mlflow_run_id and not agree:
        cell += " (metric differs from DVC!)"
    if c.mlflow_exp_name and c.mlflow_exp_name != c.name:
        cell += f" (run cache: from {c.mlflow_exp_name})"
    return cell


def compare(candidates: list[Candidate], champion: Champion | None, tasks: list[str], question: str) -> Comparison:
    """One row per candidate (champion first), and the answer to the experiment's question."""
    result = Comparison()
    if champion:
        result.rows.append({"experiment": f"champion: {champion.label}", "overrides": "",
                            **{t: _cell(champion.scores.tasks[t]) for t in tasks},
                            "mean macro-F1": f"{champion.scores.mean:.4f}", "Δ": "", "verdict": "",
                            "MLflow run": champion.run_id[:8]})
    best: tuple[float, str] | None = None
    for c in candidates:
        overrides = ", ".join(f"{k}={v}" for k, v in c.overrides.items())
        if c.scores is None:
            result.rows.append({"experiment": c.name, "overrides": overrides, **{t: "" for t in tasks},
                                "mean macro-F1": "", "Δ": "", "verdict": "not run", "MLflow run": ""})
            continue
        beats, reason = verdict(c.scores, champion.scores if champion else None, c.name)
        agree = c.mlflow_macro_f1 is not None and abs(c.mlflow_macro_f1 - c.scores.mean) < 1e-9
        delta = f"{c.scores.mean - champion.scores.mean:+.4f}" if champion else ""
        result.rows.append({"experiment": c.name, "overrides": overrides,
                            **{t: _cell(c.scores.tasks[t]) for t in tasks},
                            "mean macro-F1": f"{c.scores.mean:.4f}", "Δ": delta,
                            "verdict": "beats" if beats else "does not beat",
                            "MLflow run": _run_cell(c, agree)})
        if best is None or c.scores.mean > best[0]:
            best = (c.scores.mean, reason)
    ran = sum(c.scores is not None for c in candidates)
    result.answer = (f"{question} — {ran} of {len(candidates)} runs done. " +
                     (f"Best: {best[1]}." if best else "No results yet: run `stance exp run` first."))
    return result


def to_markdown(comparison: Comparison, tasks: list[str], confidence: float = 0.95) -> str:
    """The table as GitHub markdown, answer first."""
    if not comparison.rows:
        return comparison.answer + "\n"
    columns = list(comparison.rows[0])
    header = [f"{c} macro-F1 [{int(confidence * 100)}% CI]" if c in tasks else c for c in columns]
    lines = [comparison.answer, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row[c]) for c in columns) + " |" for row in comparison.rows]
    return "\n".join(lines) + "\n"
