"""Shared fixtures: the real seed corpus, a throw-away project folder per test, and one trained project."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support import RAW, REPO


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DISABLE_MLFLOW_INTEGRATION", "TRUE")
SESSION_TRACKING_URI = os.environ.get("MLFLOW_TRACKING_URI")


def forget_mlflow_store() -> None:
    """Drop the store a test pointed MLflow at. mlflow.set_tracking_uri/set_registry_uri keep the URI in
    module globals and write it into os.environ behind monkeypatch's back; a registry URI left over from an
    earlier test made a later MlflowClient(tracking_uri=...) read the wrong registry ("Registered Model
    with name=stance-classifier not found" when the whole suite ran)."""
    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    os.environ.pop("MLFLOW_REGISTRY_URI", None)
    if SESSION_TRACKING_URI is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = SESSION_TRACKING_URI


@pytest.fixture(autouse=True)
def own_environment():
    """No test sees the MLflow store or the environment of another: each sets its own (`project`,
    `trained`, tmp dbs), and what a command run in-process sets (`stance` quiets libraries through
    environment variables) is undone."""
    forget_mlflow_store()
    saved = dict(os.environ)
    yield
    forget_mlflow_store()
    os.environ.clear()
    os.environ.update(saved)


def pytest_sessionstart(session):
    """A clean checkout has only data/raw.dvc: fetch the seed corpus from the in-repo DVC remote."""
    if not any(RAW.glob("*.txt")):
        dvc = Path(sys.executable).with_name("dvc")
        subprocess.run([str(dvc), "pull", "--quiet", "data/raw.dvc"], cwd=REPO, check=True)


@pytest.fixture(scope="session")
def seed_files() -> dict[str, str]:
    """The five seed pages, by file name (pulled from the DVC remote at session start)."""
    files = sorted(RAW.glob("*.txt"))
    if len(files) < 5:
        pytest.fail(f"{RAW}: seed corpus missing; run `dvc pull data/raw.dvc` (make test does)")
    return {f.name: f.read_text(encoding="utf-8") for f in files}


@pytest.fixture(scope="session")
def seed_paragraphs(seed_files) -> list[str]:
    """The seed pages' body paragraphs, as ingest segments them."""
    from pipeline.segment import segment_text

    return [p for text in seed_files.values() for a in segment_text(text) for p in a.paragraphs]


def _copy_inputs(root: Path) -> None:
    """The label files and the raw corpus: what the stages read besides params.yaml."""
    shutil.copytree(REPO / "labels", root / "labels", ignore=shutil.ignore_patterns("store.sqlite*", "annotators.json"))
    shutil.copytree(RAW, root / "data" / "raw")
    shutil.copy(REPO / "data" / "raw.dvc", root / "data" / "raw.dvc")


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A copy of the project's configuration, labels and raw corpus in a temp folder, used as STANCE_ROOT."""
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    _copy_inputs(tmp_path)
    _use_project(monkeypatch, tmp_path)
    return tmp_path


def _stance(*args: str) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app

    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="session")
def trained_project(tmp_path_factory) -> Path:
    """A tmp project trained once with the baseline on tiny CV settings, through the `stance` commands:
    ingest -> dataset -> train tfidf_lr (MLflow run in its own mlflow.db) -> register (champion)."""
    root = tmp_path_factory.mktemp("project")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["evaluate"].update({"n_repeats": 1, "n_bootstrap": 200, "learning_curve": [0.0, 1.0]})
    params["models"] = {"tfidf_lr": params["models"]["tfidf_lr"]}
    params["families"] = ["tfidf_lr"]
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _copy_inputs(root)
    saved = dict(os.environ)  # set up before any test's own_environment: undo what the commands set here
    with pytest.MonkeyPatch.context() as mp:
        _use_project(mp, root)
        for command in (["ingest"], ["dataset"], ["train", "--family", "tfidf_lr"], ["register"]):
            _stance(*command)
    forget_mlflow_store()
    os.environ.clear()
    os.environ.update(saved)
    return root


def _use_project(mp: pytest.MonkeyPatch, root: Path) -> None:
    mp.setenv("STANCE_ROOT", str(root))
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    mp.chdir(root)


@pytest.fixture
def trained(trained_project, monkeypatch) -> Path:
    """The trained project as STANCE_ROOT, MLflow store and cwd for one test, read-only: a test that
    registers or trains takes `trained_copy`."""
    _use_project(monkeypatch, trained_project)
    return trained_project


@pytest.fixture
def trained_copy(trained_project, tmp_path, monkeypatch) -> Path:
    """A private copy of the trained project (files and MLflow store) for a test that changes it."""
    root = tmp_path / "project"
    shutil.copytree(trained_project, root)
    _use_project(monkeypatch, root)
    return root
