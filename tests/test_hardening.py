"""Regression tests for bad input, load and untrusted models (one test group per failure mode)."""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.annotate.formats import export_labels
from pipeline.annotate.quality import confusions
from pipeline.cli import app
from pipeline.annotate.store import LabelStore
from pipeline.labels import Annotation, LabelFileError, agreement, load_annotations
from pipeline.model import ModelIntegrityError, StanceModel
from pipeline.schema import load_schema
from pipeline.scoring.readers import Document, Problem, ReadOptions, discover, read_sources
from support import REPO, Server, add_annotator, make_project, project_env, tiny_model, wait_for_mirror

SCHEMA = load_schema(REPO / "labels" / "schema.yaml")
TASK = SCHEMA.task_names[0]
CLASSES = SCHEMA.labels(TASK)
# every character str.splitlines() splits on besides "\n"
LINE_SEPARATORS = ["\r", "\r\n", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029"]


def store_at(root: Path) -> LabelStore:
    return LabelStore(root / "labels" / "store.sqlite", root / "labels" / "annotations.jsonl")


# --- 1: JSONL splits on "\n" only -------------------------------------------------------------

@pytest.mark.parametrize("separator", LINE_SEPARATORS, ids=[f"U+{ord(s[0]):04X}" for s in LINE_SEPARATORS])
def test_label_notes_with_any_line_separator_read_back(tmp_path, separator):
    store = store_at(tmp_path)
    notes = [f"before{separator}after", f"{separator}", f"a{separator}{separator}b"]
    for i, note in enumerate(notes):
        store.save(Annotation(f"p{i}", TASK, CLASSES[0], "al", rationale=f"r{separator}r", note=note))
    loaded = load_annotations(store.annotations_path, SCHEMA)
    assert [a.note for a in loaded] == notes and all(a.rationale == f"r{separator}r" for a in loaded)


# --- 7: annotator names validated on every path in; no joined keys -----------------------------

def test_store_refuses_invalid_annotator_names(tmp_path):
    store = store_at(tmp_path)
    for name in ("<script>alert(1)</script> two words", "a~b", "", "x" * 65):
        with pytest.raises(ValueError, match="invalid annotator name"):
            store.save_many([Annotation("p1", TASK, CLASSES[0], name)])
        with pytest.raises(ValueError, match="invalid annotator name"):
            store.save(Annotation("p1", TASK, CLASSES[0], name))
    assert store.labels() == []


def test_label_file_with_invalid_annotator_name_names_line_and_field(tmp_path):
    path = tmp_path / "annotations.jsonl"
    good = {"paragraph_id": "p1", "task": TASK, "label": CLASSES[0], "annotator": "ann-a", "rationale": ""}
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "annotator": "a~b"}) + "\n")
    with pytest.raises(LabelFileError) as err:
        load_annotations(path, SCHEMA)
    assert err.value.problems == [f"{path}:2: field 'annotator': " + str(err.value.problems[0]).split(": ", 2)[2]]
    assert "invalid annotator name" in err.value.problems[0]


def test_agreement_pairs_are_not_keyed_by_joined_names():
    names = ["a.b", "a", "b.a@x-1"]
    labels = [Annotation(f"p{i}", TASK, CLASSES[(i + k) % 2], who)
              for i in range(6) for k, who in enumerate(names)]
    pairs = agreement(labels, SCHEMA)[TASK]["pairwise"]
    assert sorted(tuple(p["annotators"]) for p in pairs) == [("a", "a.b"), ("a", "b.a@x-1"), ("a.b", "b.a@x-1")]
    assert set(confusions(labels, SCHEMA)[TASK]) == {("a", "a.b"), ("a", "b.a@x-1"), ("a.b", "b.a@x-1")}


# --- 5: a save is one commit; the mirror is batched and deterministic ----------------------------

def test_background_mirror_batches_and_ends_identical_to_a_direct_rewrite(tmp_path):
    batched, direct = store_at(tmp_path / "batched"), store_at(tmp_path / "direct")
    labels = [Annotation(f"p{i:03d}", TASK, CLASSES[i % 3], who, note="n\u2028" if i % 7 == 0 else "")
              for i in range(60) for who in ("zoe", "al")]
    batched.sync_mirror()
    with batched.background_mirror(min_interval=3600):
        for lab in labels:
            batched.save(lab)
        assert batched.annotations_path.read_text() == ""  # no rewrite per save
        assert len(batched.labels()) == len(labels)  # yet every save is committed
    for lab in reversed(labels):
        direct.save(lab)
    assert batched.annotations_path.read_bytes() == direct.annotations_path.read_bytes()
    assert len(load_annotations(batched.annotations_path, SCHEMA)) == len(labels)


