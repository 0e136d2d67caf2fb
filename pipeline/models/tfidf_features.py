"""TF-IDF features computed batch-wise with Arrow compute kernels (no Python loop per paragraph).

Text is NFKD-normalised, stripped of combining marks and lower-cased; word tokens are runs of two
or more letters, digits or underscores (as scikit-learn's default token pattern), and n-grams join
consecutive tokens of the same paragraph with a space. Character n-grams are taken inside each
whitespace-separated word padded with one space on either side (scikit-learn's `char_wb`).
Weights: sublinear tf (1 + log count) x smoothed idf, each analyzer's block L2-normalised.

Word tokens are found on the bytes of the batch's UTF-8 buffer with numpy (a regex split over Unicode
classes is the slowest step otherwise): ASCII bytes by a table, the few other characters by the same
regular expression as before, asked once per distinct character of the batch.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

_WORD_CHAR = r"^[\p{L}\p{N}_]$"
_WORD_BYTE = np.zeros(256, bool)  # ASCII letters, digits and underscore; bytes >= 0x80 are decided per character
_WORD_BYTE[np.frombuffer(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_", np.uint8)] = True
_UTF8_LENGTH = np.ones(256, np.int64)  # bytes of the character a UTF-8 lead byte starts
_UTF8_LENGTH[0xC0:0xE0], _UTF8_LENGTH[0xE0:0xF0], _UTF8_LENGTH[0xF0:] = 2, 3, 4
MAX_WORD_CHARS = 40  # character n-grams are taken from at most this many characters of a word


@dataclass
class Analyzer:
    kind: str  # "word" or "char"
    n_min: int
    n_max: int
    vocabulary: pa.Array = field(default_factory=lambda: pa.array([], pa.string()))
    idf: np.ndarray = field(default_factory=lambda: np.zeros(0))
    _index: "_NgramIndex | None" = field(default=None, repr=False)

    def terms(self, prepared: pa.Array) -> tuple[pa.Array, np.ndarray]:
        """All n-grams of a batch of prepared texts, and the row each one came from."""
        if self.kind == "word":
            return _word_ngrams(*_tokens(prepared), self.n_min, self.n_max)
        words = pc.utf8_split_whitespace(prepared)
        flat, rows = pc.list_flatten(words), pc.list_parent_indices(words).to_numpy()
        padded = pc.binary_join_element_wise(" ", pc.utf8_slice_codeunits(flat, 0, MAX_WORD_CHARS), " ", "")
        return _char_ngrams(padded, rows, self.n_min, self.n_max)

    def known_terms(self, prepared: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """(row, vocabulary column) of every n-gram of the batch that is in the vocabulary. Word n-grams
        are looked up as integer keys over token ids, so no n-gram string is ever built."""
        if self.kind == "word":
            if self._index is None:
                self._index = _NgramIndex(self.vocabulary, self.n_max)
            return self._index.lookup(*_LAST.tokens_for(prepared), self.n_min, self.n_max)
        terms, rows = self.terms(prepared)
        columns = pc.fill_null(pc.index_in(terms, value_set=self.vocabulary), -1).to_numpy()
        known = columns >= 0
        return rows[known], columns[known]

    def describe(self) -> dict:
        return {"kind": self.kind, "n_min": self.n_min, "n_max": self.n_max,
                "vocabulary": self.vocabulary.to_pylist()}

    @classmethod
    def restore(cls, spec: dict, idf: np.ndarray) -> "Analyzer":
        """The analyzer of a saved model; equal analyzers (the tasks of a model usually share one vocabulary)
        are one object, so a batch's features are computed once for all of them (see `tfidf_matrix`)."""
        described = json.dumps(spec, sort_keys=True, ensure_ascii=False).encode("utf-8")
        digest = hashlib.sha256(described + idf.tobytes()).hexdigest()
        known = _RESTORED.get(digest)
        if known is None:
            known = cls(spec["kind"], spec["n_min"], spec["n_max"], pa.array(spec["vocabulary"], pa.string()), idf)
            _RESTORED[digest] = known
        return known


