"""Noisy page text -> articles -> clean body paragraphs.

Scraped pages run several articles together with navigation, timestamps,
"related articles" lists, comment widgets, bylines and photo captions in between.
The segmenter works on generic cues, not on any one site's markup:

1. Lines are joined into blocks (a paragraph broken mid-sentence is re-joined).
2. Each block is classified: boilerplate (by pattern, or as part of a run of
   headline-like lines), body paragraph (long enough, reads as prose), or heading.
3. A heading that follows boilerplate (or opens the page) starts a new article;
   a heading between two body paragraphs is a section heading of the same article.
   After an end-of-article marker (comments, author box, footnotes, related links)
   nothing is body text until a new article starts.

Ingest and scoring both read a page with `pipeline.documents` and segment its clean text with
`segment_text`, so a page gives the same paragraphs for training and for scoring.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum

TERMINAL = ('.', '!', '?', '"', '”', '’', "'", ')', '…', ':')

_TIMESTAMP = re.compile(r"^\d{1,2}:\d{2}(:\d{2})?$")
_RELATIVE_TIME = re.compile(r"^-?\s*\d+\s+(second|minute|hour|day|week|month|year)s?\s+ago$", re.I)
_READ_TIME = re.compile(r"^-?\s*\d+\s+min(ute)?s?\s+read$", re.I)
_DATE = re.compile(
    r"^((mon|tues|wednes|thurs|fri|satur|sun)day,?\s+)?"
    r"((\d{1,2}\s+)?(jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?\s+(\d{1,2},?\s+)?\d{4}"
    r"|\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}/\d{2,4})"
    r"(\s*[,|]?\s*\d{1,2}:\d{2}(\s*[ap]m)?)?\s*$",
    re.I,
)
# Lines that are site furniture wherever they occur.
_FURNITURE = re.compile(
    r"^(advertisement|newsletter|sign up.*|subscribe.*|share( this)?( article)?|close|menu|search|home|"
    r"hashtags|tags?|topics?|read more|more to follow.*|related( articles| stories| content| posts)?|"
    r"you may also like|recommended( for you)?|most read|trending|try our .*|explore what .*|"
    r"no comments yet.*|\d+ comments?|leave a (comment|reply)|print|email|follow us.*|[×x•|·\-–—]+)$",
    re.I,
)
# Credits, disclaimers and republication notes.
_CREDIT = re.compile(
    r"^(photo|image|illustration|photograph|picture|video|graphic|credit|source)s?\s*(by|:)"
    r"|\b(republished from|creative commons licen[cs]e|opinions expressed (herein|here|in this)|"
    r"all rights reserved|read the original article|views expressed (here|in this))",
    re.I,
)
# A caption ends with a parenthesised credit, e.g. "(Jane Doe/AP)" or "(Photo: Reuters)".
_CAPTION = re.compile(r"\((?:[^()]*/[^()]*|[^()]*\b(?:photo|AP|AFP|Reuters|Getty|EPA|Xinhua)\b[^()]*)\)\s*$")
# Author boxes: "Jane Doe is a professor of ... at ...".
_BIO = re.compile(
    r"^[A-Z][\w.'\-]+(?:\s+(?:\([^)]*\)|[A-Z][\w.'\-]+)){1,3}\s+(is|was|are)\s+(an?|the)?\s*.{0,80}?\b"
    r"(?i:professor|expert|fellow|author|editor|correspondent|journalist|researcher|analyst|director|"
    r"reporter|writer|columnist|lecturer|scholar|chair|head|contributor)\b",
)
# Markers after which the rest of the article is furniture (until a new article starts).
_END_MARKER = re.compile(
    r"^(comments?|related( articles| stories| content| posts)?|footnotes?|references|notes|"
    r"about the authors?|authors?|written by|by the same author|more from .*|read next|"
    r"share this( article)?|you may also like|recommended( for you)?|most read|hashtags|tags)\s*:?$",
    re.I,
)
_BULLET = re.compile(r"^\s*[-–—•*]\s+")
# An interviewer's question, marked as one: "Q: ...?", "Question: ...?", "Interviewer: ...?" or a speaker's
# name ("Jane Doe: ...?"), bold in Markdown or not. Kept whatever its length, so an answer keeps its question; an unmarked short
# question ("## What does Beijing say?", "WHAT HAPPENS NEXT?") is an explainer's section heading.
_INTERVIEW_QUESTION = re.compile(
    r"^(?:\*\*|__)?(Q\s*[:.]|(?:Question|Interviewer|Host|Moderator)\s*:|[A-Z][\w.'\-]+(?:\s+[A-Z][\w.'\-]+){1,3}\s*:)"
    r"\s+\S.*\?[\"”’']?(?:\*\*|__)?$")


def is_interview_question(text: str) -> bool:
    """A marked interviewer's question; "Related Stories: Why ...?" is a link, not a speaker."""
    found = _INTERVIEW_QUESTION.match(text)
    label = found.group(1).rstrip(":. ") if found else ""
    return bool(found) and not (_END_MARKER.match(label) or _FURNITURE.match(label))


