"""The transformer families (frozen embeddings + LR, SetFit, fine-tuning) on tiny configs.

Real packaged MiniLM weights, real training steps, a handful of short paragraphs: what
matters is the contract (schema class order, probabilities, determinism, save/load,
a reduced scoring precision kept only when it agrees with fp32, pyfunc parity), not accuracy.
"""

from __future__ import annotations

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.model import StanceModel
from pipeline.models import build_classifier
from pipeline.models.encoder import token_batches
from pipeline.precision import MIN_AGREEMENT, candidates, choose_precision
from pipeline.schema import load_schema

pytestmark = pytest.mark.slow  # trains or serves real models, or runs the pipeline end to end

CLASSES = ["robust", "fragile", "none"]
TEXTS = [
    "Moscow and Beijing deepen their strategic alignment with new pipelines and joint drills.",
    "The partnership between Russia and China has never been stronger, officials said.",
    "Xi and Putin pledged a friendship without limits and more coordination.",
    "Russia has become China's junior partner, dependent and distrustful.",
    "Frictions over prices stalled the pipeline talks and exposed mutual suspicion.",
    "Analysts see the alliance as lopsided and likely to fray.",
    "The football season opened with a win for the home side.",
    "Rain is expected across the region on Thursday.",
    "The museum reopened after renovation work.",
]
LABELS = ["robust"] * 3 + ["fragile"] * 3 + ["none"] * 3

TINY = {
    "embed_lr": {"max_length": 32, "batch_size": 8},
    "setfit": {"num_iterations": 1, "batch_size": 8, "trainable_layers": 1, "max_length": 32},
    "finetune": {"epochs": 1, "batch_size": 8, "trainable_layers": 1, "max_length": 32},
}


@pytest.fixture(scope="module", params=list(TINY))
def fitted(request):
    family = request.param
    return family, build_classifier(family, TINY[family], CLASSES, seed=7).fit(TEXTS, LABELS)


def test_probabilities_follow_the_schema_class_order(fitted):
    family, clf = fitted
    proba = clf.predict_proba(TEXTS)
    assert proba.shape == (len(TEXTS), len(CLASSES))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert clf.predict(TEXTS) == [CLASSES[i] for i in proba.argmax(axis=1)]


def test_same_seed_same_model(fitted):
    family, clf = fitted
    again = build_classifier(family, TINY[family], CLASSES, seed=7).fit(TEXTS, LABELS)
    np.testing.assert_allclose(again.predict_proba(TEXTS), clf.predict_proba(TEXTS), atol=1e-5)


def test_saved_folder_scores_the_same(fitted, tmp_path):
    family, clf = fitted
    clf.save(tmp_path / family)
    loaded = type(clf).load(tmp_path / family)
    np.testing.assert_allclose(loaded.predict_proba(TEXTS), clf.predict_proba(TEXTS), atol=1e-5)


def test_class_absent_from_training_is_never_predicted():
    clf = build_classifier("embed_lr", TINY["embed_lr"], CLASSES, seed=7).fit(TEXTS[:6], LABELS[:6])
    proba = clf.predict_proba(TEXTS)
    assert np.all(proba[:, CLASSES.index("none")] == 0)


def test_scoring_precision_is_the_fastest_that_agrees_with_fp32(tmp_path):
    schema = load_schema()
    data = {task: (TEXTS, [schema.labels(task)[i % 3] for i in range(len(TEXTS))]) for task in schema.task_names}
    model = StanceModel.fit(schema, "finetune", TINY["finetune"], 7, data)
    fp32 = model.predict(TEXTS)
    chosen = choose_precision(model, TEXTS, "auto")
    assert list(chosen["agreement"]) == ["fp32", "bf16", "int8"] and chosen["agreement"]["fp32"] == 1.0
    agreeing = [p for p, share in chosen["agreement"].items() if share >= MIN_AGREEMENT]
    assert chosen["precision"] == max(agreeing, key=chosen["per_s"].get)
    # the model now scores at that precision, and keeps it through save and load
    model.inference = {k: v for k, v in chosen.items() if k != "per_s"}
    model.save(tmp_path / "m")
    loaded = StanceModel.load(tmp_path / "m")
    assert {clf.precision for clf in loaded.classifiers.values()} == {chosen["precision"]}
    assert loaded.inference["precision"] == chosen["precision"]
    agreement = min(np.mean([a == b for a, b in zip(loaded.predict(TEXTS)[t], fp32[t])]) for t in fp32)
    assert agreement >= MIN_AGREEMENT


