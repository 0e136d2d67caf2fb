"""`stance score`: readers, the paragraph JSONL contract, bad inputs, URL lists, article aggregation.

Uses a tiny real StanceModel (TF-IDF + LR trained on seed paragraphs) saved to a folder and
passed as --model, and a real HTTP server on 127.0.0.1 for URL inputs.
"""

from __future__ import annotations

import json
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from support import REPO, tiny_model
from pipeline.model import StanceModel
from pipeline.schema import load_schema
from pipeline.scoring import core
from pipeline.scoring.workers import ParallelScorer
from pipeline.scoring.readers import Document, ReadOptions, discover, read_sources
from pipeline.segment import segment_text

@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, seed_paragraphs) -> Path:
    return tiny_model(tmp_path_factory.mktemp("model") / "m", seed_paragraphs)


def score(*args: str):
    return CliRunner().invoke(app, ["score", *args])


def test_jsonl_contract_bad_lines_reported_and_rest_scored(tmp_path, model_dir, seed_paragraphs):
    src = tmp_path / "in.jsonl"
    lines = [json.dumps({"id": "a", "text": seed_paragraphs[0]}), "{not json", json.dumps({"id": "b"}),
             "", json.dumps({"id": 7, "text": seed_paragraphs[1]}), json.dumps({"id": "a", "text": "dup"})]
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    result = score(str(src), "--out", str(out), "--model", str(model_dir))
    assert result.exit_code == 1, result.output
    assert f"{src}:2: invalid JSON" in result.output
    assert f"{src}:3: missing field 'text'" in result.output
    assert f"{src}:6: duplicate id 'a'" in result.output
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["a", "7"]
    schema = load_schema(REPO / "labels" / "schema.yaml")
    expected = StanceModel.load(model_dir).score_frame([seed_paragraphs[0], seed_paragraphs[1]])
    for row, (_, want) in zip(rows, expected.iterrows()):
        for task in schema.task_names:
            assert row[task] == want[task]
            assert row[f"{task}_scores"] == want[f"{task}_scores"]  # identical to the pyfunc's score_frame
            assert list(row[f"{task}_scores"]) == schema.labels(task)
    assert not (tmp_path / "out.jsonl.parts").exists()


