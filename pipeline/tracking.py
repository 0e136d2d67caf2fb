"""MLflow wiring: where runs go, what provenance they carry, and loading the champion.

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


def champion_uri() -> str:
    params = load_params().registry
    return f"models:/{params.model_name}@{params.alias}"


def load_champion(model_uri: str | None = None):
    """A StanceModel from a folder, any MLflow model URI, or (default) the registered champion."""
    from pipeline.model import StanceModel

    if model_uri and Path(model_uri).is_dir() and (Path(model_uri) / "stance_model.json").exists():
        return StanceModel.load(Path(model_uri))
    from pipeline.pyfunc import RUN_MANIFEST, stance_model_folder

    mlflow = configure()
    uri = model_uri or champion_uri()
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    expected = None
    if run_id := _run_of(mlflow, uri):
        try:
            expected = mlflow.artifacts.load_dict(f"runs:/{run_id}/{RUN_MANIFEST}")
        except Exception as err:  # noqa: BLE001 - mlflow raises several types for a missing artifact
            from pipeline.model import ModelIntegrityError
            raise ModelIntegrityError(f"{uri}: run {run_id} has no {RUN_MANIFEST} to check the model files "
                                      f"against ({type(err).__name__}); re-train it with this version") from None
    return StanceModel.load(stance_model_folder(local), expected_files=expected)


def _run_of(mlflow, uri: str) -> str | None:
    """The run that logged `uri` (models:/name@alias, models:/name/version, runs:/id/...), else None."""
    if uri.startswith("runs:/"):
        return uri.removeprefix("runs:/").split("/")[0]
    if uri.startswith("models:/"):
        client = mlflow.MlflowClient()
        name, _, rest = uri.removeprefix("models:/").partition("@")
        if rest:
            return client.get_model_version_by_alias(name, rest).run_id
        name, _, version = name.rpartition("/")
        return client.get_model_version(name, version).run_id if name and version.isdigit() else None
    return None
