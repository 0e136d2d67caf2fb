"""Tables through ingest with a drop report, label import matching by id or text, wrong-shape
imports reported (never raised), evaluation settings."""

from __future__ import annotations

import json
from collections import Counter

import pandas as pd
import pytest

from pipeline.annotate.formats import ParagraphIndex, import_labels
from pipeline.config import ConfigError, IngestParams, Params
from pipeline.ingest import describe_drops, ingest_folder, load_drop_report, write_paragraphs
from pipeline.labels import LabelFileError
from pipeline.schema import load_schema
from pipeline.segment import segment_text
from pipeline.train import evaluate_and_fit, fold_plan
from support import EXAMPLE, stance

SCHEMA = load_schema(EXAMPLE / "schema.yaml")
INDEX = ParagraphIndex(["t1", "t2", "t3"], [("t1", "Bike lanes are great."), ("t2", "I hate the four-day week."),
                                              ("t3", "Phones out of class!")])


# --- ingest -------------------------------------------------------------------------------------

def test_tables_become_paragraphs_as_they_are_with_user_ids_groups_and_a_drop_report(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "a.csv").write_text("id,text,group,target\n1,Too short? Kept.,g1,x\n2,,g1,x\n1,dup id,g2,x\n"
                               '3,"two\n\nlines, one row",,x\n', encoding="utf-8")
    (raw / "b.jsonl").write_text(json.dumps({"text": "no id here", "date": "2024-01-02"}) + "\n"
                                 + json.dumps({"text": "no id here"}) + "\n"
                                 + json.dumps({"text": "x\u2028y", "id": 7}) + "\n", encoding="utf-8")
    pd.DataFrame({"id": ["p1", "1"], "text": ["from parquet", "id taken by a.csv"]}).to_parquet(raw / "c.parquet")
    frame, report = ingest_folder(raw, IngestParams(), {})
    by_id = frame.set_index("paragraph_id")
    assert by_id.loc["1", "text"] == "Too short? Kept." and by_id.loc["1", "group"] == "g1"
    assert by_id.loc["3", "text"] == "two\n\nlines, one row"  # one row = one paragraph, never segmented
    assert by_id.loc["3", "group"] == "a.csv#3"  # no group: the row is its own article
    assert by_id.loc["7", "text"] == "x\u2028y" and by_id.loc["p1", "source"] == "c.parquet"
    assert frame["on_topic"].all()  # no topic terms: nothing is off-topic
    hashed = frame[frame["source"] == "b.jsonl"]
    assert len(hashed) == 2 and hashed["date"].tolist()[0] == "2024-01-02"
    assert report["a.csv"] == {"kept": 2, "too_short": 0, "boilerplate": 0, "heading": 0, "duplicate": 1, "empty": 1,
                               "ignored_columns": ["target"]}
    assert report["b.jsonl"]["duplicate"] == 1 and report["c.parquet"] == {**report["c.parquet"], "kept": 1,
                                                                           "duplicate": 1}
    assert "a.csv: 2 kept; dropped 1 duplicate, 1 empty; ignored column(s) target" in describe_drops(report)
    write_paragraphs(frame, tmp_path / "p.parquet", report)
    assert load_drop_report(tmp_path / "p.parquet") == report


def test_page_drops_are_counted_by_reason():
    page = ("Site News\n\nBig Headline About Bikes\n\n"
            "The council approved a network of protected bike lanes across the city centre on Monday evening.\n\n"
            "Short line.\n\nAdvertisement\n\n"
            "The council approved a network of protected bike lanes across the city centre on Monday evening.\n")
    drops: Counter = Counter()
    (article,) = segment_text(page, 12, drops)
    assert len(article.paragraphs) == 1
    assert drops["too_short"] == 1 and drops["boilerplate"] == 1 and drops["duplicate"] == 1 and drops["heading"] == 2


def test_ingest_tables_through_the_cli_and_bad_rows_name_file_and_line(tmp_path):
    (tmp_path / "data" / "raw").mkdir(parents=True)
    (tmp_path / "labels").mkdir()
    (tmp_path / "params.yaml").write_text("seed: 1\n", encoding="utf-8")
    (tmp_path / "labels" / "schema.yaml").write_text((EXAMPLE / "schema.yaml").read_text(), encoding="utf-8")
    (tmp_path / "new.jsonl").write_text('{"id": "a", "text": "ok"}\n{"id": "b", "text": \n', encoding="utf-8")
    done = stance(tmp_path, "ingest", str(tmp_path / "new.jsonl"))
    assert done.returncode == 2 and "new.jsonl:2: malformed JSON" in done.stderr
    (tmp_path / "new.jsonl").write_text('{"id": "a", "text": "ok"}\n', encoding="utf-8")
    done = stance(tmp_path, "ingest", str(tmp_path / "new.jsonl"))
    assert done.returncode == 0 and "added/new.jsonl: 1 kept" in done.stderr