# --- 1, 4: the real server --------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = make_project(tmp_path_factory.mktemp("hardening_http"))
    token = add_annotator(root, "alice")
    running = Server(root).start()
    yield running, {"X-Annotator": "alice", "Authorization": f"Bearer {token}"}
    running.stop()


def test_oversized_bodies_get_413_before_auth_or_parsing(server):
    running, auth = server
    url = running.url + "/api/labels"
    big = b'{"note": "' + b"Z" * (1024 * 1024) + b'"}'
    for headers in ({}, auth):  # by Content-Length, signed in or not
        response = httpx.post(url, content=big, headers={**headers, "Content-Type": "application/json"})
        assert response.status_code == 413 and b"ZZZ" not in response.content
    # streamed without a Content-Length: counted as it arrives
    response = httpx.post(url, content=iter([b'{"note": "', b"Z" * 50_000, b"Z" * 50_000, b'"}']),
                          headers={**auth, "Content-Type": "application/json"})
    assert response.status_code == 413 and b"ZZZ" not in response.content


def test_unauthenticated_body_is_never_read(server):
    running, _ = server
    chunks = (b"Z" * 60_000 for _ in range(100))  # 6 MB, streamed: refused before the limit is reached
    response = httpx.post(running.url + "/api/labels", content=chunks, headers={"Content-Type": "application/json"})
    assert response.status_code == 401


def test_validation_errors_do_not_echo_input(server):
    running, auth = server
    url = running.url + "/api/labels"
    ok = {"paragraph_id": "p01", "task": TASK, "label": CLASSES[0]}
    for body in ({**ok, "note": "Q" * 5000}, {**ok, "label": "QQQQQQ"}, {**ok, "paragraph_id": "QQQQQQ"},
                 {**ok, "QQQQQQ": 1}, {**ok, "rationale": ["QQQQQQ"]}):
        response = httpx.post(url, json=body, headers=auth)
        assert response.status_code in (404, 422) and b"QQQ" not in response.content, response.text
    response = httpx.post(url, content=b'{"paragraph_id": "QQQQQQ', headers={**auth, "Content-Type": "application/json"})
    assert response.status_code == 422 and b"QQQ" not in response.content


def test_note_with_u2028_keeps_labels_readable_and_server_restartable(server):
    running, auth = server
    body = {"paragraph_id": "p02", "task": TASK, "label": CLASSES[1], "note": "before\u2028after\u0085end"}
    assert httpx.post(running.url + "/api/labels", json=body, headers=auth).status_code == 200
    mirror = running.root / "labels" / "annotations.jsonl"
    assert any("before\u2028after" in line for line in wait_for_mirror(mirror, lambda lines: any("\u2028" in line for line in lines)))
    agreement_run = subprocess.run([sys.executable, "-m", "pipeline.cli", "labels", "agreement"], cwd=running.root,
                                   env=project_env(running.root), capture_output=True, text=True)
    assert agreement_run.returncode == 0, agreement_run.stderr
    running.stop()
    running.log = open(running.root / f"server-{running.port}.log", "ab")
    running.start()  # the app starts again on this mirror
    notes = [a.note for a in load_annotations(mirror, SCHEMA)]
    assert "before\u2028after\u0085end" in notes


# --- 2, 3, 9a, 9b: scoring inputs -------------------------------------------------------------

def _read(*inputs: str) -> tuple[list[Document], list[Problem]]:
    items = list(read_sources(discover(list(inputs)), ReadOptions(min_words=3)))
    return [i for i in items if isinstance(i, Document)], [i for i in items if isinstance(i, Problem)]


ARTICLE = "Moscow and Beijing signed a new energy deal, deepening a partnership both sides call unbreakable."


