"""Shared fixtures: the real seed corpus and a throw-away project folder per test."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RAW = REPO / "data" / "raw"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DISABLE_MLFLOW_INTEGRATION", "TRUE")


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


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A copy of the project's configuration, labels and raw corpus in a temp folder, used as STANCE_ROOT."""
    for name in ("params.yaml",):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "labels", tmp_path / "labels", ignore=shutil.ignore_patterns("store.sqlite*", "annotators.json"))
    shutil.copytree(RAW, tmp_path / "data" / "raw")
    shutil.copy(REPO / "data" / "raw.dvc", tmp_path / "data" / "raw.dvc")
    monkeypatch.setenv("STANCE_ROOT", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    return tmp_path
