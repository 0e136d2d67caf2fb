"""Scoring speed of every model family against what a user would write with Hugging Face, plus
segmentation time and peak memory; one JSON object on the last line of stdout.

    python benchmarks/score_speed.py --all                  # every family, tiny models trained here
    python benchmarks/score_speed.py --all --model-dir finetune=models/finetune
    python benchmarks/score_speed.py                        # the registered champion only

Per family (each measured in its own subprocess, so peak RSS is that family's):
- `ours_per_s`: `StanceModel.predict` in one process (the call every scoring path makes), on distinct
  paragraphs with the seed corpus' length distribution.
- `end_to_end_per_s`: `stance score in.parquet --out out.parquet` (read, check, score, write).
- `hf_per_s` / `ratio_vs_hf`: the baseline a user would write (transformers: medians of TIMING_ROUNDS
  alternating timings of both, each round in `timing_rounds`). finetune: `pipeline("text-classification")`
  per task; embed_lr: the textbook transformers loop, one paragraph at a time through the fp32 encoder, the
  model's pooled layers mean-pooled (what `pipeline("feature-extraction")` does for the last layer; it cannot
  return a middle one), then each task's head; setfit: the same per task (each task has its own trained
  encoder). None for scikit-learn.
- `label_agreement_vs_fp32`: labels at the precision we score with against fp32 labels, on the benchmark
  paragraphs. The precision is chosen as training chooses it (pipeline/precision.py): the fastest of
  fp32/bf16/int8 whose labels agree with fp32 on >= 99% of a fixed real paragraph set (the first seed
  paragraphs); `precision` holds the choice, each candidate's speed and agreement.
- `peak_rss_mb_1m`: peak RSS of a streamed Parquet -> Parquet run over `rows_scored` generated paragraphs
  (1,000,000 for scikit-learn; a bounded prefix for transformer families on a small CPU, see `rows_scored`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
TRANSFORMER_FAMILIES = {"embed_lr", "setfit", "finetune"}
# benchmarked models: name -> (family, overrides of its params.yaml config). Training is brief (the
# benchmark measures scoring); tfidf_lr_char adds character n-grams to the params.yaml baseline (word n-grams).
VARIANTS = {"tfidf_lr": ("tfidf_lr", {}), "tfidf_lr_char": ("tfidf_lr", {"char_ngrams": True}),
            "embed_lr": ("embed_lr", {}), "setfit": ("setfit", {"max_pairs": 64}),
            "finetune": ("finetune", {"epochs": 1})}
TRAIN_PARAGRAPHS = 200
# rows of the memory run: 1M where a 2-core machine scores them in minutes, a bounded prefix elsewhere
DEFAULT_RSS_ROWS = {"tfidf_lr": 1_000_000, "tfidf_lr_char": 200_000}
AGREEMENT_PARAGRAPHS = 200  # the fixed real paragraph set (first seed paragraphs) a precision must agree on
# a transformer's speed and its baseline's are timed in alternating rounds, each on fresh paragraphs; the
# ratio is of their medians, so a short stall of the machine in one timing does not decide it (single
# timings had put the embed_lr ratio anywhere from 4.3 to 5.5 on the same model)
TIMING_ROUNDS = 3


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def seed_paragraphs() -> list[str]:
    from pipeline.segment import segment_text

    files = sorted((REPO / "data" / "raw").rglob("*.txt"))
    if not files:
        raise SystemExit(f"{REPO / 'data' / 'raw'}: no seed corpus; run `dvc pull data/raw.dvc` first")
    return [p for f in files for a in segment_text(f.read_text(encoding="utf-8")) for p in a.paragraphs]


def bench_paragraphs(n: int, tag: str) -> list[str]:
    """n distinct paragraphs with the seeds' length distribution; `tag` keeps every measurement's
    texts distinct, so no embedding memo can short-circuit one."""
    base = seed_paragraphs()
    return [f"{base[i % len(base)]} [{tag}{i}]" for i in range(n)]


def segmentation_1mb_s() -> float:
    """Seconds to segment 1 MB of one article's distinct paragraphs (best of 3)."""
    from pipeline.segment import segment_text

    base = seed_paragraphs()
    parts, size, i = [], 0, 0
    while size < 1_000_000:
        parts.append(f"{base[i % len(base)]} ({i})")
        size += len(parts[-1]) + 2
        i += 1
    text = "\n\n".join(parts)
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        segment_text(text)
        best = min(best, time.perf_counter() - start)
    return best


