"""The document reader ingest and scoring share: a page's bytes -> its characters -> clean text, which
`pipeline.segment.segment_text` then splits into articles and body paragraphs.

The model must score text prepared exactly as the text it learnt from, so there is one copy of each
rule here: how bytes become characters (a byte-order mark first, then an HTML page's declared
charset, else UTF-8), which bytes are not a page at all (empty, binary), and how an HTML page becomes
text (main-text extraction). Plain text and Markdown are read as they are: their paragraph ids hash
the text, so rewriting Markdown markup would re-key every labelled paragraph that carries some.
Callers add where a failure happened (ingest stops on it, scoring skips the input).
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path

TEXT_SUFFIXES = (".txt", ".md")
HTML_SUFFIXES = (".html", ".htm")
DOCUMENT_SUFFIXES = TEXT_SUFFIXES + HTML_SUFFIXES

_CHARSET = re.compile(rb"""<meta[^>]+charset=["']?([\w.:-]+)""", re.I)
CHARSET_WINDOW = 4096  # the declaration must sit in the head of the page, as browsers expect
BINARY_WINDOW = 8192
# longest first: the UTF-32 LE BOM starts with the UTF-16 LE one
_BOMS = [(codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")]


class UnreadableDocument(ValueError):
    """Bytes that cannot be read as a page; the message says why, the caller says where."""


def is_html(path: Path) -> bool:
    return path.suffix.lower() in HTML_SUFFIXES


def bom_encoding(data: bytes) -> str | None:
    return next((encoding for bom, encoding in _BOMS if data.startswith(bom)), None)


def unreadable_reason(data: bytes) -> str | None:
    """Why these bytes are no text to read (empty, binary), or None. UTF-16/32 text holds NUL bytes,
    so only bytes without such a byte-order mark count as binary."""
    if not data.strip():
        return "empty file"
    if b"\x00" in data[:BINARY_WINDOW] and bom_encoding(data) not in ("utf-16", "utf-32"):
        return "binary file (contains NUL bytes)"
    return None


def decode(data: bytes, encoding: str = "utf-8-sig") -> str:
    """Text by its byte-order mark if it has one (UTF-8/16/32), else by `encoding`."""
    encoding = bom_encoding(data) or encoding
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        raise UnreadableDocument(f"not valid {encoding.replace('-sig', '').upper()}: {err.reason} "
                                 f"at byte {err.start}") from None
    except LookupError:
        raise UnreadableDocument(f"unknown declared encoding '{encoding}'") from None


def page_markup(data: bytes, html: bool) -> str:
    """A page file's characters: HTML in the charset its head declares (UTF-8 if none), other pages UTF-8."""
    if reason := unreadable_reason(data):
        raise UnreadableDocument(reason)
    declared = _CHARSET.search(data[:CHARSET_WINDOW]) if html else None
    return decode(data, declared.group(1).decode("ascii").lower() if declared else "utf-8-sig")


def main_text(markup: str, html: bool) -> str:
    """The text segmentation reads: an HTML page's main text (navigation, ads and link lists removed,
    one block per line), any other page as it is."""
    if not html:
        return markup
    import trafilatura

    extracted = trafilatura.extract(markup, include_comments=False, include_tables=False,
                                    include_links=False, favor_recall=True, with_metadata=False)
    return extracted or ""


def read_page(path: Path) -> str:
    """A page file's clean text (UnreadableDocument says why a file cannot be read)."""
    return main_text(page_markup(path.read_bytes(), is_html(path)), is_html(path))