def test_bad_url_is_one_skipped_line_and_the_good_rows_are_written(tmp_path, seed_paragraphs):
    model = tiny_model(tmp_path / "model", seed_paragraphs)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "good.jsonl").write_text("".join(json.dumps({"id": f"g{i}", "text": t}) + "\n"
                                               for i, t in enumerate(seed_paragraphs[:3])))
    (folder / "list.urls").write_text("http://127.0.0.1:abc/\n")
    out = tmp_path / "out.jsonl"
    result = CliRunner().invoke(app, ["score", str(folder), "--out", str(out), "--model", str(model)])
    assert result.exit_code == 1, result.output
    assert "list.urls:1" in result.output and "InvalidURL" in result.output
    assert [json.loads(line)["id"] for line in out.read_text().split("\n")[:-1]] == ["g0", "g1", "g2"]


def test_csv_big_cell_bad_byte_and_unbalanced_quote_cost_one_row_each(tmp_path):
    big = "word " * 36_000  # 180 KB
    rows = [b"id,text\r\n", b"a,%s\r\n" % big.encode(), b"b,caf\xe9 au lait is served in Moscow\r\n",
            b'c,"an unbalanced quote opens here\r\n', b"d,the rows after it are still read\r\n",
            b'e,"a quoted cell\nover two lines"\r\n', b"f,one,too many\r\n", b"g,last row\r\n"]
    path = tmp_path / "in.csv"
    path.write_bytes(b"".join(rows))
    docs, problems = _read(str(path))
    assert [d.doc_id for d in docs] == ["a", "d", "e", "g"]
    assert docs[0].paragraphs[0].text == big.strip() and docs[2].paragraphs[0].text == "a quoted cell\nover two lines"
    assert [(p.line, p.reason.split(" (")[0]) for p in problems] == [
        (3, "not valid UTF-8"), (4, "malformed CSV: unbalanced quote"),
        (8, "malformed row: 3 fields, the header has 2")]


def test_unbalanced_quote_at_end_of_file_is_reported(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text('id,text\na,fine row of text\nb,"never closed\n')
    docs, problems = _read(str(path))
    assert [d.doc_id for d in docs] == ["a"] and [(p.line, p.reason) for p in problems] == [
        (3, "malformed CSV: unbalanced quote (unexpected end of data)")]


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32", "utf-8-sig"])
def test_text_file_with_a_byte_order_mark_is_read(tmp_path, encoding):
    path = tmp_path / "article.txt"
    data = ARTICLE.encode(encoding)
    if encoding == "utf-16-be":
        data = codecs.BOM_UTF16_BE + data
    path.write_bytes(data)
    docs, problems = _read(str(path))
    assert problems == [] and docs[0].paragraphs[0].text == ARTICLE


def test_symlink_loops_are_reported(tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    (folder / "ok.txt").write_text(ARTICLE)
    (folder / "sub" / "up").symlink_to(folder)
    (folder / "a.txt").symlink_to(folder / "b.txt")
    (folder / "b.txt").symlink_to(folder / "a.txt")
    docs, problems = _read(str(folder))
    assert [d.doc_id for d in docs] == [str(folder / "ok.txt")]
    assert sorted((Path(p.path).name, p.reason.split(" (")[0]) for p in problems) == [
        ("a.txt", "symlink loop"), ("b.txt", "symlink loop"), ("up", "symlink loop")]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder")
def test_unreadable_folder_is_reported(tmp_path):
    folder = tmp_path / "in"
    (folder / "locked").mkdir(parents=True)
    (folder / "locked" / "inside.txt").write_text(ARTICLE)
    (folder / "ok.txt").write_text(ARTICLE)
    (folder / "locked").chmod(0)
    try:
        docs, problems = _read(str(folder))
    finally:
        (folder / "locked").chmod(0o755)
    assert [d.doc_id for d in docs] == [str(folder / "ok.txt")]
    assert [(Path(p.path).name, p.reason.split(":")[0]) for p in problems] == [("locked", "cannot read folder")]


# --- 8: CSV export formula injection --------------------------------------------------------------

def test_csv_export_neutralises_formulas():
    payloads = ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]
    labels = [Annotation(f"p{i}", TASK, CLASSES[0], "al", rationale=p, note=p) for i, p in enumerate(payloads)]
    paragraphs = {f"p{i}": {"text": p} for i, p in enumerate(payloads)}
    text = export_labels("csv", labels, paragraphs, SCHEMA)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(payloads)
    for row, payload in zip(rows, payloads):
        assert row["rationale"] == row["note"] == row["text"] == "'" + payload
    assert all(line.startswith('"') for line in text.split("\n")[:-1])


# --- 10: models are data, checked against their sha256 manifest ------------------------------------

@pytest.mark.parametrize("n_classes", [1, 2, 3])
def test_logistic_head_saves_as_json_and_predicts_identically(tmp_path, n_classes):
    from pipeline.models.head import LogRegHead

    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 8))
    labels = [["robust", "fragile", "none"][i % n_classes] for i in range(30)]
    head = LogRegHead(["robust", "fragile", "none"], C=2.0, seed=0).fit(X, labels)
    head.save(tmp_path / "head.json")
    json.loads((tmp_path / "head.json").read_text())  # plain JSON, nothing to unpickle
    loaded = LogRegHead.load(tmp_path / "head.json")
    np.testing.assert_array_equal(loaded.predict_proba(X), head.predict_proba(X))