_RESTORED: "weakref.WeakValueDictionary[str, Analyzer]" = weakref.WeakValueDictionary()


def prepare(texts) -> pa.Array:
    """NFKD, combining marks removed, lower case: one Arrow string array for a list or Arrow array of texts.
    ASCII rows, which NFKD and mark removal leave as they are, are only lower-cased."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    elif not isinstance(texts, pa.Array):
        texts = pa.array(list(texts), pa.string())
    texts = texts.cast(pa.string()).fill_null("")  # Parquet may hold large_string
    lowered = pc.ascii_lower(texts)
    other = pc.invert(pc.string_is_ascii(texts))
    if not pc.any(other).as_py():
        return lowered
    unicode = pc.utf8_normalize(texts.filter(other), form="NFKD")
    return pc.replace_with_mask(lowered, other, pc.utf8_lower(pc.replace_substring_regex(unicode, r"\p{Mn}+", "")))


def _word_spans(prepared: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, end) byte positions in `prepared`'s data buffer of every word token of two or more
    characters, in order, and the row of each."""
    n = len(prepared)
    offsets = np.frombuffer(prepared.buffers()[1], np.int32, n + 1, prepared.offset * 4).astype(np.int64)
    if n == 0 or offsets[-1] == offsets[0]:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    base = offsets[0]
    data = np.frombuffer(prepared.buffers()[2], np.uint8)[base:offsets[-1]]
    offsets = offsets - base
    word = _WORD_BYTE[data]
    leads = np.flatnonzero(data >= 0xC0)  # first bytes of non-ASCII characters
    if len(leads):
        size = _UTF8_LENGTH[data[leads]]
        flags = _is_word_char(_code_points(data, leads, size))
        for k in range(4):  # a character's continuation bytes belong to it
            part = size > k
            word[leads[part] + k] = flags[part]
    edges = np.zeros(len(word) + 2, bool)
    edges[1:-1] = word
    starts = np.flatnonzero(edges[1:] > edges[:-1])
    ends = np.flatnonzero(edges[1:] < edges[:-1])
    inner = offsets[1:-1][(offsets[1:-1] > 0) & (offsets[1:-1] < len(word))]
    joined = inner[word[inner] & word[inner - 1]]  # a row ending and the next starting with a word character
    if len(joined):
        starts, ends = np.sort(np.concatenate([starts, joined])), np.sort(np.concatenate([ends, joined]))
    length = ends - starts
    keep = (length >= 2) & (_UTF8_LENGTH[data[starts]] != length)  # not one multi-byte character
    starts, ends = starts[keep], ends[keep]
    rows = np.repeat(np.arange(n), np.diff(np.searchsorted(starts, offsets)))
    return starts + base, ends + base, rows


def _code_points(data: np.ndarray, leads: np.ndarray, size: np.ndarray) -> np.ndarray:
    byte = [data[np.minimum(leads + k, len(data) - 1)].astype(np.int64) for k in range(4)]
    tail = [b & 0x3F for b in byte[1:]]
    return np.select([size == 2, size == 3],
                     [((byte[0] & 0x1F) << 6) | tail[0], ((byte[0] & 0x0F) << 12) | (tail[0] << 6) | tail[1]],
                     ((byte[0] & 0x07) << 18) | (tail[0] << 12) | (tail[1] << 6) | tail[2])


def _is_word_char(code_points: np.ndarray) -> np.ndarray:
    """Whether each code point is a letter, digit or underscore, by the regex engine the rest of the
    module uses (so Unicode tables cannot disagree); asked once per distinct character."""
    distinct, where = np.unique(code_points, return_inverse=True)
    chars = pa.array([chr(c) for c in distinct.tolist()], pa.string())
    return pc.match_substring_regex(chars, _WORD_CHAR).to_numpy(zero_copy_only=False)[where]


