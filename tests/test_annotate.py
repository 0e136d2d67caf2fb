"""Annotation side: store durability and determinism, queue, formats, quality, HTTP auth, concurrency + kill."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.annotate.formats import FORMATS, export_labels, import_labels
from pipeline.annotate.paragraphs import ParagraphPool
from pipeline.annotate.learner import champion_predictor
from pipeline.annotate.queue import (QueueOptions, disagreement_scores, next_paragraph, queue_components,
                                     queue_scores, rarity_scores, uncertainty_scores)
from pipeline.annotate.quality import (add_adjudication, list_conflicts, out_of_fold_proba, suspicious_labels,
                                      write_adjudications)
from pipeline.annotate.store import LabelStore
from pipeline.labels import (Adjudication, Annotation, LabelFileError, load_adjudications, load_annotations,
                             model_agreement)
from pipeline.schema import load_schema
from support import (REPO, Server, add_annotator, call, make_project, project_env, seed_labels, wait_for_mirror,
                     wait_for_ranking)

SCHEMA = load_schema(REPO / "labels" / "schema.yaml")
TASKS = SCHEMA.task_names


def label(pid: str, task: str, cls: str, who: str, **extra: str) -> Annotation:
    return Annotation(paragraph_id=pid, task=task, label=cls, annotator=who, **extra)


def store_at(tmp_path: Path) -> LabelStore:
    return LabelStore(tmp_path / "labels" / "store.sqlite", tmp_path / "labels" / "annotations.jsonl")


# --- store --------------------------------------------------------------------------------

def test_mirror_is_deterministic_and_sorted(tmp_path):
    first, second = store_at(tmp_path / "a"), store_at(tmp_path / "b")
    labels = [label(f"p{i}", task, SCHEMA.labels(task)[i % 3], who, note="n" if i == 1 else "")
              for i in range(5) for task in TASKS for who in ("zoe", "al")]
    for lab in labels:
        first.save(lab)
    for lab in reversed(labels):
        second.save(lab)
    text = first.annotations_path.read_bytes()
    assert text == second.annotations_path.read_bytes()
    keys = [(r["paragraph_id"], r["task"], r["annotator"]) for r in map(json.loads, text.decode().splitlines())]
    assert keys == sorted(keys) and len(keys) == len(labels)
    assert load_annotations(first.annotations_path, SCHEMA) == sorted(
        labels, key=lambda a: (a.paragraph_id, a.task, a.annotator))


def test_undo_restores_previous_label_and_skip(tmp_path):
    store = store_at(tmp_path)
    task = TASKS[0]
    a, b = SCHEMA.labels(task)[:2]
    store.save(label("p1", task, a, "al"))
    store.save(label("p1", task, b, "al"))
    store.skip("al", "p2")
    assert store.undo("al") == "p2" and store.skipped("al") == set()
    assert store.undo("al") == "p1" and [x.label for x in store.labels()] == [a]
    assert store.undo("al") == "p1" and store.labels() == []
    assert store.undo("al") is None
    assert store.annotations_path.read_text() == ""


def test_startup_import_is_idempotent_and_keeps_app_labels(tmp_path):
    store = store_at(tmp_path)
    task = TASKS[0]
    classes = SCHEMA.labels(task)
    seed = [label("p1", task, classes[0], "expert"), label("p2", task, classes[1], "expert")]
    store.sync_from_file(seed)
    store.save(label("p3", task, classes[2], "al"))
    before = store.annotations_path.read_bytes()
    store.sync_from_file(load_annotations(store.annotations_path, SCHEMA))
    assert store.annotations_path.read_bytes() == before
    # an expert label corrected / removed in the file follows the file; the annotator's label stays
    store.sync_from_file([label("p1", task, classes[2], "expert")])
    assert {(x.paragraph_id, x.label) for x in store.labels()} == {("p1", classes[2]), ("p3", classes[2])}


OLD_LABELS_DDL = """
CREATE TABLE labels (paragraph_id TEXT NOT NULL, task TEXT NOT NULL, annotator TEXT NOT NULL, label TEXT NOT NULL,
    rationale TEXT NOT NULL DEFAULT '', note TEXT NOT NULL DEFAULT '', origin TEXT NOT NULL, saved_at REAL NOT NULL,
    PRIMARY KEY (paragraph_id, task, annotator));
CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, annotator TEXT NOT NULL, paragraph_id TEXT NOT NULL,
    kind TEXT NOT NULL, task TEXT, previous TEXT);
"""


def test_store_from_before_suggestions_keeps_every_label(tmp_path):
    task = TASKS[0]
    a, b = SCHEMA.labels(task)[:2]
    db = tmp_path / "labels" / "store.sqlite"
    db.parent.mkdir()
    with sqlite3.connect(db) as conn:  # a store written by the previous release, with an undoable relabel
        conn.executescript(OLD_LABELS_DDL)
        conn.execute("INSERT INTO labels VALUES ('p1', ?, 'al', ?, 'why', '', 'person', 1.0)", (task, b))
        conn.execute("INSERT INTO events (annotator, paragraph_id, kind, task, previous) "
                     "VALUES ('al', 'p1', 'label', ?, ?)", (task, json.dumps([a, "", "", "person"])))
    old_line = {"paragraph_id": "p0", "task": task, "label": a, "annotator": "expert", "rationale": ""}
    (tmp_path / "labels" / "annotations.jsonl").write_text(json.dumps(old_line) + "\n")
    store = store_at(tmp_path)
    store.sync_from_file(load_annotations(store.annotations_path, SCHEMA))
    assert store.labels() == [label("p0", task, a, "expert"), label("p1", task, b, "al", rationale="why")]
    assert store.undo("al") == "p1" and store.labels()[1] == label("p1", task, a, "al")
    store.save(label("p2", task, b, "al", suggestion_shown=True, suggestion_accepted=False))
    lines = [json.loads(line) for line in store.annotations_path.read_text().splitlines()]
    assert lines[0] == old_line and "suggestion_shown" not in lines[1]
    assert (lines[2]["suggestion_shown"], lines[2]["suggestion_accepted"]) == (True, False)
    assert load_annotations(store.annotations_path, SCHEMA)[2].suggestion_shown is True
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**old_line, "suggestion_shown": "yes"}) + "\n")
    with pytest.raises(LabelFileError, match="bad.jsonl:1: field 'suggestion_shown': must be true or false"):
        load_annotations(bad, SCHEMA)


def test_tokens_are_hashed_and_checked(tmp_path):
    store = store_at(tmp_path)
    token = store.add_annotator("ann")
    assert store.authenticate("ann", token)
    assert not store.authenticate("ann", token + "x") and not store.authenticate("bob", token)
    assert token.encode() not in store.db_path.read_bytes()
    with pytest.raises(ValueError, match="invalid annotator name"):
        store.add_annotator("../etc")


# --- queue --------------------------------------------------------------------------------

def _pool(n: int, on_topic: int) -> pd.DataFrame:
    frame = pd.DataFrame({"paragraph_id": [f"p{i}" for i in range(n)], "on_topic": [i < on_topic for i in range(n)],
                          "text": ["t"] * n})
    return frame.set_index("paragraph_id", drop=False)


def test_queue_prefers_uncertain_on_topic_and_never_repeats():
    pool = _pool(6, on_topic=4)
    uncertainty = {"p0": 0.1, "p1": 0.9, "p2": 0.5, "p3": 0.2, "p4": 1.0, "p5": 1.0}
    only_uncertain = QueueOptions(random_share=0, double_share=0)
    pick = next_paragraph(pool, [], set(), "al", TASKS, uncertainty, only_uncertain)
    assert (pick.paragraph_id, pick.reason) == ("p1", "ranked")  # p4/p5 are off-topic
    done = [label("p1", t, SCHEMA.labels(t)[0], "al") for t in TASKS]
    assert next_paragraph(pool, done, set(), "al", TASKS, uncertainty, only_uncertain).paragraph_id == "p2"
    half = done[:1]  # a paragraph labelled on some tasks only is resumed first
    assert next_paragraph(pool, half, set(), "al", TASKS, uncertainty, only_uncertain).reason == "resume"
    seen = set()
    labels: list[Annotation] = []
    for _ in range(6):
        pick = next_paragraph(pool, labels, set(), "al", TASKS, uncertainty, QueueOptions())
        assert pick.paragraph_id not in seen
        seen.add(pick.paragraph_id)
        labels += [label(pick.paragraph_id, t, SCHEMA.labels(t)[0], "al") for t in TASKS]
    assert next_paragraph(pool, labels, set(), "al", TASKS, uncertainty, QueueOptions()) is None


def test_queue_sends_paragraphs_for_agreement_and_mixes_random():
    pool = _pool(40, on_topic=40)
    theirs = [label("p7", t, SCHEMA.labels(t)[0], "bob") for t in TASKS]
    always_double = QueueOptions(random_share=0, double_share=1)
    pick = next_paragraph(pool, theirs, set(), "al", TASKS, {}, always_double)
    assert (pick.paragraph_id, pick.reason) == ("p7", "agreement")
    full = theirs + [label("p7", t, SCHEMA.labels(t)[0], "cy") for t in TASKS]
    assert next_paragraph(pool, full, set(), "al", TASKS, {}, always_double).paragraph_id != "p7"
    reasons = [next_paragraph(pool, [], {f"p{j}" for j in range(k)}, "al", TASKS,
                              {f"p{i}": i / 40 for i in range(40)}, QueueOptions(random_share=0.3)).reason
               for k in range(30)]
    assert 0 < reasons.count("random") < 30 and "ranked" in reasons


def test_uncertainty_scores():
    proba = {"a": np.array([[0.98, 0.01, 0.01], [0.34, 0.33, 0.33]])}
    for method in ("margin", "entropy"):
        scores = uncertainty_scores(proba, method)
        assert scores[1] > scores[0] and 0 <= scores.min() and scores.max() <= 1


def test_queue_score_components():
    sure = np.array([[0.9, 0.05, 0.05], [0.05, 0.05, 0.9]])
    other = np.array([[0.9, 0.05, 0.05], [0.9, 0.05, 0.05]])
    assert disagreement_scores({"a": sure}, {"a": sure}).tolist() == [0, 0]
    assert disagreement_scores({"a": sure}, {"a": other}).round(4).tolist() == [0, 0.85]
    # class 0 has 8 labels, class 2 none: the paragraph likely to be class 2 gets the boost
    rarity = rarity_scores({"a": sure}, {"a": [8, 4, 0]})
    assert rarity[1] > 0.9 > 0.2 > rarity[0]
    assert rarity_scores({"a": sure}, {"a": [0, 0, 0]}).tolist() == [0, 0]
    parts = queue_components({"a": sure}, {"a": sure}, {"a": other}, {"a": [8, 4, 0]}, "margin", 2)
    scores = queue_scores(parts, {"uncertainty": 0, "disagreement": 1, "rarity": 0})
    assert scores.tolist() == parts["disagreement"].tolist()
    alone = queue_components(None, None, None, {}, "margin", 2)
    assert all(v.tolist() == [0, 0] for v in alone.values())


def test_model_agreement_is_apart_from_human_agreement():
    task = TASKS[0]
    a, b, c = SCHEMA.labels(task)
    labels = [label("p1", task, a, "al", suggestion_shown=True, suggestion_accepted=True),
              label("p1", task, b, "bo", suggestion_shown=True, suggestion_accepted=False),
              label("p2", task, c, "al"), label("p3", task, c, "al")]
    report = model_agreement(labels, {("p1", task): a, ("p2", task): c}, SCHEMA)[task]
    assert (report["n"], report["percent_agreement"]) == (3, round(2 / 3, 4))
    assert (report["suggestions_shown"], report["suggestions_accepted"]) == (2, 1)


def test_champion_uncertainty_ranks_the_pool(tmp_path, monkeypatch):
    from rich.console import Console

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("STANCE_ROOT", str(make_project(tmp_path / "project")))
    from pipeline.model import StanceModel

    texts = ["alliance friendship deepening", "mistrust rivalry decline", "weather football recipe"] * 4
    data = {t: (texts, [SCHEMA.labels(t)[i % 3] for i in range(len(texts))]) for t in TASKS}
    StanceModel.fit(SCHEMA, "tfidf_lr", {"char_ngrams": False}, 0, data).save(tmp_path / "model")
    predict = champion_predictor(Console(), str(tmp_path / "model"))
    pool = pd.DataFrame({"paragraph_id": ["sure", "unsure"], "on_topic": [True, True],
                         "text": ["alliance friendship deepening", "holiday"]}).set_index("paragraph_id", drop=False)
    scores = dict(zip(pool["paragraph_id"], uncertainty_scores(predict(list(pool["text"])), "entropy")))
    assert scores["unsure"] > scores["sure"]
    pick = next_paragraph(pool, [], set(), "al", TASKS, scores, QueueOptions(random_share=0, double_share=0))
    assert pick.paragraph_id == "unsure"
    assert champion_predictor(Console(), str(tmp_path / "missing")) is None


def test_pool_picks_up_newly_ingested_paragraphs(tmp_path):
    root = make_project(tmp_path, n_paragraphs=4)
    path = root / "data" / "paragraphs.parquet"
    pool = ParagraphPool(path)
    assert len(pool.current().frame) == 4
    frame = pd.read_parquet(path)
    extra = frame.iloc[:1].assign(paragraph_id="new1", source="new.txt", text="A new article about Moscow.")
    pd.concat([frame, extra]).to_parquet(path, index=False)
    assert pool.current().has("new1") and pool.current().neighbours("p01") == (frame.text[0], frame.text[2])


# --- formats ------------------------------------------------------------------------------

def _some_labels() -> list[Annotation]:
    out = []
    for i, who in enumerate(["al", "bo", "cy"]):
        for j in range(4):
            for task in TASKS:
                out.append(label(f"p{j}", task, SCHEMA.labels(task)[(i + j) % 3], who,
                                 rationale="because, \"quoted\"\nline" if (i + j) % 2 else "",
                                 note="ünïcode note" if j == 1 else ""))
    return out


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_import_round_trip_is_lossless(fmt):
    labels = _some_labels()
    paragraphs = {f"p{j}": {"text": f"text {j} <b>,\"x\"", "source": "s.txt", "title": "T"} for j in range(4)}
    predictions = {f"p{j}": {t: dict(zip(SCHEMA.labels(t), (0.6, 0.3, 0.1))) for t in TASKS} for j in range(4)}
    text = export_labels(fmt, labels, paragraphs, SCHEMA, predictions)
    assert text == export_labels(fmt, list(reversed(labels)), paragraphs, SCHEMA, predictions)
    back = import_labels(fmt, text, f"export.{fmt}", SCHEMA).labels
    key = lambda a: (a.paragraph_id, a.task, a.annotator)  # noqa: E731
    assert sorted(back, key=key) == sorted(labels, key=key)


def test_label_studio_predictions_and_real_export_shape():
    text = export_labels("label-studio", [], {"p0": {"text": "x"}}, SCHEMA,
                         {"p0": {t: dict(zip(SCHEMA.labels(t), (0.2, 0.7, 0.1))) for t in TASKS}})
    (task,) = json.loads(text)
    result = task["predictions"][0]["result"]
    assert [r["value"]["choices"] for r in result] == [[SCHEMA.labels(t)[1]] for t in TASKS]
    task_name, cls = TASKS[0], SCHEMA.labels(TASKS[0])[2]
    ls_export = [{"id": 9, "data": {"paragraph_id": "p0", "text": "x"}, "annotations": [
        {"id": 1, "completed_by": 3, "was_cancelled": False,
         "result": [{"from_name": task_name, "to_name": "text", "type": "choices", "value": {"choices": [cls]}}]},
        {"id": 2, "completed_by": {"id": 4, "email": "b@x.org"}, "was_cancelled": True, "result": []}]}]
    (got,) = import_labels("label-studio", json.dumps(ls_export), "ls.json", SCHEMA).labels
    assert (got.annotator, got.task, got.label) == ("ls-user-3", task_name, cls)


def test_import_errors_name_file_line_and_field():
    bad = "\n".join([json.dumps({"paragraph_id": "p0", "label": [f"{TASKS[0]}:nope"], "user": "al"}),
                     "{not json", json.dumps({"paragraph_id": "p0", "label": ["bare"], "user": "al"})])
    with pytest.raises(LabelFileError) as err:
        import_labels("doccano", bad, "in.jsonl", SCHEMA)
    problems = err.value.problems
    assert problems[0].startswith("in.jsonl:1: field 'label': unknown class 'nope'")
    assert problems[1].startswith("in.jsonl:2: malformed JSON")
    assert problems[2].startswith("in.jsonl:3: field 'label'")


# --- quality ------------------------------------------------------------------------------

def test_conflicts_and_adjudication_file(tmp_path):
    task = TASKS[0]
    a, b = SCHEMA.labels(task)[:2]
    annotations = [label("p1", task, a, "al"), label("p1", task, b, "bo"), label("p2", task, a, "al")]
    (conflict,) = list_conflicts(annotations, [])
    assert conflict.votes == {"al": a, "bo": b} and conflict.adjudication is None
    decided = add_adjudication([], annotations, SCHEMA, Adjudication("p1", task, b, "lead", "clear"))
    decided = add_adjudication(decided, annotations, SCHEMA, Adjudication("p1", task, a, "lead", "on reflection"))
    path = tmp_path / "labels" / "adjudications.jsonl"
    path.parent.mkdir()
    write_adjudications(path, decided, store_at(tmp_path).lock)
    assert load_adjudications(path, SCHEMA) == [Adjudication("p1", task, a, "lead", "on reflection")]
    assert list_conflicts(annotations, decided)[0].adjudication.adjudicator == "lead"
    with pytest.raises(ValueError, match="unknown class"):
        add_adjudication([], annotations, SCHEMA, Adjudication("p1", task, "nope", "lead"))
    with pytest.raises(ValueError, match="no .* annotation"):
        add_adjudication([], annotations, SCHEMA, Adjudication("p9", task, a, "lead"))


def test_suspicious_flags_a_flipped_label():
    rng = np.random.default_rng(0)
    words = {0: "alliance friendship deepening coordination", 1: "mistrust rivalry asymmetry decline",
             2: "weather football recipe holiday"}
    task = TASKS[0]
    classes = SCHEMA.labels(task)
    rows, annotations = [], []
    for i in range(36):
        k = i % 3
        text = " ".join(rng.permutation(words[k].split())) + f" item{i}"
        rows.append({"paragraph_id": f"p{i}", "source": f"s{i // 3}", "article_index": 0, "text": text})
        annotations.append(label(f"p{i}", task, classes[(k + 1) % 3] if i == 4 else classes[k], "al"))
    paragraphs = pd.DataFrame(rows).set_index("paragraph_id", drop=False)
    found = suspicious_labels(annotations, [], paragraphs, SCHEMA, "tfidf_lr", {"char_ngrams": False}, 0, 3)
    assert "p4" in set(found["paragraph_id"])
    assert found.set_index("paragraph_id").at["p4", "suggested"] == classes[1]


def test_out_of_fold_proba_covers_every_labelled_row():
    """Suspicious-label search needs a probability for every labelled paragraph, real or authored,
    even with fewer articles than folds."""
    classes = SCHEMA.labels(TASKS[0])
    texts = [f"{word} paragraph {i}" for i, word in enumerate(["alpha", "beta", "gamma"] * 4)]
    y = np.array([i % 3 for i in range(12)])
    groups = [f"a{i // 3}" for i in range(12)]
    proba = out_of_fold_proba(texts, y, groups, classes, "tfidf_lr", {"char_ngrams": False}, 0, n_splits=10)
    assert proba.shape == (12, len(classes))
    assert np.allclose(proba.sum(axis=1), 1.0)


# --- the real server ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("annotate_http"))
    token = add_annotator(root, "alice")
    server = Server(root).start()
    yield server, token
    server.stop()


def test_api_refuses_missing_or_wrong_token(served):
    server, token = served
    assert call(server.url + "/api/next")[0] == 401
    assert call(server.url + "/api/next", name="alice")[0] == 401
    assert call(server.url + "/api/next", name="alice", token=token + "x")[0] == 401
    assert call(server.url + "/api/next", name="mallory", token=token)[0] == 401
    body = {"paragraph_id": "p00", "task": TASKS[0], "label": SCHEMA.labels(TASKS[0])[0]}
    assert call(server.url + "/api/labels", "POST", body, name="alice", token="nope")[0] == 401
    assert call(server.url + "/api/schema")[0] == 401
    status, state = call(server.url + "/api/next", name="alice", token=token)
    assert status == 200 and state["paragraph"]["paragraph_id"].startswith("p")


def test_api_validates_labels_and_takes_no_paths(served):
    server, token = served
    ok = {"paragraph_id": "p01", "task": TASKS[0], "label": SCHEMA.labels(TASKS[0])[0]}
    assert call(server.url + "/api/labels", "POST", {**ok, "label": "nope"}, "alice", token)[0] == 422
    assert call(server.url + "/api/labels", "POST", {**ok, "paragraph_id": "../../etc/passwd"}, "alice", token)[0] == 404
    assert call(server.url + "/api/labels", "POST", {**ok, "path": "/tmp/x"}, "alice", token)[0] == 422
    assert call(server.url + "/static/../params.yaml", name="alice", token=token)[0] == 404
    assert call(server.url + "/api/labels", "POST", ok, "alice", token) == (200, {"saved": True, **ok})
    lines = wait_for_mirror(server.root / "labels" / "annotations.jsonl", bool)
    assert json.loads(lines[0]) == {**ok, "annotator": "alice", "rationale": "", "suggestion_shown": False}


WRITER = textwrap.dedent("""
    import json, os, sys, time, urllib.request, urllib.error
    url, name, token, tasks, labels, ack = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), json.loads(sys.argv[5]), sys.argv[6]
    n_paragraphs = 25
    with open(ack, "a") as out:
        for i in range(n_paragraphs * len(tasks)):
            pid, task = f"p{i // len(tasks):02d}", tasks[i % len(tasks)]
            body = json.dumps({"paragraph_id": pid, "task": task, "label": labels[task][(i + len(name)) % 3]}).encode()
            deadline = time.monotonic() + 90
            while True:  # retry until the (restarted) server acknowledges
                request = urllib.request.Request(url + "/api/labels", data=body, method="POST", headers={
                    "Content-Type": "application/json", "X-Annotator": name, "Authorization": "Bearer " + token})
                try:
                    with urllib.request.urlopen(request, timeout=30) as response:
                        if response.status == 200:
                            break
                except (OSError, urllib.error.HTTPError):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
            out.write(json.dumps([pid, task, name, json.loads(body)["label"]]) + "\\n")
            out.flush()
            os.fsync(out.fileno())
