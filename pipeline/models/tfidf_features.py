"""TF-IDF features computed batch-wise with Arrow compute kernels (no Python loop per paragraph).

Text is NFKD-normalised, stripped of combining marks and lower-cased; word tokens are runs of two
or more letters, digits or underscores (as scikit-learn's default token pattern), and n-grams join
consecutive tokens of the same paragraph with a space. Character n-grams are taken inside each
whitespace-separated word padded with one space on either side (scikit-learn's `char_wb`).
Weights: sublinear tf (1 + log count) x smoothed idf, each analyzer's block L2-normalised.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

_NOT_WORD = r"[^\p{L}\p{N}_]+"
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
        return cls(spec["kind"], spec["n_min"], spec["n_max"], pa.array(spec["vocabulary"], pa.string()), idf)


def prepare(texts) -> pa.Array:
    """NFKD, combining marks removed, lower case: one Arrow string array for a list or Arrow array of texts."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    elif not isinstance(texts, pa.Array):
        texts = pa.array(list(texts), pa.string())
    texts = pc.utf8_normalize(texts.cast(pa.string()).fill_null(""), form="NFKD")  # Parquet may hold large_string
    return pc.utf8_lower(pc.replace_substring_regex(texts, r"\p{Mn}+", ""))


def _tokens(prepared: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """Word tokens of two or more characters, flattened, and the row each one came from."""
    tokens = pc.split_pattern_regex(prepared, _NOT_WORD)
    flat, rows = pc.list_flatten(tokens), pc.list_parent_indices(tokens)
    keep = pc.greater_equal(pc.utf8_length(flat), 2)
    return flat.filter(keep), rows.filter(keep).to_numpy()


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
    """The prepared text and word tokens of the last Arrow batch seen. Every task of a model scores
    the same (immutable) batch, so it is normalised and tokenised once, not once per task."""

    def __init__(self):
        self.texts = self.prepared = self.tokens = None

    def prepared_for(self, texts) -> pa.Array:
        if not isinstance(texts, pa.Array):
            return prepare(texts)
        if self.texts is not texts:
            self.texts, self.prepared, self.tokens = texts, prepare(texts), None
        return self.prepared

    def tokens_for(self, prepared: pa.Array) -> tuple[pa.Array, np.ndarray]:
        if prepared is not self.prepared:
            return _tokens(prepared)
        if self.tokens is None:
            self.tokens = _tokens(prepared)
        return self.tokens


_LAST = _LastBatch()


def tfidf_matrix(analyzers: list[Analyzer], texts) -> sp.csr_matrix:
    """(n texts, sum of vocabulary sizes) TF-IDF matrix, one L2-normalised block per analyzer."""
    prepared = _LAST.prepared_for(texts)
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
