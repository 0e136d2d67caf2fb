"""--resume after SIGKILL: exactly one row per paragraph, none missing, none duplicated."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd

from support import REPO, tiny_model
from pipeline.segment import segment_text


def test_resume_after_sigkill_gives_each_paragraph_exactly_once(tmp_path, seed_files):
    paragraphs = [p for text in seed_files.values() for a in segment_text(text) for p in a.paragraphs]
    model = tiny_model(tmp_path / "model", paragraphs)
    rows = [{"id": f"r{i}", "text": f"{paragraphs[i % len(paragraphs)]} ({i})"} for i in range(800)]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "pipeline.cli", "score", str(src), "--out", str(out), "--model", str(model),
               "--batch-size", "20", "--format", "jsonl"]
    env = {**os.environ, "STANCE_ROOT": str(REPO)}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = out / "_parts" / "manifest.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if manifest.exists() and manifest.read_text(encoding="utf-8").count("\n") >= 3:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    committed = manifest.read_text(encoding="utf-8").count("\n")
    assert 3 <= committed < 800 / 20
    # what a kill at the worst moment leaves: an uncommitted part and a torn manifest line
    (out / "_parts" / "part-999999.paragraphs.parquet").write_bytes(b"partial")
    with manifest.open("a", encoding="utf-8") as handle:
        handle.write('{"part": "part-0000')

    done = subprocess.run(command + ["--resume"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["resumed_documents"] >= committed * 20
    assert summary["scored_paragraphs_this_run"] == 800 - summary["resumed_documents"]
    scored = pd.read_json(out / "paragraphs.jsonl", lines=True)
    assert len(scored) == 800 and scored["id"].is_unique
    assert set(scored["id"]) == {r["id"] for r in rows}
    articles = pd.read_json(out / "articles.jsonl", lines=True)
    assert len(articles) == 800 and articles["doc_id"].is_unique
    assert not (out / "_parts").exists()
