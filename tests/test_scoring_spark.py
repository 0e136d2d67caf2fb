"""--engine spark in local[2]: output equals the local engine's row for row."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from support import tiny_model
from pipeline.cli import app
from pipeline.segment import segment_text

pytestmark = pytest.mark.slow  # trains or serves real models, or runs the pipeline end to end

pytest.importorskip("pyspark")


def test_spark_engine_matches_local_engine_row_for_row(tmp_path, seed_files):
    paragraphs = [p for text in seed_files.values() for a in segment_text(text) for p in a.paragraphs]
    model = tiny_model(tmp_path / "model", paragraphs)
    rows = pd.DataFrame({"id": [f"p{i}" for i in range(len(paragraphs) + 1)],
                         "text": paragraphs + ["   "],
                         "source": ["Wire" if i % 2 else None for i in range(len(paragraphs) + 1)],
                         "date": pd.to_datetime([f"2025-0{1 + i % 9}-15" for i in range(len(paragraphs) + 1)])})
    src = tmp_path / "in.parquet"
    rows.to_parquet(src)
    runner = CliRunner()
    local = runner.invoke(app, ["score", str(src), "--out", str(tmp_path / "local"), "--model", str(model)])
    assert local.exit_code == 1, local.output  # the blank row is skipped by both engines
    spark = runner.invoke(app, ["score", str(src), "--out", str(tmp_path / "spark"), "--model", str(model),
                                "--engine", "spark", "--master", "local[2]"])
    assert spark.exit_code == 1, spark.output
    expected = pd.read_parquet(tmp_path / "local" / "paragraphs.parquet").sort_values("id").reset_index(drop=True)
    got = pd.read_parquet(tmp_path / "spark" / "paragraphs.parquet").sort_values("id").reset_index(drop=True)
    assert len(got) == len(paragraphs)
    pd.testing.assert_frame_equal(got[expected.columns], expected, check_dtype=False)