def _tokens(prepared: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Word tokens of two or more characters, flattened, and the row each one came from. The tokens
    are read straight from `prepared`'s buffer: offsets alternate token, gap, token, ..."""
    starts, ends, rows = _word_spans(prepared)
    if not len(starts):
        return pa.array([], pa.string()), rows
    bounds = np.empty(2 * len(starts), np.int32)
    bounds[0::2], bounds[1::2] = starts, ends
    alternating = pa.StringArray.from_buffers(len(bounds) - 1, pa.py_buffer(bounds), prepared.buffers()[2])
    return alternating.take(pa.array(np.arange(0, len(bounds), 2))), rows


class _NgramIndex:
    """Word n-gram vocabulary as integer keys (looked up by hash): a token's id is its position in the table of
    tokens used by the vocabulary; an n-gram's key is its token ids read as digits in base len(table)."""

    def __init__(self, vocabulary: pa.Array, n_max: int):
        split = pc.split_pattern(vocabulary, " ")
        self.tokens = pc.unique(pc.list_flatten(split))
        ids = pc.index_in(pc.list_flatten(split), value_set=self.tokens).to_numpy().astype(np.int64)
        lengths = pc.list_value_length(split).to_numpy()
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        base = max(len(self.tokens), 1)
        self.keys: dict[int, tuple[pa.Array, np.ndarray]] = {}
        for n in range(1, n_max + 1):
            columns = np.flatnonzero(lengths == n)
            keys = np.zeros(len(columns), np.int64)
            for i in range(n):
                keys = keys * base + ids[starts[columns] + i]
            self.keys[n] = (pa.array(keys), columns)
        self.base = base

    def lookup(self, tokens: pa.Array, rows: np.ndarray, n_min: int, n_max: int) -> tuple[np.ndarray, np.ndarray]:
        ids = pc.fill_null(pc.index_in(tokens, value_set=self.tokens), -1).to_numpy().astype(np.int64)
        found_rows, found_columns = [], []
        for n in range(n_min, n_max + 1):
            count = len(ids) - n + 1
            known_keys, columns = self.keys[n]
            if count <= 0 or not len(known_keys):
                continue
            ok = rows[:count] == rows[n - 1:]
            keys = np.zeros(count, np.int64)
            for i in range(n):
                part = ids[i:i + count]
                ok &= part >= 0
                keys = keys * self.base + part
            where = np.flatnonzero(ok)
            position = pc.fill_null(pc.index_in(pa.array(keys[ok]), value_set=known_keys), -1).to_numpy()
            hit = position >= 0
            found_rows.append(rows[where[hit]])
            found_columns.append(columns[position[hit]])
        if not found_rows:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(found_rows), np.concatenate(found_columns)


def _word_ngrams(tokens: pa.Array, rows: np.ndarray, n_min: int, n_max: int) -> tuple[pa.Array, np.ndarray]:
    terms, term_rows = [], []
    for n in range(n_min, n_max + 1):
        count = len(tokens) - n + 1
        if count <= 0:
            continue
        same = rows[:count] == rows[n - 1:]  # rows are sorted, so first and last token share the paragraph
        parts = [tokens.slice(i, count) for i in range(n)]
        joined = parts[0] if n == 1 else pc.binary_join_element_wise(*parts, " ")
        terms.append(joined.filter(pa.array(same)))
        term_rows.append(rows[:count][same])
    if not terms:
        return pa.array([], pa.string()), np.zeros(0, np.int64)
    return pa.concat_arrays(terms), np.concatenate(term_rows)


def _char_ngrams(padded: pa.Array, rows: np.ndarray, n_min: int, n_max: int) -> tuple[pa.Array, np.ndarray]:
    lengths = pc.utf8_length(padded).to_numpy()
    terms, term_rows = [], []
    for n in range(n_min, n_max + 1):
        for start in range(0, int(lengths.max(initial=0)) - n + 1):
            fits = lengths >= start + n
            words = padded.filter(pa.array(fits))
            terms.append(pc.utf8_slice_codeunits(words, start, start + n))
            term_rows.append(rows[fits])
    if not terms:
        return pa.array([], pa.string()), np.zeros(0, np.int64)
    return pa.concat_arrays(terms), np.concatenate(term_rows)


def fit_vocabulary(analyzer: Analyzer, texts, min_df: int, max_features: int) -> Analyzer:
    """The analyzer with its vocabulary (the `max_features` most frequent terms found in at least
    `min_df` texts, in sorted order) and smoothed idf, learnt from `texts`."""
    prepared = prepare(texts)
    terms, rows = analyzer.terms(prepared)
    encoded = pc.dictionary_encode(terms)
    ids = encoded.indices.to_numpy().astype(np.int64)
    size = len(encoded.dictionary)
    tf = np.bincount(ids, minlength=size)
    df = np.bincount(np.unique(rows * size + ids) % size, minlength=size)
    candidates = np.flatnonzero(df >= min_df)
    kept = candidates[np.argsort(-tf[candidates], kind="stable")[:max_features]]
    vocabulary = encoded.dictionary.take(pa.array(kept))
    order = pc.sort_indices(vocabulary).to_numpy()
    idf = np.log((1 + len(prepared)) / (1 + df[kept[order]])) + 1.0
    return Analyzer(analyzer.kind, analyzer.n_min, analyzer.n_max, vocabulary.take(pa.array(order)), idf)


class _LastBatch:
    """The prepared text, word tokens and feature matrices of the last Arrow batch seen. Every task of a
    model scores the same (immutable) batch, so it is normalised and tokenised once, not once per task,
    and tasks whose analyzers are the same objects share its matrix."""

    def __init__(self):
        self.texts = self.prepared = self.tokens = None
        self.matrices: dict[tuple[int, ...], sp.csr_matrix] = {}

    def prepared_for(self, texts) -> pa.Array:
        if not isinstance(texts, pa.Array):
            return prepare(texts)
        if self.texts is not texts:
            self.texts, self.prepared, self.tokens, self.matrices = texts, prepare(texts), None, {}
        return self.prepared

    def matrix_for(self, analyzers: list["Analyzer"], prepared: pa.Array) -> sp.csr_matrix:
        if prepared is not self.prepared:
            return _tfidf(analyzers, prepared)
        key = tuple(map(id, analyzers))
        if key not in self.matrices:
            self.matrices[key] = _tfidf(analyzers, prepared)
        return self.matrices[key]

    def tokens_for(self, prepared: pa.Array) -> tuple[pa.Array, np.ndarray]:
        if prepared is not self.prepared:
            return _tokens(prepared)
        if self.tokens is None:
            self.tokens = _tokens(prepared)
        return self.tokens


_LAST = _LastBatch()


def tfidf_matrix(analyzers: list[Analyzer], texts) -> sp.csr_matrix:
    """(n texts, sum of vocabulary sizes) TF-IDF matrix, one L2-normalised block per analyzer."""
    return _LAST.matrix_for(analyzers, _LAST.prepared_for(texts))


def _tfidf(analyzers: list[Analyzer], prepared: pa.Array) -> sp.csr_matrix:
    blocks = []
    for analyzer in analyzers:
        rows, columns = analyzer.known_terms(prepared)
        shape = (len(prepared), len(analyzer.vocabulary))
        counts = sp.coo_matrix((np.ones(len(rows)), (rows, columns)), shape=shape).tocsr()
        counts.sum_duplicates()
        counts.data = (1.0 + np.log(counts.data)) * analyzer.idf[counts.indices]
        norms = np.sqrt(np.asarray(counts.multiply(counts).sum(axis=1)).ravel())
        norms[norms == 0] = 1.0
        blocks.append(sp.diags(1.0 / norms) @ counts)
    return sp.hstack(blocks, format="csr")