def train_tiny(name: str, folder: Path) -> Path:
    from pipeline.config import load_params
    from pipeline.model import StanceModel
    from pipeline.schema import load_schema

    schema = load_schema()
    texts = seed_paragraphs()[:TRAIN_PARAGRAPHS]
    data = {t: (texts, [schema.labels(t)[i % len(schema.labels(t))] for i in range(len(texts))])
            for t in schema.task_names}
    family, overrides = VARIANTS[name]
    hyper = {**load_params().models.get(family, {}), **overrides}
    log(f"training a tiny {name} model on {len(texts)} seed paragraphs")
    StanceModel.fit(schema, family, hyper, 0, data).save(folder)
    return folder


def timed(fn, texts) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(texts)
    return len(texts) / (time.perf_counter() - start), result


def ours(model, texts):
    """Labels per task from `StanceModel.predict`, what every scoring path calls (the torch families run
    in inference mode on every usable core themselves)."""
    return model.predict(texts)


def write_table(path: Path, texts_for, rows: int, chunk: int = 50_000) -> None:
    """A paragraph Parquet table of `rows` rows, written chunk by chunk."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer = None
    for start in range(0, rows, chunk):
        count = min(chunk, rows - start)
        table = pa.table({"id": [f"p{start + i}" for i in range(count)], "text": texts_for(start, count)})
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


def end_to_end(model, path: Path, out: Path) -> float:
    from rich.console import Console

    from pipeline.scoring.runner import run_local

    start = time.perf_counter()
    result = run_local([str(path)], out, model, "bench", console=Console(stderr=True, quiet=True))
    return result.summary["paragraphs"] / (time.perf_counter() - start)


def hf_labels(model, texts: list[str]) -> dict[str, list[str]]:
    """What a user would write with transformers for this model's family (see the module docstring)."""
    import numpy as np
    from transformers import pipeline

    out = {}
    if model.family == "finetune":
        for task, clf in model.classifiers.items():
            classify = pipeline("text-classification", model=clf._model, tokenizer=clf._tokenizer, device="cpu",
                                top_k=None, truncation=True, max_length=clf.params.max_length)
            results = classify(texts, batch_size=1)
            index = {f"LABEL_{i}": name for i, name in enumerate(clf.classes)}
            out[task] = [index.get(best["label"], best["label"]) for best in
                         (max(scores, key=lambda s: s["score"]) for scores in results)]
        return out

    def embed(encoder, tokenizer, max_length: int, layers=(-1,)) -> np.ndarray:
        """The textbook loop: one paragraph at a time through the fp32 encoder, each chosen layer's hidden
        states mean-pooled and normalised, side by side."""
        import torch

        rows = []
        with torch.inference_mode():
            for text in texts:
                states = encoder(**tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt"),
                                 output_hidden_states=True).hidden_states
                blocks = [states[i][0].mean(dim=0).numpy() for i in layers]
                rows.append(np.concatenate([b / np.linalg.norm(b) for b in blocks]))
        return np.stack(rows)

    if model.family == "embed_lr":
        from transformers import AutoModel, AutoTokenizer

        from pipeline.models.weights import encoder_dir

        first = next(iter(model.classifiers.values()))
        folder = first._encoder_dir or encoder_dir(first.params.encoder)  # loaded as a user would, not prepacked
        encoder = AutoModel.from_pretrained(folder, use_safetensors=True).eval()
        shared = embed(encoder, AutoTokenizer.from_pretrained(folder), first.params.max_length, first.params.layers)
    for task, clf in model.classifiers.items():
        vectors = shared if model.family == "embed_lr" else embed(clf._model, clf._tokenizer, clf.params.max_length)
        out[task] = [clf.classes[i] for i in clf._head.predict_proba(vectors).argmax(axis=1)]
    return out


