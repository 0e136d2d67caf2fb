"""The spine end to end on the real seeds, with a tiny evaluation config: ingest -> dataset ->
train (CV + MLflow run) -> register (alias rules) -> load champion -> pyfunc and REST serving."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

pytestmark = pytest.mark.slow  # trains or serves real models, or runs the pipeline end to end


def test_run_is_tracked_with_provenance_and_champion_alias(trained):
    import mlflow
    from mlflow import MlflowClient

    from pipeline.schema import load_schema

    client = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    champion = client.get_model_version_by_alias("stance-classifier", "champion")
    run = client.get_run(champion.tags["run_id"])
    assert run.data.tags["git_commit"] and run.data.tags["data.raw.dvc_md5"] != "unknown"
    assert "data.labels.annotations.jsonl.md5" in run.data.tags
    assert "selection_reason" in run.data.tags
    for task in load_schema().task_names:
        m = run.data.metrics
        assert m[f"{task}.macro_f1_ci_low"] <= m[f"{task}.macro_f1"] <= m[f"{task}.macro_f1_ci_high"]
    assert run.data.params["family"] == "tfidf_lr"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/confusion" in artifacts and "plots/reliability" in artifacts
    metrics = json.loads((trained / "metrics" / "train" / "tfidf_lr.json").read_text())
    assert metrics["macro_f1"] == pytest.approx(run.data.metrics["macro_f1"])
    assert "Comparison" in (trained / "MODEL_CARD.md").read_text()


def test_headline_is_measured_on_real_text_with_transfer_and_learning_curve(trained):
    """Only scraped paragraphs are tested; authored ones always train; the card says so and warns on thin classes."""
    import pandas as pd

    metrics = json.loads((trained / "metrics" / "train" / "tfidf_lr.json").read_text())
    paragraphs = pd.read_parquet(trained / "data" / "paragraphs.parquet")
    out_of_fold = pd.read_parquet(trained / "models" / "tfidf_lr" / "out_of_fold.parquet")
    origin = paragraphs.set_index("paragraph_id")["origin"]
    assert set(origin[out_of_fold["paragraph_id"]]) == {"scraped"}
    assert {"scraped", "authored"} <= set(origin)
    assert metrics["transfer_macro_f1"] is not None
    for task in ("partnership", "china_role"):
        support = sum(c["support"] for c in metrics[task]["per_class"].values())
        assert support == (out_of_fold["task"] == task).sum()
        curve = pd.read_csv(trained / "plots" / "tfidf_lr" / "learning_curve" / f"{task}.csv")
        assert curve["train_labels"].is_monotonic_increasing and len(curve) == 2
    card = (trained / "MODEL_CARD.md").read_text()
    assert "transfer macro-F1" in card and "Learning curve" in card and "> **Warning:**" in card
    assert "## Behavioural tests" in card and "| DIR |" in card and "| INV |" in card
    provenance = json.loads((trained / "models" / "tfidf_lr" / "stance_model.json").read_text())["provenance"]
    assert provenance["paragraphs_by_origin"]["authored"] > provenance["paragraphs_by_origin"]["scraped"]


def test_model_ships_a_temperature_only_where_it_lowers_out_of_sample_ece(trained):
    metrics = json.loads((trained / "metrics" / "train" / "tfidf_lr.json").read_text())
    shipped = json.loads((trained / "models" / "tfidf_lr" / "stance_model.json").read_text())["temperatures"]
    for task, temperature in shipped.items():
        m = metrics[task]
        assert m["temperature_used"] == (m["ece_calibrated"] < m["ece_uncalibrated"])
        assert temperature == (m["temperature_fitted"] if m["temperature_used"] else 1.0)
        assert m["ece"] == min(m["ece_calibrated"], m["ece_uncalibrated"])


def test_alias_moves_only_when_the_new_model_wins(trained_copy):
    from mlflow import MlflowClient

    from pipeline.register import register

    client = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    before = client.get_model_version_by_alias("stance-classifier", "champion").version
    run = json.loads((trained_copy / "models" / "tfidf_lr" / "mlflow_run.json").read_text())
    evaluation = client.get_model_version_by_alias("stance-classifier", "champion").tags["evaluation"]
    worse = dict(run, macro_f1=run["macro_f1"] - 0.1)
    decision = register(worse, "macro_f1", "stance-classifier", "champion", {"tfidf_lr": {"macro_f1": worse["macro_f1"]}},
                        evaluation)
    assert not decision["alias_moved"] and "does not beat" in decision["reason"]
    assert client.get_model_version_by_alias("stance-classifier", "champion").version == before
    better = dict(run, macro_f1=run["macro_f1"] + 0.1)
    decision = register(better, "macro_f1", "stance-classifier", "champion", {"tfidf_lr": {"macro_f1": better["macro_f1"]}},
                        evaluation)
    assert decision["alias_moved"]
    assert client.get_model_version_by_alias("stance-classifier", "champion").version != before
    other = register(worse, "macro_f1", "stance-classifier", "champion", {"tfidf_lr": {"macro_f1": worse["macro_f1"]}},
                     "another-dataset")
    assert other["alias_moved"] and "not comparable" in other["reason"]


def test_pyfunc_gives_the_same_output_as_the_stance_model(trained):
    import mlflow.pyfunc

    from pipeline.champion import champion_uri, load_champion

    texts = ["Beijing keeps buying Russian oil and ships drone parts to Moscow.",
             "The relationship between Moscow and Beijing is asymmetric and mistrustful."]
    expected = load_champion().score_frame(texts)
    pyfunc = mlflow.pyfunc.load_model(champion_uri())
    got = pyfunc.predict(pd.DataFrame({"text": texts}))
    pd.testing.assert_frame_equal(got.reset_index(drop=True), expected)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers_ping(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/ping", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_mlflow_models_serve_answers_rest_requests_offline(trained):
    from pipeline.champion import champion_uri, load_champion

    port = _free_port()
    bin_dir = Path(sys.executable).parent  # mlflow starts `uvicorn` from PATH, as in an activated venv
    env = dict(os.environ, HF_HUB_OFFLINE="1", MLFLOW_TRACKING_URI=os.environ["MLFLOW_TRACKING_URI"],
               PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    mlflow_bin = bin_dir / "mlflow"
    log = trained / "serve.log"
    with log.open("wb") as sink:  # a file, not a pipe: a dead server's children cannot block the test
        server = subprocess.Popen([str(mlflow_bin), "models", "serve", "-m", champion_uri(), "--env-manager", "local",
                                   "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                                  env=env, cwd=trained, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 120
        while not _answers_ping(port):
            if server.poll() is not None or time.time() > deadline:
                pytest.fail("mlflow models serve did not come up: " + log.read_text(errors="replace")[-3000:])
            time.sleep(1)
        texts = ["China supplies components for Russian drones despite sanctions."]
        reply = httpx.post(f"http://127.0.0.1:{port}/invocations", json={"dataframe_records": [{"text": t} for t in texts]},
                           timeout=30)
        assert reply.status_code == 200, reply.text
        predictions = reply.json()["predictions"]
        expected = load_champion().score_frame(texts).to_dict("records")
        assert predictions == expected
    finally:
        server.terminate()
        server.wait(timeout=30)