""")


def test_concurrent_writers_and_a_killed_server_lose_nothing(tmp_path):
    root = make_project(tmp_path, n_paragraphs=28)
    store = LabelStore(root / "labels" / "store.sqlite", root / "labels" / "annotations.jsonl")
    writers = [f"writer{i}" for i in range(8)]
    tokens = {name: store.add_annotator(name) for name in writers}
    server = Server(root).start()
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    labels = {t: SCHEMA.labels(t) for t in TASKS}
    acks = {name: tmp_path / f"{name}.ack" for name in writers}
    procs = [subprocess.Popen([sys.executable, str(script), server.url, name, tokens[name], json.dumps(TASKS),
                               json.dumps(labels), str(acks[name])]) for name in writers]
    try:
        deadline = time.monotonic() + 60
        while sum(len(p.read_text().splitlines()) for p in acks.values() if p.exists()) < 80:
            assert time.monotonic() < deadline, "writers made no progress"
            time.sleep(0.05)
        server.kill()  # SIGKILL while eight writers are mid-flight
        acked_before_kill = sum(len(p.read_text().splitlines()) for p in acks.values())
        restarted = Server(root, port=server.port).start()
        for proc in procs:
            assert proc.wait(timeout=120) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
        server.stop()
    restarted.stop()
    acked = {tuple(json.loads(line)) for p in acks.values() for line in p.read_text().splitlines()}
    with sqlite3.connect(root / "labels" / "store.sqlite") as conn:
        in_sqlite = set(conn.execute("SELECT paragraph_id, task, annotator, label FROM labels"))
    in_jsonl = {(a.paragraph_id, a.task, a.annotator, a.label)
                for a in load_annotations(root / "labels" / "annotations.jsonl", SCHEMA)}
    expected = len(writers) * 25 * len(TASKS)
    print(f"\nconcurrency: {len(writers)} writers, {expected} labels written "
          f"({acked_before_kill} acknowledged before the SIGKILL), {len(acked)} acknowledged, "
          f"{len(acked & in_sqlite)} found in sqlite, {len(acked & in_jsonl)} found in annotations.jsonl")
    assert len(acked) == expected
    assert acked <= in_sqlite and acked <= in_jsonl


def test_add_annotator_cli_prints_a_working_token(tmp_path):
    root = make_project(tmp_path)
    token = add_annotator(root, "newbie")
    store = LabelStore(root / "labels" / "store.sqlite", root / "labels" / "annotations.jsonl")
    assert store.authenticate("newbie", token)
    bad = subprocess.run([sys.executable, "-m", "pipeline.cli", "annotate", "add-annotator", "a b"], cwd=root,
                         env=project_env(root), capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid annotator name" in bad.stderr


def test_suggestions_refits_and_a_new_champion_without_restart(tmp_path):
    """Seeded labels give the fast model; labels record the suggestion; every 2 labels re-rank; a model
    saved into the --model folder while the app runs is picked up (and disagreement enters the score)."""
    from pipeline.model import StanceModel

    root = make_project(tmp_path / "project", n_paragraphs=16, retrain_every=2)
    seed_labels(root, SCHEMA, range(6))
    token = add_annotator(root, "bo")
    server = Server(root, args=("--model", str(tmp_path / "model"))).start()
    try:
        first = wait_for_ranking(server, "bo", token, lambda s: s["ranking"]["model"] == "fast")
        assert first["ranking"]["labels_seen"] == 6 * len(TASKS) and len(first["queue"]) == 10
        assert {"uncertainty", "disagreement", "rarity", "score"} <= set(first["queue"][0])
        status, state = call(server.url + "/api/next", name="bo", token=token)
        pid, suggested = state["paragraph"]["paragraph_id"], state["suggestions"]
        assert set(suggested) == set(TASKS) and 0 < suggested[TASKS[0]]["probability"] <= 1
        other = next(c for c in SCHEMA.labels(TASKS[1]) if c != suggested[TASKS[1]]["label"])
        texts = list(pd.read_parquet(root / "data" / "paragraphs.parquet")["text"])
        StanceModel.fit(SCHEMA, "tfidf_lr", {"char_ngrams": False}, 0,
                        {t: (texts, [SCHEMA.labels(t)[i % 2] for i in range(len(texts))]) for t in TASKS}
                        ).save(tmp_path / "model")
        for task, cls in ((TASKS[0], suggested[TASKS[0]]["label"]), (TASKS[1], other)):
            body = {"paragraph_id": pid, "task": task, "label": cls, "suggested": suggested[task]["label"]}
            assert call(server.url + "/api/labels", "POST", body, "bo", token)[0] == 200
        after = wait_for_ranking(server, "bo", token, lambda s: s["ranking"]["labels_seen"] == 6 * len(TASKS) + 2)
        assert after["ranking"]["version"] > first["ranking"]["version"] and "refit" in after["ranking"]["trigger"]
        assert max(row["disagreement"] for row in first["queue"]) == 0  # no champion at start
        assert max(row["disagreement"] for row in after["queue"]) > 0   # the one saved since, without a restart
        assert after["model_agreement"][TASKS[0]]["suggestions_accepted"] == 1
        assert after["labels"]["by_annotator"]["bo"] == {f"{TASKS[0]}:{suggested[TASKS[0]]['label']}": 1,
                                                          f"{TASKS[1]}:{other}": 1}
        assert call(server.url + "/api/settings", "POST", {"show_suggestions": False}, "bo", token)[0] == 200
        assert call(server.url + "/api/next", name="bo", token=token)[1]["suggestions"] is None
    finally:
        server.stop()
    saved = {(a.task, a.suggestion_shown, a.suggestion_accepted)
             for a in load_annotations(root / "labels" / "annotations.jsonl", SCHEMA) if a.annotator == "bo"}
    assert saved == {(TASKS[0], True, True), (TASKS[1], True, False)}