def measure(family: str, model_dir: Path, n: int, rss_rows: int, work: Path) -> dict:
    """One family's figures, in this (child) process."""
    import torch

    from pipeline.model import StanceModel

    torch.set_num_threads(os.cpu_count() or 1)
    model = StanceModel.load(model_dir)
    transformer = family in TRANSFORMER_FAMILIES
    ours(model, bench_paragraphs(32, "warm"))  # lazy imports, first-call allocations
    figures: dict = {"paragraphs": n}
    if transformer:
        from pipeline.precision import agreement, choose_precision

        choice = choose_precision(model, seed_paragraphs()[:AGREEMENT_PARAGRAPHS], "auto")
        figures["precision"] = choice
        model.set_precision("fp32")
        _, fp32 = timed(lambda t: ours(model, t), bench_paragraphs(n, "a"))
        hf_labels(model, bench_paragraphs(8, "warm"))  # the baseline's first calls are slow too: warm both
        speeds: dict[str, list[float]] = {"hf_per_s": [], "ours_per_s": []}
        for r in range(TIMING_ROUNDS):
            # fresh texts every time: embed_lr's encoder remembers every text it embedded
            model.set_precision("fp32")
            per_s, hf = timed(lambda t: hf_labels(model, t), bench_paragraphs(n, f"c{r}"))
            speeds["hf_per_s"].append(per_s)
            if r == 0:
                figures["hf_labels_equal_ours_fp32"] = agreement(hf, ours(model, bench_paragraphs(n, "c0")))
            model.set_precision(choice["precision"])
            speeds["ours_per_s"].append(timed(lambda t: ours(model, t), bench_paragraphs(n, f"d{r}"))[0])
        figures.update({name: statistics.median(values) for name, values in speeds.items()})
        figures["timing_rounds"] = speeds
        figures["label_agreement_vs_fp32"] = agreement(ours(model, bench_paragraphs(n, "a")), fp32)
        figures["ratio_vs_hf"] = figures["ours_per_s"] / figures["hf_per_s"]
    else:
        figures["ours_per_s"], _ = timed(lambda t: ours(model, t), bench_paragraphs(n, "a"))
        figures["label_agreement_vs_fp32"] = 1.0  # float64 throughout, no reduced-precision variant
        figures["ratio_vs_hf"] = None
    base = seed_paragraphs()
    rows_texts = (lambda start, count: [f"{base[(start + i) % len(base)]} [e{start + i}]" for i in range(count)])
    write_table(work / "e2e.parquet", rows_texts, n)
    figures["end_to_end_per_s"] = end_to_end(model, work / "e2e.parquet", work / "e2e-out.parquet")
    return figures


def peak_rss(family: str, model_dir: Path, rows: int, work: Path, precision: str | None) -> dict:
    """Peak RSS (MB) of a streamed Parquet -> Parquet run over `rows` paragraphs, in this (child) process;
    worker processes' peaks are added (an upper bound of the total)."""
    from pipeline.model import StanceModel

    base = seed_paragraphs()
    path = work / "rss.parquet"
    write_table(path, lambda start, count: [f"{base[(start + i) % len(base)]} [r{start + i}]" for i in range(count)],
                rows)
    model = StanceModel.load(model_dir)
    if precision:
        model.set_precision(precision)  # as the timing run chose it; only that precision's weights are loaded
    per_s = end_to_end(model, path, work / "rss-out.parquet")
    own = own_peak_rss_mb()
    from pipeline.scoring.workers import scoring_workers

    workers = scoring_workers(None)
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 * (workers if workers > 1 else 0)
    return {"peak_rss_mb": own + children, "rows_scored": rows, "per_s": per_s, "workers": workers}