def test_topic_terms_live_in_the_schema():
    assert load_schema().topic_groups  # the project's own domain keeps its terms, beside its tasks
    assert SCHEMA.topic_groups == {}
    with pytest.raises(ValueError, match="moved to the `topic:` block of labels/schema.yaml"):
        IngestParams.model_validate({"topic_groups": {"a": ["b"]}})


# --- label import -------------------------------------------------------------------------------

def test_csv_import_matches_id_then_text_case_insensitively_and_reports_unmatched_lines():
    text = ("id,text,task,label,extra\n"
            "t1,,BIKE_LANES,FAVOR,x\n"                   # by the user's id, any case
            ",I hate the four-day week.,four_day_week,Against,x\n"  # no id: by exact text
            "zz,Phones out of class!,school_phones,none,x\n"        # unknown id, known text
            "nope,,school_phones,none,x\n"                           # neither: unmatched, line 5
            ",Unknown text,bike_lanes,none,x\n")                     # unmatched, line 6
    result = import_labels("csv", text, "in.csv", SCHEMA, INDEX, annotator="gold")
    assert [(a.paragraph_id, a.task, a.label, a.annotator) for a in result.labels] == [
        ("t1", "bike_lanes", "favor", "gold"), ("t2", "four_day_week", "against", "gold"),
        ("t3", "school_phones", "none", "gold")]
    assert [u.split(":")[1] for u in result.unmatched] == ["5", "6"]
    assert result.notes == ["in.csv: ignored column(s) extra (known: id, paragraph_id, task, label, annotator, "
                            "rationale, note, text)"]


def test_csv_import_needs_an_annotator_and_validates_names():
    with pytest.raises(LabelFileError, match="missing column.*annotator \\(or give --annotator\\)"):
        import_labels("csv", "id,task,label\nt1,bike_lanes,favor\n", "in.csv", SCHEMA, INDEX)
    with pytest.raises(LabelFileError, match="in.csv:2: field 'annotator': invalid annotator name"):
        import_labels("csv", "id,task,label,annotator\nt1,bike_lanes,favor,a~b\n", "in.csv", SCHEMA, INDEX)
    with pytest.raises(LabelFileError, match="--annotator: invalid annotator name"):
        import_labels("csv", "id,task,label\nt1,bike_lanes,favor\n", "in.csv", SCHEMA, INDEX, "<script> x")


def test_csv_import_takes_big_cells_and_reports_bad_rows_per_row():
    big = "r" * 200_000
    text = f"id,task,label,rationale\nt1,bike_lanes,favor,{big}\nt2,four_day_week,against,\"a\",extra\n"
    with pytest.raises(LabelFileError) as err:
        import_labels("csv", text, "in.csv", SCHEMA, INDEX, "gold")
    assert err.value.problems == ["in.csv:3: more fields than the header's 4"]
    result = import_labels("csv", text.rsplit("t2", 1)[0], "in.csv", SCHEMA, INDEX, "gold")
    assert result.labels[0].rationale == big


@pytest.mark.parametrize("record, field", [
    ({"data": {"paragraph_id": "t1"}, "annotations": [{"completed_by": 1, "result": ["bike_lanes"]}]}, "result[1]"),
    ({"data": {"paragraph_id": "t1"}, "annotations": [{"completed_by": 1, "result": [
        {"from_name": "bike_lanes", "type": "choices", "value": ["favor"]}]}]}, "result[1].value"),
    ({"data": {"paragraph_id": "t1"}, "annotations": [{"completed_by": 1, "result": [
        {"from_name": "bike_lanes", "type": "choices", "value": {"choices": ["favor"]}},
        {"from_name": "bike_lanes_note", "type": "textarea", "value": {"text": [1, 2]}}]}]}, "bike_lanes_note.text"),
    ({"data": "t1"}, "data"),
    ({"data": {"paragraph_id": "t1"}, "annotations": {"a": 1}}, "annotations"),
])
def test_label_studio_wrong_shapes_are_named_problems(record, field):
    with pytest.raises(LabelFileError) as err:
        import_labels("label-studio", json.dumps([record]), "ls.json", SCHEMA, INDEX)
    assert err.value.problems[0].startswith("ls.json: task #1") and f"field '{field}'" in err.value.problems[0]


def test_label_studio_file_that_is_not_an_array_of_tasks_names_its_line():
    for text, problem in [(json.dumps({"data": {}}), "ls.json:1: expected a JSON array of Label Studio tasks, got dict"),
                          ('[\n  {"data": }\n]', "ls.json:2: malformed JSON")]:
        with pytest.raises(LabelFileError) as err:
            import_labels("label-studio", text, "ls.json", SCHEMA, INDEX)
        assert err.value.problems[0].startswith(problem)


@pytest.mark.parametrize("record, field", [
    ({"answer": "accept", "meta": "t1", "label": "bike_lanes", "accept": ["favor"], "_annotator_id": "a"}, "meta"),
    ({"answer": "accept", "meta": {"paragraph_id": "t1"}, "label": "bike_lanes", "accept": {"favor": 1},
      "_annotator_id": "a"}, "accept"),
])
def test_prodigy_wrong_shapes_are_named_problems(record, field):
    with pytest.raises(LabelFileError) as err:
        import_labels("prodigy", json.dumps(record) + "\n", "p.jsonl", SCHEMA, INDEX)
    assert err.value.problems == [err.value.problems[0]] and err.value.problems[0].startswith(f"p.jsonl:1: field '{field}'")


