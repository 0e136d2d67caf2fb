"""MLflow wiring: where runs go and what provenance they carry (loading models: pipeline/champion.py).

The tracking store defaults to `sqlite:///<repo>/mlflow.db` as an absolute path. During
`dvc exp run --queue` a stage runs in a temporary copy of the repo under .dvc/tmp/exps/;
DVC then sets `DVC_ROOT` to the parent repo, so queued experiments log to the project's
store too. `MLFLOW_TRACKING_URI` always wins.

Every MLflow run started while DVC runs an experiment is tagged with the experiment's
name and baseline commit (`DvcExperimentContext`, an MLflow run-context plugin declared
in pyproject.toml), so a row of `dvc exp show` finds its run and vice versa.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import yaml

from pipeline.config import load_params, project_root, resolve

os.environ.setdefault("DISABLE_MLFLOW_INTEGRATION", "TRUE")  # transformers must not log on its own
os.environ.setdefault("MLFLOW_ENABLE_PROACTIVE_TRACING", "false")


# DVC's environment variables for a stage run inside `dvc exp run`, and the MLflow tags they become.
EXPERIMENT_TAGS = {"DVC_EXP_NAME": "dvc.exp_name", "DVC_EXP_BASELINE_REV": "dvc.exp_baseline_rev"}


def tracking_uri() -> str:
    root = Path(os.environ["DVC_ROOT"]) if os.environ.get("DVC_ROOT") else project_root()
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root.resolve() / 'mlflow.db'}"


class DvcExperimentContext:
    """MLflow run-context provider (entry point `mlflow.run_context_provider`): tags a run
    with the DVC experiment it belongs to, whoever starts the run."""

    def in_context(self) -> bool:
        return bool(os.environ.get("DVC_EXP_NAME"))

    def tags(self) -> dict[str, str]:
        return {tag: os.environ[var] for var, tag in EXPERIMENT_TAGS.items() if os.environ.get(var)}


def configure():
    """Point mlflow at the project's tracking store and experiment; returns the mlflow module."""
    import mlflow

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment(load_params().mlflow.experiment)
    return mlflow


def git_commit() -> str:
    """The checked-out commit (with '-dirty' when tracked files changed), or 'unknown' outside git."""
    root = project_root()
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def file_md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def data_versions() -> dict[str, str]:
    """Hashes identifying the data a run used: the DVC-tracked raw corpus and the label files.

    The label hashes are plain MD5s of the files, i.e. the hashes DVC records for them
    as dependencies in dvc.lock.
    """
    params = load_params()
    versions: dict[str, str] = {}
    raw_dvc = resolve(params.ingest.raw_dir).with_suffix(".dvc")
    if raw_dvc.exists():
        outs = yaml.safe_load(raw_dvc.read_text(encoding="utf-8")).get("outs", [{}])
        versions["data.raw.dvc_md5"] = outs[0].get("md5", "unknown")
    for name in ("annotations", "adjudications", "schema_file"):
        path = resolve(getattr(params.labels, name))
        if path.exists():
            versions[f"data.labels.{path.name}.md5"] = file_md5(path)
    paragraphs = resolve(params.ingest.paragraphs)
    if paragraphs.exists():
        versions["data.paragraphs.md5"] = file_md5(paragraphs)
    return versions
