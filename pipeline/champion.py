"""Loading a trained StanceModel: from its folder, any MLflow model URI, or the registered champion.

Tracking (where runs go, their tags) is pipeline/tracking.py; this module only reads what
`train` and `register` wrote, and checks a registered model's files against the manifest
its training run logged.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config import load_params
from pipeline.tracking import configure


def champion_uri() -> str:
    """The registry URI of the champion: the alias params.yaml's `registry` names."""
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