@pytest.fixture
def saved_model(tmp_path, seed_paragraphs) -> Path:
    return tiny_model(tmp_path / "model", seed_paragraphs)


def test_manifest_lists_every_model_file_and_a_clean_folder_loads(saved_model):
    meta = json.loads((saved_model / "stance_model.json").read_text())
    assert set(meta["files"]) == {p.relative_to(saved_model).as_posix() for p in saved_model.rglob("*")
                                  if p.is_file() and p.name != "stance_model.json"}
    assert StanceModel.load(saved_model).family == "tfidf_lr"


@pytest.mark.parametrize("tamper", ["changed", "added", "removed", "no_manifest"])
def test_a_model_whose_files_do_not_match_is_refused(saved_model, tamper, tmp_path):
    target = next(p for p in sorted((saved_model / "tasks").rglob("*")) if p.is_file())
    if tamper == "changed":
        target.write_bytes(target.read_bytes() + b"\0")
    elif tamper == "added":
        (target.parent / "extra.joblib").write_bytes(b"crafted")
    elif tamper == "removed":
        target.unlink()
    else:
        meta = json.loads((saved_model / "stance_model.json").read_text())
        del meta["files"]
        (saved_model / "stance_model.json").write_text(json.dumps(meta))
    expected = {"changed": "sha256 differs", "added": "extra.joblib: not in the manifest", "removed": "missing",
                "no_manifest": "no sha256 file manifest"}[tamper]
    with pytest.raises(ModelIntegrityError, match=expected):
        StanceModel.load(saved_model)
    (tmp_path / "in.txt").write_text(ARTICLE)
    result = CliRunner().invoke(app, ["score", str(tmp_path / "in.txt"), "--out", str(tmp_path / "out"),
                                      "--model", str(saved_model)])
    assert result.exit_code == 2 and "refusing to load" in " ".join(result.output.split())


def test_mlflow_run_manifest_is_recorded_and_checked_on_load(saved_model, tmp_path, monkeypatch):
    import mlflow

    from pipeline.champion import load_champion
    from pipeline.pyfunc import RUN_MANIFEST, log_stance_model

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("STANCE_ROOT", str(REPO))
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_experiment(experiment_id=mlflow.create_experiment(
        "manifest", artifact_location=(tmp_path / "artifacts").as_uri()))
    with mlflow.start_run() as run:
        log_stance_model(saved_model, [ARTICLE])
    uri = f"runs:/{run.info.run_id}/model"
    recorded = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/{RUN_MANIFEST}")
    assert recorded == json.loads((saved_model / "stance_model.json").read_text())["files"]
    assert load_champion(uri).family == "tfidf_lr"
    mlflow.MlflowClient().log_dict(run.info.run_id, {**recorded, "schema.yaml": "0" * 64}, RUN_MANIFEST)
    with pytest.raises(ModelIntegrityError, match="differs from the one recorded in its MLflow run"):
        load_champion(uri)


@pytest.mark.parametrize("fmt", ["prodigy", "doccano", "label-studio", "csv"])
def test_exports_with_line_separators_in_notes_import_back(fmt):
    from pipeline.annotate.formats import import_labels

    labels = [Annotation(f"p{i}", TASK, CLASSES[0], "al", rationale=f"r{sep}r", note=f"n{sep}n")
              for i, sep in enumerate(LINE_SEPARATORS)]
    paragraphs = {a.paragraph_id: {"text": f"text{LINE_SEPARATORS[i]}more"} for i, a in enumerate(labels)}
    back = import_labels(fmt, export_labels(fmt, labels, paragraphs, SCHEMA), f"export.{fmt}", SCHEMA).labels
    assert sorted(back, key=lambda a: a.paragraph_id) == sorted(labels, key=lambda a: a.paragraph_id)
