"""`stance exp`: definitions expand into `dvc exp run -S` commands; a real tiny queue runs in a temp git
repo; the comparison reads DVC's metrics files and the matching MLflow runs, which carry the exp name."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.config import ConfigError, load_params
from pipeline.experiments.compare import Candidate, Champion, Scores, compare, to_markdown, verdict
from pipeline.experiments.definition import ExperimentDef, expand, load_definition
from support import REPO

BIN = Path(sys.executable).parent
TASKS = ["a", "b"]


def test_every_committed_definition_expands_against_params():
    for path in sorted((REPO / "experiments").glob("*.yaml")):
        points = expand(path.stem, load_definition(path), load_params(REPO / "params.yaml"))
        assert points and len({p.name for p in points}) == len(points)


def test_grid_is_the_product_of_lists_and_becomes_dvc_commands():
    params = load_params(REPO / "params.yaml")
    spec = ExperimentDef(question="q?", families={"tfidf_lr": {"C": [0.5, 2.0], "word_ngram_max": 1}},
                         set={"evaluate.n_splits": [2, 3], "labels.annotations": "labels/annotations.jsonl"})
    points = expand("grid", spec, params)
    assert [p.name for p in points] == [f"grid-tfidf_lr-{i}" for i in range(1, 5)]
    assert points[1].overrides == {"models.tfidf_lr.C": 0.5, "models.tfidf_lr.word_ngram_max": 1,
                                   "evaluate.n_splits": 3, "labels.annotations": "labels/annotations.jsonl"}
    assert points[0].command() == ["dvc", "exp", "run", "--queue", "--name", "grid-tfidf_lr-1",
                                   "-S", "models.tfidf_lr.C=0.5", "-S", "models.tfidf_lr.word_ngram_max=1",
                                   "-S", "evaluate.n_splits=2", "-S", "labels.annotations=labels/annotations.jsonl",
                                   "train@tfidf_lr"]


@pytest.mark.parametrize("families, message", [
    ({"nope": {"C": 1.0}}, "family 'nope' has no `train@nope` stage"),
    ({"tfidf_lr": {"C": [-1.0]}}, "models.tfidf_lr"),
    ({"tfidf_lr": {"typo": 1}}, "typo"),
])
def test_bad_definitions_fail_before_anything_is_queued(families, message):
    with pytest.raises(ConfigError, match=message):
        expand("bad", ExperimentDef(question="q?", families=families), load_params(REPO / "params.yaml"))


def _scores(mean: float, a: tuple, b: tuple) -> Scores:
    return Scores(mean, {"a": a, "b": b})


def test_verdict_uses_the_registry_rule_and_says_when_it_is_noise():
    champion = _scores(0.50, (0.50, 0.40, 0.60), (0.50, 0.45, 0.55))
    beats, reason = verdict(_scores(0.52, (0.52, 0.4, 0.6), (0.52, 0.4, 0.6)), champion, "x")
    assert beats and "beats" in reason and "within noise" in reason
    beats, reason = verdict(_scores(0.60, (0.55, 0.5, 0.6), (0.65, 0.6, 0.7)), champion, "x")
    assert beats and "b above CI" in reason
    beats, reason = verdict(_scores(0.40, (0.30, 0.2, 0.4), (0.50, 0.4, 0.6)), champion, "x")
    assert not beats and "does not beat" in reason and "a below CI" in reason
    assert verdict(_scores(0.4, (0.4, 0, 1), (0.4, 0, 1)), None, "x")[0]


def test_table_flags_missing_runs_reused_runs_and_disagreeing_views():
    good = _scores(0.6, (0.6, 0.5, 0.7), (0.6, 0.5, 0.7))
    rows = [Candidate("e-1", "f", {"k": 1}, good, "run1xxxxxx", 0.6, "e-1"),
            Candidate("e-2", "f", {"k": 2}, good, "run2xxxxxx", 0.5, "e-1"),
            Candidate("e-3", "f", {"k": 3}, None)]
    champion = Champion("m v1 (f)", _scores(0.5, (0.5, 0.4, 0.6), (0.5, 0.4, 0.6)), "champrun")
    table = to_markdown(compare(rows, champion, TASKS, "Better?"), TASKS)
    lines = table.splitlines()
    assert lines[0].startswith("Better? — 2 of 3 runs done. Best: e-1 macro_f1=0.6000 beats")
    assert "| a macro-F1 [95% CI] |" in lines[2] and "champion: m v1 (f)" in lines[4]
    assert "| run1xxxx |" in lines[5] and "+0.1000 | beats" in lines[5]
    assert "metric differs from DVC" in lines[6] and "run cache: from e-1" in lines[6]
    assert "not run" in lines[7]


def test_runs_inside_dvc_experiments_log_to_the_parent_repo_and_carry_the_exp_name(monkeypatch, tmp_path):
    from mlflow.tracking.context.registry import resolve_tags

    from pipeline.tracking import tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))
    assert tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    monkeypatch.setenv("DVC_EXP_NAME", "grid-tfidf_lr-1")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "abc123")
    tags = resolve_tags()  # what mlflow.start_run adds: the plugin is installed through its entry point
    assert tags["dvc.exp_name"] == "grid-tfidf_lr-1" and tags["dvc.exp_baseline_rev"] == "abc123"
    monkeypatch.delenv("DVC_EXP_NAME")
    assert "dvc.exp_name" not in resolve_tags()


# --- a real queue: baseline repo from the trained project, two grid points, compare, MLflow tags ---

def _run(*args: str, cwd: Path, env: dict) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(args)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def exp_repo(trained_project, tmp_path_factory):
    """A git + DVC repo whose baseline commit is the trained project (dvc.lock from `dvc commit`, no rerun)."""
    root = tmp_path_factory.mktemp("exp") / "repo"
    shutil.copytree(trained_project, root, ignore=shutil.ignore_patterns("mlruns", "outputs", "*.log"))
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    shutil.copytree(REPO / "pipeline", root / "pipeline", ignore=shutil.ignore_patterns("__pycache__"))
    (root / "experiments").mkdir()
    (root / "experiments" / "tiny.yaml").write_text(yaml.safe_dump({
        "question": "Does a differently regularised baseline beat the champion?",
        "families": {"tfidf_lr": {"C": [0.25, 16.0]}}, "set": {"evaluate.n_splits": 3}}))
    env = {k: v for k, v in os.environ.items() if k not in ("STANCE_ROOT", "MLFLOW_TRACKING_URI")}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    (root / "data" / "raw.dvc").unlink()
    for command in (["git", "init", "-q"], ["git", "config", "user.name", "t"],
                    ["git", "config", "user.email", "t@example.org"], ["dvc", "init", "-q"],
                    ["dvc", "config", "core.analytics", "false"], ["dvc", "add", "-q", "data/raw"],
                    ["dvc", "commit", "-f", "-q"], ["git", "add", "-A"], ["git", "commit", "-q", "-m", "baseline"]):
        _run(*command, cwd=root, env=env)
    return root, env


@pytest.mark.slow
def test_a_queued_grid_runs_and_is_compared_with_the_champion(exp_repo):
    root, env = exp_repo
    _run(str(BIN / "stance"), "exp", "run", "experiments/tiny.yaml", cwd=root, env=env)
    _run(str(BIN / "stance"), "exp", "compare", "experiments/tiny.yaml", "--out", "tiny.md", cwd=root, env=env)
    table = (root / "tiny.md").read_text()
    assert "2 of 2 runs done" in table and "champion: stance-classifier v" in table
    for name, c in (("tiny-tfidf_lr-1", 0.25), ("tiny-tfidf_lr-2", 16.0)):
        row = next(line for line in table.splitlines() if line.startswith(f"| {name} |"))
        assert f"models.tfidf_lr.C={c}, evaluate.n_splits=3" in row
        assert "differs" not in row and "run cache" not in row and ("| beats |" in row or "| does not beat |" in row)

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{root / 'mlflow.db'}")  # the parent repo's store (DVC_ROOT), not the tempdir's
    runs = client.search_runs([client.get_experiment_by_name("stance").experiment_id],
                              "tags.`dvc.exp_name` LIKE 'tiny-%'")
    assert sorted(r.data.tags["dvc.exp_name"] for r in runs) == ["tiny-tfidf_lr-1", "tiny-tfidf_lr-2"]
    assert {r.data.params["model.C"] for r in runs} == {"0.25", "16.0"}
    assert {r.data.tags["dvc.exp_baseline_rev"] for r in runs} == {_run("git", "rev-parse", "HEAD", cwd=root,
                                                                        env=env).strip()}
    assert not list((root / ".dvc" / "tmp").rglob("mlflow.db"))


def test_families_default_to_every_model_and_must_have_hyperparameters(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("models:\n  tfidf_lr: {}\n  embed_lr: {}\n", encoding="utf-8")
    assert load_params(path).families == ["tfidf_lr", "embed_lr"]
    path.write_text("families: [setfit]\nmodels:\n  tfidf_lr: {}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"params.yaml: .*families \['setfit'\]"):
        load_params(path)
