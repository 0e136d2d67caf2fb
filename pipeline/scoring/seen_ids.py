"""The ids a streamed run has seen, to report a duplicate with where its id was first seen.

A Python dict of id strings to "path:line" strings costs ~200 bytes per row (~250 MB at 1M rows);
here an id is a 128-bit hash in a sorted numpy array next to its file and line (28 bytes per row).
Two different ids share a hash with probability ~1e-20 even at a billion rows, so the report is
that of the exact dict in practice.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_KEY = np.dtype("S16")  # two 64-bit hashes, compared as 16 bytes (sortable, searchable)
_SEEDS = (np.uint64(0x243F6A8885A308D3), np.uint64(0x13198A2E03707344))


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit changes about half of the output bits."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def id_keys(ids: pa.Array) -> np.ndarray:
    """A 128-bit key per string: per hash, the sum over bytes of a mix of (byte, position, seed), and the
    length mixed in. Null and empty strings get the key of the empty string."""
    ids = ids.cast(pa.string())
    n = len(ids)
    offsets = np.frombuffer(ids.buffers()[1], np.int32, n + 1, ids.offset * 4).astype(np.int64)
    data = np.frombuffer(ids.buffers()[2], np.uint8) if ids.buffers()[2] is not None else np.zeros(0, np.uint8)
    data = data[offsets[0]:offsets[-1]]
    lengths = np.diff(offsets)
    starts = offsets[:-1] - offsets[0]
    position = np.arange(len(data)) - np.repeat(starts, lengths)
    cell = (position.astype(np.uint64) << np.uint64(8)) | data.astype(np.uint64)
    filled = lengths > 0
    halves = []
    for seed in _SEEDS:
        total = np.zeros(n, np.uint64)
        if len(cell):
            total[filled] = np.add.reduceat(_mix(cell ^ seed), starts[filled])  # sums wrap around 2**64
        halves.append(total ^ _mix(lengths.astype(np.uint64) + seed))
    return np.ascontiguousarray(np.stack(halves, axis=1)).view(_KEY).ravel()


class SeenIds:
    """Sorted keys of the ids seen so far, each with the file (index into `paths`) and line it was first seen at."""

    def __init__(self):
        self.paths: list[str] = []
        self.keys = np.zeros(0, _KEY)
        self.files = np.zeros(0, np.int32)
        self.lines = np.zeros(0, np.int64)

    def add(self, path: str, ids: pa.Array, lines: np.ndarray) -> dict[int, str]:
        """Record `ids` (in file order, read from `path` at `lines`); returns {position in `ids`: where that
        id was first seen, "path:line"} for every id seen before, earlier in this call included."""
        if path not in self.paths:
            self.paths.append(path)
        file = self.paths.index(path)
        keys = id_keys(ids)
        distinct, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        where = np.searchsorted(self.keys, distinct)
        known = where < len(self.keys)
        known[known] = self.keys[where[known]] == distinct[known]
        repeated = np.flatnonzero(known[inverse] | (first[inverse] != np.arange(len(keys))))
        earlier = {}
        for i in repeated.tolist():
            d = inverse[i]
            if known[d]:
                earlier[i] = f"{self.paths[self.files[where[d]]]}:{self.lines[where[d]]}"
            else:
                earlier[i] = f"{path}:{lines[first[d]]}"
        new = ~known
        at = where[new]
        self.keys = np.insert(self.keys, at, distinct[new])
        self.files = np.insert(self.files, at, file)
        self.lines = np.insert(self.lines, at, lines[first[new]])
        return earlier