class Kind(str, Enum):
    BODY = "body"
    HEADING = "heading"
    BOILERPLATE = "boilerplate"
    END_MARKER = "end_marker"


@dataclass
class Article:
    title: str
    paragraphs: list[str] = field(default_factory=list)


def normalise(text: str) -> str:
    """Canonical form of a paragraph: NFKC, straight quotes, single spaces."""
    text = unicodedata.normalize("NFKC", text)
    text = text.translate(str.maketrans({"‘": "'", "’": "'", "“": '"', "”": '"', "\u00a0": " "}))
    return re.sub(r"\s+", " ", text).strip()


def _words(text: str) -> int:
    return len(text.split())


@dataclass
class _Block:
    """A block being built from lines: its parts, word count and last character kept as it grows,
    so joining a long run of lines stays linear in the text's size."""
    parts: list[str]
    words: int

    @property
    def last(self) -> str:
        return self.parts[-1]

    def text(self) -> str:
        return " ".join(self.parts)


def _lines_to_blocks(text: str) -> list[str | None]:
    """Non-empty lines, with a sentence broken across lines re-joined; None marks a blank line."""
    blocks: list[_Block | None] = []
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = re.sub(r"\s+", " ", raw).strip()
        if not line:
            if blocks and blocks[-1] is not None:
                blocks.append(None)
            continue
        words = _words(line)
        prev = _last_block_index(blocks)
        if prev is not None and _continues(blocks[prev], line, words):
            blocks[prev].parts.append(line)
            blocks[prev].words += words
            del blocks[prev + 1:]
        else:
            blocks.append(_Block([line], words))
    return [None if b is None else b.text() for b in blocks]


def _last_block_index(blocks: list[_Block | None]) -> int | None:
    for i in range(len(blocks) - 1, max(len(blocks) - 3, -1), -1):
        if blocks[i] is not None:
            return i
    return None


def _continues(previous: _Block, line: str, line_words: int) -> bool:
    """A line continues the previous one when that stopped mid-sentence and this starts lowercase."""
    return (previous.words >= 3 and previous.last.endswith((",", ";", "-", "–")) or previous.last[-1:].islower()) \
        and line[:1].islower() and previous.words + line_words >= 8


def _is_title_like(block: str) -> bool:
    """Headlines: short, no sentence punctuation at the end, starting with a capital or digit."""
    return 2 <= _words(block) <= 25 and not block.endswith((".", "!", "?", ";", ",", ":")) \
        and (block[:1].isupper() or block[:1].isdigit())


def _is_furniture(text: str) -> bool:
    """Timestamps, dates, site furniture, credits, author boxes and captions."""
    return bool(_TIMESTAMP.match(text) or _RELATIVE_TIME.match(text) or _READ_TIME.match(text) or _DATE.match(text)
                or _FURNITURE.match(text) or _CREDIT.search(text) or _BIO.match(text)
                or (_CAPTION.search(text) and _words(text) <= 60))