def test_prodigy_and_doccano_match_by_text_too():
    prodigy = json.dumps({"answer": "accept", "text": "Bike lanes are great.", "label": "bike_lanes",
                          "accept": ["FAVOR"], "_annotator_id": "a"}) + "\n"
    (label,) = import_labels("prodigy", prodigy, "p.jsonl", SCHEMA, INDEX).labels
    assert (label.paragraph_id, label.label) == ("t1", "favor")
    doccano = json.dumps({"id": "t3", "label": ["school_phones:None"], "user": "b"}) + "\n"
    (label,) = import_labels("doccano", doccano, "d.jsonl", SCHEMA, INDEX).labels
    assert (label.paragraph_id, label.label) == ("t3", "none")


def test_import_cli_names_undecodable_files_and_exits_1_on_unmatched_rows(tmp_path):
    root = tmp_path / "p"
    (root / "data" / "raw").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "params.yaml").write_text("seed: 1\n", encoding="utf-8")
    (root / "labels" / "schema.yaml").write_text((EXAMPLE / "schema.yaml").read_text(), encoding="utf-8")
    (root / "data" / "raw" / "posts.csv").write_text("id,text\nt1,Bike lanes are great.\n", encoding="utf-8")
    assert stance(root, "ingest").returncode == 0
    bad = tmp_path / "latin1.csv"
    bad.write_bytes("id,task,label\nt1,bike_lanes,caf\xe9\n".encode("latin-1"))
    done = stance(root, "labels", "import", "--format", "csv", str(bad), "--annotator", "gold")
    assert done.returncode == 2 and "latin1.csv: not UTF-8" in done.stderr
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("id,task,label\nt1,bike_lanes,FAVOR\nt9,bike_lanes,none\n", encoding="utf-8")
    done = stance(root, "labels", "import", "--format", "csv", str(mixed), "--annotator", "gold")
    assert done.returncode == 1 and "mixed.csv:3: no paragraph with id 't9'" in done.stderr
    saved = (root / "labels" / "annotations.jsonl").read_text(encoding="utf-8")
    assert json.loads(saved.split("\n")[0])["label"] == "favor"


# --- evaluation settings -------------------------------------------------------------------------

def _frame(groups: list[str]) -> pd.DataFrame:
    n = len(groups)
    return pd.DataFrame({"paragraph_id": [f"p{i}" for i in range(n)], "article": groups, "group": groups,
                         "source": "s", "text": [f"{'good great' if i % 2 else 'bad awful'} post {i}" for i in range(n)],
                         "bike_lanes": [i % 2 for i in range(n)], "four_day_week": -1, "school_phones": -1})


def _params(**evaluate) -> Params:
    return Params.model_validate({"evaluate": {"n_repeats": 1, "n_bootstrap": 100, **evaluate},
                                  "models": {"tfidf_lr": {}}})


def test_fold_plan_falls_back_to_the_groups_there_are_and_says_so():
    one_article = [{0: 0, 3: 1}.get(i % 6, -1) for i in range(12)]  # rows 0, 3, 6, 9: all in article a
    frame = _frame(["a", "b", "c"] * 4).assign(four_day_week=one_article, school_phones=lambda f: f["bike_lanes"])
    plan, notes = fold_plan(frame, SCHEMA, _params(n_splits=5))
    assert plan["bike_lanes"] == 3 and "only 3 groups by 'article' for n_splits=5" in notes[0]
    assert plan["four_day_week"] == 0 and "no CV estimate for this task" in notes[1]  # its labels: article a only
    plan, _ = fold_plan(frame.assign(article="a"), SCHEMA, _params(n_splits=5, group_by="id"))
    assert plan["bike_lanes"] == 5
    with pytest.raises(ConfigError, match="evaluate.group_by': no column 'outlet'"):
        fold_plan(frame, SCHEMA, _params(group_by="outlet"))
    with pytest.raises(ConfigError, match="task 'four_day_week': gold labels of 0 class"):
        fold_plan(_frame(["a"] * 12), SCHEMA, _params(), cv=False)
    with pytest.raises(ValueError, match="n_splits must be 0"):
        _params(n_splits=1)


def test_no_cv_fits_the_final_model_only():
    frame = _frame(["a"] * 12).assign(four_day_week=lambda f: f["bike_lanes"], school_phones=lambda f: f["bike_lanes"])
    result = evaluate_and_fit(frame, SCHEMA, "tfidf_lr", _params(n_splits=0))
    assert result.metrics["bike_lanes"] == {"cv": False, "n": 12, "temperature_used": False}
    assert result.metrics["macro_f1"] is None and "no CV estimate exists" in result.metrics["evaluation_notes"][0]
    assert result.model.predict_proba(["good great"])["bike_lanes"].shape == (1, 3)