def test_folder_of_mixed_articles_gives_tables_report_and_summary(tmp_path, model_dir, seed_files):
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    names = sorted(seed_files)
    (docs / "a.txt").write_text(seed_files[names[0]], encoding="utf-8")
    (docs / "sub" / "b.md").write_text("# " + seed_files[names[1]], encoding="utf-8")
    body = "".join(f"<p>{p}</p>" for a in segment_text(seed_files[names[2]]) for p in a.paragraphs)
    (docs / "sub" / "c.html").write_text(
        f"<html><head><title>T</title></head><body><nav><a href='/'>Home</a> <a href='/x'>World</a></nav>"
        f"<article><h1>Headline &amp; more</h1>{body}</article><footer>Related Articles</footer></body></html>",
        encoding="utf-8")
    (docs / "empty.txt").write_text("  \n", encoding="utf-8")
    (docs / "bin.txt").write_bytes(b"\x00\x01\x02binary")
    (docs / "latin1.txt").write_bytes("Caf\xe9 soci\xe9t\xe9 ".encode("latin-1") * 20)
    (docs / "ignored.png").write_bytes(b"\x89PNG")
    out = tmp_path / "out"
    result = score(str(docs), "--out", str(out), "--model", str(model_dir), "--batch-size", "7")
    assert result.exit_code == 1, result.output
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    reasons = {Path(s["path"]).name: s["reason"] for s in summary["skipped"]}
    assert reasons["empty.txt"] == "empty file"
    assert reasons["bin.txt"].startswith("binary file")
    assert reasons["latin1.txt"].startswith("not valid UTF-8")
    assert len(reasons) == 3
    assert "model_training" in summary and summary["model_family"]  # what the model learnt from travels with scores
    paragraphs = pd.read_parquet(out / "paragraphs.parquet")
    assert set(map(lambda p: Path(p).name, paragraphs["doc_id"])) == {"a.txt", "b.md", "c.html"}
    assert paragraphs["id"].is_unique and summary["paragraphs"] == len(paragraphs)
    html_paras = paragraphs[paragraphs["doc_id"].str.endswith("c.html")]
    assert not html_paras["text"].str.contains("Related Articles|Home World").any()
    assert len(html_paras) >= 3
    articles = pd.read_parquet(out / "articles.parquet")
    schema = load_schema(REPO / "labels" / "schema.yaml")
    for task in schema.task_names:
        shares = articles[[f"{task}__share_{c}" for c in schema.labels(task)]].sum(axis=1)
        assert shares.round(4).eq(1).all()
    report = (out / "report.html").read_text(encoding="utf-8")
    assert "<script" not in report and "http://" not in report.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_article_stance_is_class_with_highest_mean_probability():
    schema = load_schema(REPO / "labels" / "schema.yaml")
    task = schema.task_names[0]
    first, second, third = schema.labels(task)[:3]
    # two paragraphs mildly `first`, one strongly `second`: shares favour first, mean favours second
    probs = [{first: 0.4, second: 0.35, third: 0.25}, {first: 0.4, second: 0.35, third: 0.25},
             {first: 0.05, second: 0.9, third: 0.05}]
    rows = pd.DataFrame({"id": ["d#0", "d#1", "d#2"], "doc_id": "d", "article_index": 0, "title": "t",
                         "paragraph_index": [0, 1, 2], "text": ["x", "y", "z"], "source": None, "date": None,
                         "url": None})
    for t in schema.task_names:
        labels = schema.labels(t)
        use = probs if t == task else [{c: 1 / len(labels) for c in labels}] * 3
        rows[t] = [max(p, key=p.get) for p in use]
        for c in labels:
            rows[core.proba_column(t, c)] = [p[c] for p in use]
    article = core.articles_frame(rows, schema, top_k=1).iloc[0]
    assert article[f"{task}__stance"] == second
    assert article[f"{task}__confidence"] == pytest.approx((0.35 + 0.35 + 0.9) / 3, abs=1e-6)
    assert article[f"{task}__share_{first}"] == pytest.approx(2 / 3, abs=1e-6)
    top = json.loads(article[f"{task}__top_{first}"])
    assert len(top) == 1 and top[0]["paragraph_index"] == 0


