"""Paragraphs/second of `stance score` vs a Hugging Face `pipeline("text-classification")` baseline.

Same model, same paragraphs, same process. For a transformer StanceModel (one sequence
classifier per task) the baseline runs `transformers.pipeline("text-classification")` on each
task's model, as a user would without this tool; our path is `pipeline.scoring.core.score_paragraphs`
(length-bucketed batches, inference mode, all cores; int8 when the model's families support it and
agree with fp32 on >= 99% of labels). For a scikit-learn champion there is no HF baseline: it
reports paragraphs/s (target >= 20,000/s) of the core and of a full end-to-end `stance score` run.

    python benchmarks/score_speed.py                      # the registered champion
    python benchmarks/score_speed.py --model models/tfidf_lr
    python benchmarks/score_speed.py --build-finetune     # fine-tune MiniLM briefly on the seeds, then compare
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from rich.console import Console  # noqa: E402

from pipeline.config import resolve  # noqa: E402
from pipeline.schema import load_schema  # noqa: E402
from pipeline.segment import segment_text  # noqa: E402

console = Console(stderr=True)


def seed_paragraphs() -> list[str]:
    folder = resolve("data/raw")
    if not any(folder.glob("*.txt")):
        folder = resolve("../shared/seeds")
    return [p for f in sorted(folder.glob("*.txt")) for a in segment_text(f.read_text(encoding="utf-8"))
            for p in a.paragraphs]


def bench_paragraphs(n: int) -> list[str]:
    """n distinct paragraphs with the seeds' length distribution (no cache can short-circuit them)."""
    base = seed_paragraphs()
    return [f"{base[i % len(base)]} [{i}]" for i in range(n)]


def build_finetune(folder: Path, epochs: int):
    from pipeline.model import StanceModel

    schema = load_schema()
    texts = seed_paragraphs()
    data = {t: (texts, [schema.labels(t)[i % len(schema.labels(t))] for i in range(len(texts))])
            for t in schema.task_names}
    console.print(f"fine-tuning MiniLM on {len(texts)} seed paragraphs x {len(schema.task_names)} tasks "
                  f"({epochs} epoch)")
    StanceModel.fit(schema, "finetune", {"epochs": epochs}, 0, data).save(folder)
    return folder


def timed(fn, texts) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(texts)
    return len(texts) / (time.perf_counter() - start), result


def ours(model, texts):
    """The scoring core `stance score` runs per batch (model may be a core.ParallelScorer)."""
    import pandas as pd

    from pipeline.scoring import core

    frame = pd.DataFrame({"id": [str(i) for i in range(len(texts))], "doc_id": [str(i) for i in range(len(texts))],
                          "article_index": 0, "title": None, "paragraph_index": 0, "text": texts,
                          "source": None, "date": None, "url": None})
    return core.score_paragraphs(model, frame)


def end_to_end(model, texts) -> float:
    """A full `stance score` run (JSONL in, Parquet tables + report out) on the same paragraphs."""
    from pipeline.scoring.runner import run_local

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in.jsonl"
        src.write_text("".join(json.dumps({"id": str(i), "text": t}) + "\n" for i, t in enumerate(texts)),
                       encoding="utf-8")
        start = time.perf_counter()
        run_local([str(src)], Path(tmp) / "out", model, "bench", console=Console(stderr=True, quiet=True))
        return len(texts) / (time.perf_counter() - start)


def hf_baseline(model, texts, batch_size: int):
    from transformers import pipeline

    labels = {}
    for task, clf in model.classifiers.items():
        classify = pipeline("text-classification", model=clf._model, tokenizer=clf._tokenizer, device="cpu",
                            top_k=None, truncation=True, max_length=clf.params.max_length)
        out = classify(texts, batch_size=batch_size)
        labels[task] = [max(scores, key=lambda s: s["score"])["label"] for scores in out]
    return labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model folder or MLflow URI [default: registered champion]")
    parser.add_argument("--build-finetune", action="store_true", help="benchmark a briefly fine-tuned MiniLM")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("-n", "--paragraphs", type=int, default=None,
                        help="paragraphs to score [default: 20000 scikit-learn, 1000 transformer]")
    args = parser.parse_args()

    import torch

    from pipeline.tracking import load_champion

    tmp = tempfile.TemporaryDirectory()
    model_ref = str(build_finetune(Path(tmp.name) / "finetune", args.epochs)) if args.build_finetune else args.model
    model = load_champion(model_ref)
    transformer = all(hasattr(c, "_model") and hasattr(c, "set_quantized") for c in model.classifiers.values())
    n = args.paragraphs or (1000 if transformer else 20000)
    texts = bench_paragraphs(n)
    figures = {"model": model_ref or "champion", "family": model.family, "paragraphs": n,
               "threads": torch.get_num_threads(), "cpus": os.cpu_count()}
    ours(model, texts[:64])  # warm-up: lazy imports, first-call allocations

    if not transformer:
        from pipeline.scoring.core import make_scorer

        figures["ours_core_1_process_per_s"], _ = timed(lambda t: ours(model, t), texts)
        scorer = make_scorer(model, None)
        ours(scorer, texts[:512])  # start the worker processes outside the timing
        figures["workers"] = getattr(scorer, "workers", 1)
        figures["ours_core_per_s"], _ = timed(lambda t: ours(scorer, t), texts)
        if scorer is not model:
            scorer.close()
        figures["ours_end_to_end_per_s"] = end_to_end(model, texts)
        figures["target_per_s"] = 20000
    else:
        from pipeline.models import int8_agreement

        for clf in model.classifiers.values():
            clf.set_quantized(False)
        figures["ours_fp32_per_s"], fp32 = timed(lambda t: ours(model, t), texts)
        agreement = min(int8_agreement(clf, texts[:500]) for clf in model.classifiers.values())
        figures["int8_label_agreement"] = agreement
        for clf in model.classifiers.values():
            clf.set_quantized(True)
        figures["ours_int8_per_s"], int8 = timed(lambda t: ours(model, t), texts)
        use_int8 = agreement >= 0.99
        figures["ours_per_s"] = figures["ours_int8_per_s" if use_int8 else "ours_fp32_per_s"]
        figures["ours_uses"] = "int8" if use_int8 else "fp32 (int8 agreement < 99%)"
        for clf in model.classifiers.values():
            clf.set_quantized(use_int8)
        figures["ours_end_to_end_per_s"] = end_to_end(model, texts)
        for clf in model.classifiers.values():
            clf.set_quantized(False)
        figures["hf_pipeline_per_s"], hf = timed(lambda t: hf_baseline(model, t, 1), texts)
        figures["hf_pipeline_batch32_per_s"], _ = timed(lambda t: hf_baseline(model, t, 32), texts)
        figures["fp32_labels_equal_hf"] = float(min(
            (fp32[task] == hf[task]).mean() for task in model.schema.task_names))
        figures["ratio_vs_hf_pipeline"] = figures["ours_per_s"] / figures["hf_pipeline_per_s"]
        figures["ratio_vs_hf_pipeline_batch32"] = figures["ours_per_s"] / figures["hf_pipeline_batch32_per_s"]
        figures["ratio_end_to_end_vs_hf_pipeline"] = figures["ours_end_to_end_per_s"] / figures["hf_pipeline_per_s"]
    print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}, indent=2))
    if transformer:
        print(f"ratio (ours / HF pipeline): {figures['ratio_vs_hf_pipeline']:.2f}x", file=sys.stdout)
    tmp.cleanup()


if __name__ == "__main__":
    main()
