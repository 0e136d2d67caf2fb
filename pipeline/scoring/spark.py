"""The same registered model on Apache Spark: Parquet of paragraphs in, scored Parquet out.

    from pipeline.scoring.spark import score_parquet_spark
    score_parquet_spark("in.parquet", "out/paragraphs.parquet", model_uri=None, master="local[2]")

or `stance score in.parquet --out out --engine spark --master local[*]`. The model is loaded once
on the driver (default: the registered champion) and shipped to the executors inside the
`mapInPandas` closure; each Arrow batch is scored with `pipeline.scoring.core.score_paragraphs`,
the very function the local engine uses, so the output columns and values are identical to
`stance score ... --unit paragraph` row for row (ids are the input ids).

On a cluster: the executors need this package and its dependencies (same versions as the
driver). Either install it on every node, or ship it, then point the master at the cluster:

    python -m build --wheel                      # or: zip -r pipeline.zip pipeline
    spark-submit --master spark://HOST:7077 --py-files dist/stance_pipeline-*.whl \\
        -m pipeline.cli score s3a://bucket/paragraphs/ --out s3a://bucket/scored --engine spark
    # or from a driver with the package installed:
    stance score hdfs:///data/paragraphs --out /shared/scored --engine spark --master spark://HOST:7077

(`--master yarn` / `k8s://...` work the same way.) Input and output paths may be any URI Spark
reads (hdfs://, s3a://, file://). Rows with a null or empty text are counted and left out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import pandas as pd

from pipeline.scoring import core
from pipeline.scoring.readers import ReadOptions, UsageError, text_or_none
from pipeline.scoring.writers import arrow_schema


def _spark_ddl(arrow) -> str:
    kinds = {"int64": "bigint", "double": "double", "string": "string"}
    return ", ".join(f"`{f.name}` {kinds[str(f.type)]}" for f in arrow)


def _session(master: str):
    """A Spark session; in local mode the Python workers run this interpreter (the one with the
    package and its dependencies), not whatever `python3` is first on PATH."""
    import os
    import sys

    from pyspark.sql import SparkSession

    if master.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return (SparkSession.builder.master(master).appName("stance-score")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .config("spark.sql.shuffle.partitions", "8")
            .getOrCreate())


def score_parquet_spark(input_path: str, output_path: str, model_uri: str | None = None, master: str = "local[2]",
                        options: ReadOptions = ReadOptions(), model=None) -> dict:
    """Score a Parquet table of paragraphs (columns options.id_col/text_col, optional source/date/url)
    on Spark and write the paragraph table to `output_path` (a Parquet folder). Returns counts."""
    if model is None:
        from pipeline.champion import load_champion

        model = load_champion(model_uri)
    spark = _session(master)
    frame = spark.read.parquet(str(input_path))
    missing = [c for c in (options.id_col, options.text_col) if c not in frame.columns]
    if missing:
        raise UsageError(f"{input_path}: missing column(s) {', '.join(map(repr, missing))} "
                         f"(columns: {', '.join(frame.columns)})")
    meta = {key: col for key, col in (("source", options.source_col), ("date", options.date_col),
                                       ("url", options.url_col)) if col in frame.columns}
    from pyspark.sql import functions as F

    text = F.col(options.text_col)
    valid = text.isNotNull() & (F.length(F.trim(text)) > 0) & F.col(options.id_col).isNotNull()
    frame = frame.select(options.id_col, options.text_col, *meta.values())
    total = frame.count()
    valid_frame = frame.where(valid)
    id_col, text_col = options.id_col, options.text_col

    def score_batches(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        for batch in batches:
            ids = batch[id_col].astype(str)
            rows = pd.DataFrame({
                "id": ids, "doc_id": ids, "article_index": 0, "title": None, "paragraph_index": 0,
                "text": batch[text_col].str.strip(),
                **{key: [text_or_none(v) for v in batch[meta[key]]] if key in meta else None
                   for key in ("source", "date", "url")},
            }, columns=core.BASE_COLUMNS)
            yield core.score_paragraphs(model, rows)

    schema = _spark_ddl(arrow_schema(core.paragraph_columns(model.schema), model.schema))
    valid_frame.mapInPandas(score_batches, schema).write.mode("overwrite").parquet(str(output_path))
    scored = spark.read.parquet(str(output_path)).count()
    return {"rows": total, "paragraphs": scored, "skipped_rows": total - scored}


def run_spark_cli(inputs: list[str], out: Path, model_uri: str | None, options: ReadOptions, master: str,
                  console) -> int:
    """`--engine spark`: one Parquet input (file or folder) -> OUT/paragraphs.parquet + OUT/summary.json."""
    if options.unit != "paragraph":
        raise UsageError("--engine spark scores paragraph rows only (--unit paragraph)")
    if len(inputs) != 1 or not (inputs[0].endswith(".parquet") or Path(inputs[0]).is_dir() or "://" in inputs[0]):
        raise UsageError("--engine spark takes one Parquet input (a file or a folder of Parquet files)")
    out = Path(out)
    with console.status(f"scoring on Spark ({master})"):
        counts = score_parquet_spark(inputs[0], str(out / "paragraphs.parquet"), model_uri, master, options)
        _session(master).stop()
    summary = {"engine": "spark", "master": master, "model": model_uri or "champion", "inputs": inputs, **counts}
    (out / "summary.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    console.print(f"{counts['paragraphs']} paragraphs scored on Spark -> {out / 'paragraphs.parquet'}; "
                  f"{counts['skipped_rows']} rows with no text skipped")
    return 1 if counts["skipped_rows"] else 0