def own_peak_rss_mb() -> float:
    """This process's peak RSS since it started. Linux's VmHWM, not getrusage's ru_maxrss: after exec,
    ru_maxrss still counts the RSS of the parent it was forked from (the benchmark's, which trained models)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(args) -> None:
    work = Path(tempfile.mkdtemp(prefix="score-speed-"))
    if args.child == "measure":
        result = measure(args.family, Path(args.model_dir[0]), args.paragraphs, args.rss_rows, work)
    else:
        result = peak_rss(args.family, Path(args.model_dir[0]), args.rss_rows, work, args.precision)
    print(json.dumps(result))


def run_child(kind: str, family: str, model_dir: Path, paragraphs: int, rss_rows: int,
              precision: str | None = None) -> dict:
    command = [sys.executable, __file__, "--child", kind, "--family", family, "--model-dir", str(model_dir),
               "-n", str(paragraphs), "--rss-rows", str(rss_rows)] + (["--precision", precision] if precision else [])
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, cwd=REPO, env={**os.environ})
    if done.returncode != 0:
        return {"error": f"{kind} failed with exit status {done.returncode} (see stderr)"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--all", action="store_true", help="every model family (tiny models trained here unless given)")
    parser.add_argument("--families", help=f"with --all: only these, comma-separated (of {', '.join(VARIANTS)})")
    parser.add_argument("--model-dir", action="append", default=[], metavar="FAMILY=FOLDER",
                        help="a trained model folder for a family (repeatable)")
    parser.add_argument("--model", help="without --all: model folder or MLflow URI [default: registered champion]")
    parser.add_argument("-n", "--paragraphs", type=int, default=None,
                        help="paragraphs per timing [default: 20000 scikit-learn, 120 transformer]")
    parser.add_argument("--rss-rows", type=int, default=None,
                        help="rows of the memory run [default: 1,000,000 TF-IDF (word n-grams), 200,000 TF-IDF with "
                             "char n-grams, 600 transformer]")
    parser.add_argument("--child", choices=["measure", "rss"], help=argparse.SUPPRESS)
    parser.add_argument("--family", help=argparse.SUPPRESS)
    parser.add_argument("--precision", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    tmp = tempfile.TemporaryDirectory(prefix="score-speed-models-")
    given = dict(item.split("=", 1) for item in args.model_dir)
    if args.all:
        wanted = args.families.split(",") if args.families else list(VARIANTS)
        folders = {f: Path(given[f]) if f in given else train_tiny(f, Path(tmp.name) / f) for f in wanted}
    else:
        from pipeline.champion import load_champion

        model = load_champion(args.model)
        folder = Path(tmp.name) / "model"
        model.save(folder)
        folders = {model.family: folder}

    report: dict = {"cpus": os.cpu_count(), "families": {}, "peak_rss_mb_1m": {}, "rows_scored": {}}
    report["segmentation_1mb_s"] = segmentation_1mb_s()
    for family, folder in folders.items():
        transformer = family in TRANSFORMER_FAMILIES
        n = args.paragraphs or (120 if transformer else 20000)
        rows = args.rss_rows or DEFAULT_RSS_ROWS.get(family, 600)
        log(f"{family}: timing on {n} paragraphs")
        report["families"][family] = run_child("measure", family, folder, n, rows)
        log(f"{family}: memory over {rows} streamed paragraphs")
        chosen = (report["families"][family].get("precision") or {}).get("precision")
        memory = run_child("rss", family, folder, n, rows, chosen)
        report["peak_rss_mb_1m"][family] = memory.get("peak_rss_mb")
        report["rows_scored"][family] = memory.get("rows_scored")
        report["families"][family]["rss_run_per_s"] = memory.get("per_s")
        log(json.dumps({family: report["families"][family]}))
    tmp.cleanup()
    print(json.dumps(_rounded(report)))


def _rounded(value):
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


if __name__ == "__main__":
    main()
