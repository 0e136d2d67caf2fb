"""One document reader: a page gives the same paragraphs to ingest (what the model learns from) and to
scoring (what it is applied to), whatever its format, byte-order mark or declared charset."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import IngestParams
from pipeline.documents import UnreadableDocument, page_markup, read_page
from pipeline.ingest import ingest_folder
from pipeline.scoring.readers import Document, ReadOptions, discover, read_sources

BODY = [
    "Trade between the two neighbours grew again last spring, although most of the new contracts were settled in yuan rather than dollars.",
    "Officials in both capitals described the pipeline talks as “constructive”, yet neither side would say when a price might be agreed.",
    "Analysts at a regional bank expect the port upgrades to take at least four more years, given the shortage of rail cars at the border.",
]

MARKDOWN = "\n".join([
    "# Northern Courier",
    "",
    "[Home](/) · [World](/world) · [Economy](/economy)",
    "",
    "## Trade keeps rising as the rouble weakens",
    "",
    *(f"{p}\n" for p in BODY),
    "> A reader wrote that the figures for the second quarter looked far too good to be believed by anyone.",
    "",
    "Related articles",
])

HTML = (
    '<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1252">'
    "<title>Trade keeps rising</title></head><body>"
    "<nav><a href='/'>Home</a> <a href='/world'>World</a> <a href='/economy'>Economy</a></nav>"
    "<article><h1>Trade keeps rising as the rouble weakens</h1>"
    + "".join(f"<p>{p}</p>" for p in BODY)
    + "</article><aside><h3>Related</h3><ul><li><a href='/x'>Another story</a></li></ul></aside></body></html>"
)


@pytest.fixture
def pages(tmp_path) -> Path:
    """A Markdown page with a UTF-8 byte-order mark and an HTML page in the charset its head declares."""
    folder = tmp_path / "raw"
    folder.mkdir()
    (folder / "courier.md").write_bytes(b"\xef\xbb\xbf" + MARKDOWN.encode("utf-8"))
    (folder / "courier.html").write_bytes(HTML.encode("windows-1252"))
    return folder


def test_ingest_and_scoring_read_a_page_into_the_same_paragraphs(pages):
    params = IngestParams()
    frame, _ = ingest_folder(pages, params, {})
    ingested = {name: [(row.article_index, row.text) for row in group.itertuples()]
                for name, group in frame.groupby("source")}
    scored = {Path(doc.doc_id).name: [(p.article_index, p.text) for p in doc.paragraphs]
              for doc in read_sources(discover([str(pages)]), ReadOptions(min_words=params.min_words))
              if isinstance(doc, Document)}
    assert scored == ingested
    assert [text for _, text in ingested["courier.html"]] == BODY  # charset honoured: the curly quotes survive
    assert [text for _, text in ingested["courier.md"]][:3] == BODY  # the byte-order mark is not text


def test_unreadable_pages_say_why(tmp_path):
    assert "binary" in str(pytest.raises(UnreadableDocument, page_markup, b"\x00\x01text", False).value)
    assert "empty" in str(pytest.raises(UnreadableDocument, page_markup, b" \n", False).value)
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\xe9 ".encode("latin-1") * 5)
    with pytest.raises(UnreadableDocument, match="not valid UTF-8"):
        read_page(latin)