def test_precision_candidates_follow_the_setting():
    offered = ("fp32", "bf16", "int8")
    assert candidates("auto", offered) == ["fp32", "bf16", "int8"]
    assert candidates("int8", offered) == ["fp32", "int8"]
    assert candidates("fp32", offered) == ["fp32"]
    assert candidates("auto", ()) == []


def test_unknown_hyperparameter_is_a_config_error():
    from pipeline.config import ConfigError

    with pytest.raises(ConfigError, match="models.setfit"):
        build_classifier("setfit", {"epoch": 1}, CLASSES, seed=7)


def test_transformer_stance_model_as_pyfunc_matches_score_frame(tmp_path, monkeypatch):
    """A transformer champion goes through the same pyfunc wrapper as the baseline."""
    from pipeline.pyfunc import log_stance_model

    schema = load_schema()
    data = {task: (TEXTS, [schema.labels(task)[i % len(schema.labels(task))] for i in range(len(TEXTS))])
            for task in schema.task_names}
    model = StanceModel.fit(schema, "embed_lr", TINY["embed_lr"], 7, data)
    model.save(tmp_path / "model")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment("pyfunc-parity")  # not an experiment id left active by an earlier test's store
    with mlflow.start_run():
        info = log_stance_model(tmp_path / "model", TEXTS)
    served = mlflow.pyfunc.load_model(info.model_uri).predict(pd.DataFrame({"text": TEXTS[:4]}))
    pd.testing.assert_frame_equal(served.reset_index(drop=True), model.score_frame(TEXTS[:4]))


@pytest.fixture(scope="module", params=["setfit", "finetune"])
def saved_two_task_model(request, tmp_path_factory):
    """A model whose tasks train top layers on one packaged encoder, saved and loaded back."""
    schema = load_schema()
    data = {task: (TEXTS, [schema.labels(task)[(i + k) % 3] for i in range(len(TEXTS))])
            for k, task in enumerate(schema.task_names)}
    fitted = StanceModel.fit(schema, request.param, TINY[request.param], 7, data)
    folder = tmp_path_factory.mktemp(request.param) / "model"
    fitted.save(folder)
    return fitted, folder, StanceModel.load(folder)


def test_saved_model_keeps_one_encoder_and_only_each_tasks_trained_layers(saved_two_task_model):
    fitted, folder, loaded = saved_two_task_model
    assert len(list((folder / "encoders").iterdir())) == 1
    encoder_bytes = sum(p.stat().st_size for p in (folder / "encoders").rglob("*.safetensors"))
    for task in fitted.classifiers:
        task_files = list((folder / "tasks" / task).rglob("*.safetensors"))
        assert [p.name for p in task_files] == ["top.safetensors"]
        assert task_files[0].stat().st_size < encoder_bytes / 2  # one trained layer of six, plus the head
    np.testing.assert_allclose(pd.DataFrame(loaded.predict_proba(TEXTS)["partnership"]),
                               pd.DataFrame(fitted.predict_proba(TEXTS)["partnership"]), atol=1e-5)


def test_tasks_score_on_one_pass_of_the_shared_lower_layers(saved_two_task_model):
    _, _, loaded = saved_two_task_model
    calls = {task: 0 for task in loaded.classifiers}

    def counter(task):
        def hook(*_):
            calls[task] += 1
        return hook

    for task, clf in loaded.classifiers.items():
        clf._scorer.base_model.embeddings.register_forward_hook(counter(task))
    together = loaded.predict_proba(TEXTS)
    first = next(iter(loaded.classifiers.values()))
    batches = len(list(token_batches(first._tokenizer, TEXTS, first.params.max_length, first.params.eval_batch_size,
                                     torch.device("cpu"))))
    assert sum(calls.values()) == batches  # one embeddings (and lower layers) pass per batch, for all tasks
    for task, clf in loaded.classifiers.items():  # the same probabilities as each task scoring alone
        np.testing.assert_allclose(together[task], clf.predict_proba(TEXTS), atol=1e-6)
