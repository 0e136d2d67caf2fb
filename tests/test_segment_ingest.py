"""Segmentation and ingest on the real, noisy seed pages."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.config import ConfigError, load_params
from pipeline.ingest import ingest_folder, paragraph_id, paragraph_records, read_document
from pipeline.schema import load_schema
from pipeline.segment import Kind, classify, normalise, segment_text

TOPIC = load_schema().topic_groups  # the project's domain terms (labels/schema.yaml)


@pytest.fixture(scope="module")
def paragraphs(seed_files) -> pd.DataFrame:
    params = load_params().ingest
    rows = [r for name, text in seed_files.items() for r in paragraph_records(name, text, params, TOPIC)]
    return pd.DataFrame(rows)


BOILERPLATE = [
    "0:00", "Related Articles", "Comments", "No comments yet...", "Newsletter", "×", "Close",
    "Thursday, Jan 29, 2026", "32 minutes ago", "- RTHK", "- 3 min read", "Hashtags",
    "Illustration: Will Allen/Europinion", "Explore what Daily8 AI can do for you:",
    "Stefan Wolff is Professor of International Security, University of Birmingham",
    "This article is republished from The Conversation under a Creative Commons license. Read the original article.",
    "Tesla Ends Model S and X Production and Sends $2 Billion to xAI as 2025 Revenue Declines",
    "Kim Kardashian Admits Faking Paparazzi Visit to Britney Spears for Fame in Early 2000s",
    "Written by", "Footnotes",
]


@pytest.mark.parametrize("line", BOILERPLATE)
def test_known_boilerplate_is_not_a_paragraph(paragraphs, line):
    texts = set(paragraphs["text"])
    assert line not in texts
    assert not any(t.startswith(line) for t in texts if len(line) > 25)


def test_photo_captions_bylines_and_author_boxes_are_dropped(paragraphs):
    joined = "\n".join(paragraphs["text"])
    assert "Alexei Danichev/Photo host agency RIA Novosti via AP)" not in joined
    assert "Nataliya Butyrska is an independent expert" not in joined
    assert "Sergey Radchenko is the Wilson E. Schmidt" not in joined
    assert "Opinions expressed herein" not in joined
    assert "Data in Table 2 below" not in joined  # footnote after the article's end


def test_known_paragraphs_are_present_and_whole(paragraphs, seed_files):
    texts = list(paragraphs["text"])
    expected = [
        "Whatever the reality, China is deemed to have been complicit, at least by supporting Russia and backing it since, leaving it uncomfortably on a spiky fence.",
        "Russia and China have not become allies, but nor is this necessary. Alliances require commitments and reduce one’s space for maneuver. Both countries need this space. So they have come together, but not in a close embrace. And this is a strategically sensible position in this increasingly confusing, chaotic world.",
    ]
    for paragraph in expected:
        assert paragraph in texts
    # a paragraph broken across two lines in the page is re-joined into one
    joined = [t for t in texts if t.startswith("Sino-Russian relations remain a complex dance")]
    assert len(joined) == 1 and joined[0].endswith("amid a turbulent world stage.")
    assert "Their alliance, though fragile and driven by strategic interests" in joined[0]


def test_articles_are_split_and_titled(seed_files):
    articles = segment_text(seed_files["001_79a1f099abfcea29.txt"])
    titles = [a.title for a in articles]
    assert titles[0] == "Russia-China ties not as healthy as Putin is making out"
    assert "Postecoglou sacked by Spurs despite Europa League win" in titles
    assert len(articles) == 4
    # the sports story is its own article, not glued onto the analysis piece
    assert not any("Postecoglou" in p for p in articles[0].paragraphs)
    assert segment_text(seed_files["004_07b7d951535d9a6f.txt"])[0].title == "US Unlikely to Unravel Robust Russia-China Ties"


def test_section_headings_do_not_split_an_article(seed_files):
    articles = segment_text(seed_files["002_07d22d0978f394db.txt"])
    assert len(articles) == 1 and len(articles[0].paragraphs) == 16
    assert "China’s Performative Neutrality" not in articles[0].paragraphs


def test_unrelated_stories_are_kept_but_off_topic(paragraphs):
    sport = paragraphs[paragraphs["text"].str.contains("Postecoglou")]
    assert len(sport) == 1 and not sport["on_topic"].iloc[0]
    trade = paragraphs[paragraphs["text"].str.contains("top economic officials")]
    assert len(trade) == 1 and not trade["on_topic"].iloc[0]  # mentions China, not Russia
    assert paragraphs[paragraphs["source"].str.startswith("004")]["on_topic"].all()


def test_ids_are_stable_unique_and_independent_of_position(paragraphs, seed_files):
    again = pd.DataFrame([r for name, text in seed_files.items()
                          for r in paragraph_records(name, text, load_params().ingest, TOPIC)])
    assert list(again["paragraph_id"]) == list(paragraphs["paragraph_id"])
    assert paragraphs["paragraph_id"].is_unique
    # re-segmenting with extra furniture around a paragraph keeps its id
    name = "003_4beb952569dd0acc.txt"
    noisy = "Menu\nHome\nSearch\n\n" + seed_files[name].replace("\n\n", "\n\nAdvertisement\n\n")
    ids_noisy = {r["paragraph_id"] for r in paragraph_records(name, noisy, load_params().ingest, TOPIC)}
    assert ids_noisy == set(paragraphs[paragraphs["source"] == name]["paragraph_id"])
    # ids ignore typographic variants but not the source
    assert paragraph_id("a.txt", "It’s  “fine”.") == paragraph_id("a.txt", "It's \"fine\".")
    assert paragraph_id("a.txt", "Same text here.") != paragraph_id("b.txt", "Same text here.")


def test_classify_generic_cues():
    assert classify("12:45", 12) is Kind.BOILERPLATE
    assert classify("5 hours ago", 12) is Kind.BOILERPLATE
    assert classify("Share this article", 12) is Kind.END_MARKER or classify("Share this article", 12) is Kind.BOILERPLATE
    assert classify("Beijing and Moscow signed a new energy deal on Tuesday, officials in both capitals said.", 12) is Kind.BODY
    assert classify("Markets Rally as Oil Prices Fall", 12) is Kind.HEADING
    assert normalise("a\u00a0 b") == "a b"


def test_short_interview_questions_stay_with_their_answers_but_section_questions_do_not():
    """A marked interviewer's question is a paragraph however short (its answer needs it); an unmarked short
    question is an explainer's section heading, as are link-like lines with a label."""
    page = "\n\n".join([
        "China and the war: an interview",
        "Q: Is China helping Russia fight the war?",
        "Not with weapons, as far as anyone has shown, but its exports of machine tools and chips matter a great deal.",
        "**Pavel Dorokhin: How serious is the payments problem?**",
        "Serious enough that importers now pay agents a commission of several percent on every transfer to China.",
        "## What does Beijing say?",
        "Beijing says it supplies neither side with weapons and that its trade with Russia is normal commerce.",
        "Explainer: What is the Shanghai Cooperation Organisation?",
        "Related Stories: Why is China buying more Russian oil?",
    ])
    [article] = segment_text(page)
    assert article.paragraphs[0] == "Q: Is China helping Russia fight the war?"
    assert "**Pavel Dorokhin: How serious is the payments problem?**" in article.paragraphs
    assert not any(cue in p for p in article.paragraphs for cue in ("What does Beijing say", "Explainer", "Related"))
    assert len(article.paragraphs) == 5


def test_html_goes_through_main_text_extraction(tmp_path):
    body = " ".join(["Moscow and Beijing deepened their cooperation this year, officials said."] * 3)
    html = (f"<html><body><nav><a href='/'>Home</a><a href='/world'>World</a></nav><article><h1>Title of the story here</h1>"
            f"<p>{body}</p><p>{body.replace('this year', 'last year')}</p></article>"
            f"<aside><h3>Related</h3><ul><li><a href='/x'>Other story one</a></li></ul></aside></body></html>")
    page = tmp_path / "page.html"
    page.write_text(html, encoding="utf-8")
    text = read_document(page)
    assert "Home" not in text and "Other story one" not in text
    rows = paragraph_records("page.html", text, load_params().ingest, TOPIC)
    assert len(rows) == 2 and rows[0]["on_topic"]


def test_unreadable_files_are_named(tmp_path):
    bad = tmp_path / "raw" / "latin1.txt"
    bad.parent.mkdir()
    bad.write_bytes("caf\xe9 ".encode("latin-1") * 5)
    with pytest.raises(ConfigError, match="latin1.txt: not valid UTF-8"):
        ingest_folder(bad.parent, load_params().ingest, TOPIC)
