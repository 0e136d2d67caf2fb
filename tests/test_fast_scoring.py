"""The fast scikit-learn path: Arrow-computed TF-IDF features, a pickle-free model folder, and
paragraph tables streamed batch by batch into Parquet with the general runner's rows and checks."""

from __future__ import annotations

import json
import random

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer

from pipeline.model import StanceModel
from pipeline.models.tfidf_features import Analyzer, _tokens, fit_vocabulary, prepare, tfidf_matrix
from pipeline.scoring.runner import run_local
from pipeline.segment import segment_text
from tests.test_scoring import tiny_model


@pytest.fixture(scope="module")
def seed_paragraphs(seed_files) -> list[str]:
    return [p for text in seed_files.values() for a in segment_text(text) for p in a.paragraphs]


@pytest.mark.parametrize("kind, n, sklearn_analyzer", [("word", (1, 2), "word"), ("char", (3, 5), "char_wb")])
def test_features_equal_scikit_learn_tfidf(seed_paragraphs, kind, n, sklearn_analyzer):
    texts = seed_paragraphs[:300] + ["Café ÉLAN naïve", "", "x y z"]
    ours = fit_vocabulary(Analyzer(kind, *n), texts, min_df=1, max_features=50000)
    reference = TfidfVectorizer(analyzer=sklearn_analyzer, ngram_range=n, sublinear_tf=True,
                                strip_accents="unicode").fit(texts)
    assert ours.vocabulary.to_pylist() == sorted(reference.vocabulary_)
    assert np.abs(tfidf_matrix([ours], texts).toarray() - reference.transform(texts).toarray()).max() < 1e-9


def test_byte_level_word_tokens_equal_the_unicode_regex_split():
    """Tokens found on the UTF-8 bytes are those of splitting on non-(letter, digit, underscore) runs."""
    rng = random.Random(0)
    alphabet = "abcXYZ_09 .,-é\u0301ñßЖж中文١٢\u00b2\u2163🙂\u200b'\"ﬁÅ\tİ"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(3000)]
    texts += ["", "a", "ab", None, "é", "éé", "word"]
    unicode = pc.utf8_normalize(pa.array(texts, pa.string()).fill_null(""), form="NFKD")
    reference = pc.utf8_lower(pc.replace_substring_regex(unicode, r"\p{Mn}+", ""))
    assert prepare(texts).equals(reference)
    for prepared in (reference, reference.slice(7, 500)):
        split = pc.split_pattern_regex(prepared, r"[^\p{L}\p{N}_]+")
        flat, rows = pc.list_flatten(split), pc.list_parent_indices(split)
        keep = pc.greater_equal(pc.utf8_length(flat), 2)
        tokens, token_rows = _tokens(prepared)
        assert tokens.equals(flat.filter(keep)) and np.array_equal(token_rows, rows.filter(keep).to_numpy())


def test_model_folder_holds_no_pickle_and_scores_the_same(tmp_path, seed_paragraphs):
    folder = tiny_model(tmp_path / "m", seed_paragraphs[:200])
    files = sorted(p.name for p in (folder / "tasks").rglob("*") if p.is_file())
    assert set(files) == {"model.json", "weights.npz"}
    for weights in (folder / "tasks").rglob("weights.npz"):
        np.load(weights, allow_pickle=False)  # plain arrays only
    model = StanceModel.load(folder)
    again = StanceModel.load(folder).predict_proba(seed_paragraphs[200:260])
    for task, proba in model.predict_proba(seed_paragraphs[200:260]).items():
        assert np.array_equal(proba, again[task]) and np.allclose(proba.sum(axis=1), 1)


@pytest.mark.parametrize("suffix", ["parquet", "jsonl"])
def test_streamed_table_equals_general_runner(tmp_path, seed_paragraphs, suffix):
    model = StanceModel.load(tiny_model(tmp_path / "m", seed_paragraphs[:200]))
    task = model.schema.task_names[0]
    rows = [{"id": f"r{i}", "text": t, "source": "wire"} for i, t in enumerate(seed_paragraphs[:120])]
    rows[3]["text"] = "   "
    rows[5]["id"] = "r1"
    rows[7]["task"] = task
    rows[9]["task"] = "no-such-task"
    src = tmp_path / f"in.{suffix}"
    if suffix == "parquet":
        pd.DataFrame(rows).to_parquet(src)
    else:
        src.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{broken\n", encoding="utf-8")
    fast = run_local([str(src)], tmp_path / "fast.parquet", model, "m", workers=1)
    general = run_local([str(src)], tmp_path / "general.parquet", model, "m", workers=1, resume=True)
    assert [p.as_dict() for p in fast.problems] == [p.as_dict() for p in general.problems]
    assert len(fast.problems) == (4 if suffix == "jsonl" else 3)
    fast_table, general_table = pq.read_table(tmp_path / "fast.parquet"), pq.read_table(tmp_path / "general.parquet")
    assert fast_table.schema == general_table.schema and fast_table.equals(general_table)
    assert fast_table.num_rows == fast.summary["paragraphs"] == len(rows) - 3
    run_local([str(src)], tmp_path / "fast.jsonl", model, "m", workers=1)
    run_local([str(src)], tmp_path / "general.jsonl", model, "m", workers=1, resume=True)
    assert (tmp_path / "fast.jsonl").read_text(encoding="utf-8") == (tmp_path / "general.jsonl").read_text(encoding="utf-8")
    routed = fast_table.to_pandas().set_index("id")
    other = model.schema.task_names[1]
    assert not pd.isna(routed.loc["r7", task]) and pd.isna(routed.loc["r7", other])


def test_worker_processes_give_the_same_table(tmp_path, seed_paragraphs, monkeypatch):
    from pipeline.scoring import stream

    model = StanceModel.load(tiny_model(tmp_path / "m", seed_paragraphs[:200]))
    src = tmp_path / "in.parquet"
    pd.DataFrame({"id": [f"r{i}" for i in range(150)], "text": [seed_paragraphs[i % 60] for i in range(150)]}).to_parquet(src)
    monkeypatch.setattr(stream, "BATCH_ROWS", 40)  # several batches: the first in-process, the rest in the pool
    run_local([str(src)], tmp_path / "one.parquet", model, "m", workers=1)
    run_local([str(src)], tmp_path / "two.parquet", model, "m", workers=2)
    assert pq.read_table(tmp_path / "one.parquet").equals(pq.read_table(tmp_path / "two.parquet"))
