"""Hashed duplicate-id tracking reports what a dict of id -> first location reports."""

from __future__ import annotations

import random

import numpy as np
import pyarrow as pa

from pipeline.scoring.seen_ids import SeenIds, id_keys


def test_same_report_as_a_dict_of_first_locations():
    rng = random.Random(0)
    pool = [f"id{i}" for i in range(300)] + ["", "é", "ab", "ba", "a" * 200, "1", "01"]
    batches = [(f"file{b % 2}.parquet", [rng.choice(pool) for _ in range(rng.randint(0, 150))]) for b in range(12)]
    seen, first = SeenIds(), {}
    for path, ids in batches:
        lines = np.arange(1, len(ids) + 1) * 3
        expected = {}
        for position, (doc_id, line) in enumerate(zip(ids, lines.tolist())):
            if doc_id in first:
                expected[position] = first[doc_id]
            else:
                first[doc_id] = f"{path}:{line}"
        assert seen.add(path, pa.array(ids, pa.string()), lines) == expected


def test_distinct_ids_get_distinct_keys():
    ids = [f"p{i}" for i in range(200_000)] + [str(i) for i in range(100_000)] + ["", "\x00", "\x00\x00", "ü"]
    keys = id_keys(pa.array(ids))
    assert len(np.unique(keys)) == len(ids)
    assert (id_keys(pa.array(ids[:10]).slice(3)) == keys[3:10]).all()  # an Arrow slice hashes its own rows