def test_tables_with_columns_metadata_and_document_unit(tmp_path, model_dir, seed_files, seed_paragraphs):
    names = sorted(seed_files)
    csv_path = tmp_path / "articles.csv"
    pd.DataFrame({"doc": ["x1", "x2"], "body": [seed_files[names[0]], seed_files[names[3]]],
                  "outlet": ["Daily", "Weekly"], "published": ["2024-01-05", "2024-03-02"]}).to_csv(csv_path, index=False)
    with csv_path.open("a", encoding="utf-8") as handle:
        handle.write('x3,"only two fields"\n')
    pq_path = tmp_path / "paras.parquet"
    pd.DataFrame({"doc": ["p1", "p2"], "body": seed_paragraphs[:2]}).to_parquet(pq_path)
    out = tmp_path / "out"
    result = score(str(tmp_path / "*.csv"), "--out", str(out), "--model", str(model_dir), "--unit", "document",
                   "--id-col", "doc", "--text-col", "body", "--source-col", "outlet", "--date-col", "published",
                   "--format", "csv")
    assert result.exit_code == 1, result.output
    last_line = len(csv_path.read_text(encoding="utf-8").splitlines())  # articles span several physical lines
    assert f"{csv_path}:{last_line}: malformed row" in result.output
    paragraphs = pd.read_csv(out / "paragraphs.csv")
    assert set(paragraphs["doc_id"]) == {"x1", "x2"} and len(paragraphs) > 10
    assert set(paragraphs["source"]) == {"Daily", "Weekly"}
    report = (out / "report.html").read_text(encoding="utf-8")
    assert 'data-chart="time-' in report and "2024-03" in report

    out2 = tmp_path / "out2"
    result = score(str(pq_path), "--out", str(out2), "--model", str(model_dir), "--id-col", "doc",
                   "--text-col", "body", "--format", "jsonl")
    assert result.exit_code == 0, result.output
    rows = [json.loads(x) for x in (out2 / "paragraphs.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in rows] == ["p1", "p2"] and all("text" in r for r in rows)


def test_usage_errors_exit_2(tmp_path, model_dir, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert score(str(tmp_path / "nope*.txt"), "--out", str(tmp_path / "o"), "--model", str(model_dir)).exit_code == 2
    (tmp_path / "a.txt").write_text("x", encoding="utf-8")
    result = score(str(tmp_path / "a.txt"), "--out", str(tmp_path / "o.jsonl"), "--format", "csv",
                   "--model", str(model_dir))
    assert result.exit_code == 2 and "--format" in result.output
    assert score(str(tmp_path / "a.txt"), "--out", str(tmp_path / "o"), "--model", str(tmp_path / "none")).exit_code == 2


@pytest.fixture
def http_site(tmp_path, seed_files):
    """Real HTTP server on 127.0.0.1 serving an article page and a plain-text page."""
    site = tmp_path / "site"
    site.mkdir()
    names = sorted(seed_files)
    body = "".join(f"<p>{p}</p>" for a in segment_text(seed_files[names[4]]) for p in a.paragraphs)
    (site / "article.html").write_text(f"<html><body><article><h1>Title</h1>{body}</article></body></html>",
                                       encoding="utf-8")
    (site / "plain.txt").write_text(seed_files[names[1]], encoding="utf-8")
    handler = partial(SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a, **k: None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_url_list_fetched_with_per_url_errors(tmp_path, model_dir, http_site):
    dead = "http://127.0.0.1:9/unreachable"  # discard port: connection refused
    urls = tmp_path / "list.urls"
    urls.write_text(f"# analyst's list\n{http_site}/article.html\n{http_site}/missing.html\n{http_site}/plain.txt\n"
                    f"{dead}\n", encoding="utf-8")
    out = tmp_path / "out"
    result = score(str(urls), "--out", str(out), "--model", str(model_dir), "--retries", "1", "--timeout", "2")
    assert result.exit_code == 1, result.output
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    skipped = {s["line"]: s["reason"] for s in summary["skipped"]}
    assert skipped[3].startswith(f"{http_site}/missing.html: HTTP 404")
    assert skipped[5].startswith(f"{dead}: connection failed") and "(2 attempts)" in skipped[5]
    paragraphs = pd.read_parquet(out / "paragraphs.parquet")
    assert set(paragraphs["url"]) == {f"{http_site}/article.html", f"{http_site}/plain.txt"}
    assert set(paragraphs["source"]) == {"127.0.0.1"}


def test_discover_dedupes_and_reader_keeps_input_order(tmp_path, seed_files):
    name = sorted(seed_files)[0]
    (tmp_path / "a.txt").write_text(seed_files[name], encoding="utf-8")
    sources = discover([str(tmp_path), str(tmp_path / "a.txt"), str(tmp_path / "*.txt")])
    assert [s.location for s in sources] == [str(tmp_path / "a.txt")]
    (doc,) = list(read_sources(sources, ReadOptions()))
    expected = [(i, p) for i, a in enumerate(segment_text(seed_files[name])) for p in a.paragraphs]
    assert isinstance(doc, Document) and [(p.article_index, p.text) for p in doc.paragraphs] == expected
    assert core.paragraphs_frame([doc])["id"].tolist() == [f"{doc.doc_id}#{i}" for i in range(len(expected))]


def test_parallel_scorer_equals_in_process_scoring(model_dir, seed_paragraphs):
    model = StanceModel.load(model_dir)
    texts = [f"{seed_paragraphs[i % len(seed_paragraphs)]} {i}" for i in range(ParallelScorer.MIN_PARALLEL + 7)]
    scorer = ParallelScorer(model, 2)
    try:
        pd.testing.assert_frame_equal(scorer.score_frame(texts), model.score_frame(texts))
    finally:
        scorer.close()