def classify(block: str, min_words: int) -> Kind:
    """What one block of page text is, judged on its own."""
    text = _BULLET.sub("", block).strip()
    if not text or _END_MARKER.match(text):
        return Kind.END_MARKER
    if _is_furniture(text):
        return Kind.BOILERPLATE
    if _BULLET.match(block) and _words(text) < min_words:
        return Kind.BOILERPLATE  # "- 3 min read", "- Author Name": metadata bullets
    n = _words(text)
    if n >= min_words and (text.endswith(TERMINAL) or n >= 2 * min_words) or is_interview_question(text):
        return Kind.BODY
    if _is_title_like(text):
        return Kind.HEADING
    return Kind.BOILERPLATE


def _mark_link_lists(kinds: list[Kind], blocks: list[str]) -> list[Kind]:
    """Three or more consecutive headline-like lines are a link list (related stories, menus)."""
    kinds = list(kinds)
    run: list[int] = []
    for i in range(len(blocks) + 1):
        headline_like = i < len(blocks) and (
            kinds[i] is Kind.HEADING
            or (kinds[i] is Kind.BODY and not blocks[i].endswith(TERMINAL) and _words(blocks[i]) < 40))
        if headline_like:
            run.append(i)
            continue
        if len(run) >= 3:
            for j in run:
                kinds[j] = Kind.BOILERPLATE
        run = []
    return kinds


def drop_reason(block: str, kind: Kind, min_words: int) -> str:
    """Why a block that is not a body paragraph was left out: boilerplate, too short, or a heading."""
    text = _BULLET.sub("", block).strip()
    if kind is Kind.HEADING:
        return "heading"
    if kind is Kind.END_MARKER or _is_furniture(text) or _words(text) >= min_words:
        return "boilerplate"  # furniture, end markers and link lists (long lines in a run of headlines)
    return "too_short"


def segment_text(text: str, min_words: int = 12, drops: Counter | None = None) -> list[Article]:
    """Split a page into articles holding only their body paragraphs (empty articles dropped).

    `drops`, when given, counts every block left out by reason (see `drop_reason`, plus "duplicate"
    and "boilerplate" for body text after an end-of-article marker or in an article with no body)."""
    drops = Counter() if drops is None else drops
    blocks: list[str] = []
    for block in _lines_to_blocks(text):
        if block is not None and (not blocks or block != blocks[-1]):  # repeated title lines
            blocks.append(block)
        elif block is not None:
            drops["duplicate"] += 1
    kinds = _mark_link_lists([classify(b, min_words) for b in blocks], blocks)

    articles: list[Article] = []
    current: Article | None = None
    seen: set[str] = set()  # normalised paragraphs of the current article, each normalised once
    after_body = False  # was the last non-heading block a body paragraph?
    after_heading = False  # was the previous block a heading?
    in_trailer = False  # past an end-of-article marker
    for block, kind in zip(blocks, kinds):
        if kind is not Kind.BODY:
            drops[drop_reason(block, kind, min_words)] += 1
        if kind is Kind.HEADING:
            if current is None or in_trailer or not after_body:
                # Site names come before the headline, a standfirst right after it.
                if current is not None and not current.paragraphs:
                    current.title = current.title if after_heading else block
                else:
                    current = Article(title=block)
                    articles.append(current)
                    seen = set()
                in_trailer = False
            after_heading = True
            continue  # otherwise a section heading inside the current article
        after_heading = False
        if kind is Kind.END_MARKER:
            in_trailer = current is not None and bool(current.paragraphs)
        elif kind is Kind.BODY and not in_trailer:
            if current is None:
                current = Article(title="")
                articles.append(current)
                seen = set()
            paragraph = _BULLET.sub("", block)
            key = normalise(paragraph)
            if key not in seen:
                seen.add(key)
                current.paragraphs.append(paragraph)
            else:
                drops["duplicate"] += 1
        elif kind is Kind.BODY:
            drops["boilerplate"] += 1  # body-like text after an end-of-article marker
        after_body = kind is Kind.BODY
    return [a for a in articles if a.paragraphs]


def is_on_topic(text: str, topic_groups: dict[str, list[str]]) -> bool:
    """True when the text mentions at least one term of every group (no groups: always on-topic)."""
    lowered = normalise(text).lower()
    return all(
        any(re.search(rf"(?<![\w-]){re.escape(normalise(term).lower())}(?![\w-])", lowered) for term in terms)
        for terms in topic_groups.values()
    )
