"""The `stance` console: its own progress and summary lines only, library chatter with -v; and options
that either work where they are written or are rejected."""

from __future__ import annotations

import subprocess
import sys

import pytest
from support import REPO, Server, make_project, project_env
from typer.testing import CliRunner

from pipeline.cli import app

LIBRARY_NOISE = ("Warning", "warning", "Loading weights", "Downloading artifacts", "it/s]")


@pytest.fixture(scope="module")
def transformer_champion(tmp_path_factory):
    """A project whose registered champion is a tiny frozen-encoder model (loading it loads transformers
    weights; logging and loading it go through MLflow): every source of library noise `stance score` meets."""
    import mlflow

    from pipeline.model import StanceModel
    from pipeline.pyfunc import log_stance_model
    from pipeline.schema import load_schema

    root = make_project(tmp_path_factory.mktemp("console"))
    schema = load_schema(root / "labels" / "schema.yaml")
    texts = [f"Moscow and Beijing signed agreement number {i} on energy and trade." for i in range(9)]
    data = {t: (texts, [schema.labels(t)[i % len(schema.labels(t))] for i in range(len(texts))])
            for t in schema.task_names}
    StanceModel.fit(schema, "embed_lr", {"encoder": "minilm", "max_length": 32, "batch_size": 8}, 0, data).save(
        root / "model")
    env = project_env(root)
    with pytest.MonkeyPatch.context() as mp:
        for key in ("STANCE_ROOT", "MLFLOW_TRACKING_URI"):
            mp.setenv(key, env[key])
        mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
        mlflow.set_registry_uri(env["MLFLOW_TRACKING_URI"])
        mlflow.set_experiment("console")  # not the experiment id an earlier test left active in another store
        with mlflow.start_run():
            info = log_stance_model(root / "model", texts[:2])
        version = mlflow.register_model(info.model_uri, "stance-classifier")
        mlflow.MlflowClient().set_registered_model_alias("stance-classifier", "champion", version.version)
    return root


def _score(root, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *options, "score", str(REPO / "examples" / "articles"),
                           "--out", str(root / f"out{len(options)}")], cwd=root, env=project_env(root),
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_score_prints_only_its_own_lines_and_verbose_shows_the_libraries(transformer_champion):
    quiet = _score(transformer_champion)
    assert quiet.returncode == 0, quiet.stderr
    noise = [line for line in quiet.stderr.splitlines() if any(word in line for word in LIBRARY_NOISE)]
    assert not noise, noise
    assert "paragraphs from" in quiet.stderr.splitlines()[-1]
    verbose = _score(transformer_champion, "-v")
    assert verbose.returncode == 0, verbose.stderr
    assert "Loading weights" in verbose.stderr and "py.warnings" in verbose.stderr


MLFLOW_NOTICES = ("Successfully registered model", "Created version", "already exists. Creating a new version")


@pytest.mark.parametrize("verbose", [False, True])
def test_mlflow_notices_are_held_back_unless_verbose(verbose, capsys):
    """MLflow prints its registry notices past its loggers; MLflow code that mutes and unmutes its stream
    inside the block (as importing mlflow.types.responses does) must not let them through."""
    from mlflow.utils.autologging_utils import MlflowEventsAndWarningsBehaviorGlobally
    from mlflow.utils.logging_utils import eprint

    from pipeline.console import configure, mlflow_notices_quiet

    configure(verbose)
    with mlflow_notices_quiet():
        with MlflowEventsAndWarningsBehaviorGlobally(disable_event_logs=True, disable_warnings=False,
                                                     reroute_warnings=False):
            pass
        eprint("Created version '2' of model 'stance-classifier'.")
    assert ("Created version" in capsys.readouterr().err) is verbose


@pytest.mark.slow
def test_register_prints_its_decision_only_and_verbose_shows_mlflow(trained_copy):
    quiet = CliRunner().invoke(app, ["register"])
    assert quiet.exit_code == 0, quiet.output
    assert not [line for line in quiet.stderr.splitlines() if any(n in line for n in MLFLOW_NOTICES)], quiet.stderr
    verbose = CliRunner().invoke(app, ["-v", "register"])
    assert verbose.exit_code == 0, verbose.output
    assert "Created version" in verbose.stderr


def test_annotate_group_options_are_rejected_for_other_sub_commands(tmp_path, monkeypatch):
    monkeypatch.setenv("STANCE_ROOT", str(make_project(tmp_path / "p")))
    monkeypatch.setenv("COLUMNS", "300")  # the error box on one line
    result = CliRunner().invoke(app, ["annotate", "--port", "9000", "--model", "m", "add-annotator", "ana"])
    assert result.exit_code == 2
    assert "--port, --model belong(s) to `serve`, not to `add-annotator`" in result.output


@pytest.mark.slow
def test_annotate_group_options_reach_serve(tmp_path):
    server = Server(make_project(tmp_path / "p"), group_options=True).start()  # answers on the port it was given
    server.stop()
