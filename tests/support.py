"""Helpers the tests share (fixtures built on them live in conftest.py): the repository root, a tiny
real model, and for the annotation tests a tiny project folder and a real server process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
RAW = REPO / "data" / "raw"
SCRIPT_TEXT = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> Beijing & Moscow "ties"'


def make_project(root: Path, n_paragraphs: int = 12, script_paragraph: bool = False, retrain_every: int = 10) -> Path:
    """params.yaml (fast model on the small minilm encoder) + the real label schema + a small paragraphs
    parquet (three articles)."""
    (root / "labels").mkdir(parents=True)
    (root / "data").mkdir()
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params["models"]["embed_lr"].update(encoder="minilm", max_length=64)
    params["annotate"]["queue"]["retrain_every"] = retrain_every
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    shutil.copy(REPO / "labels" / "schema.yaml", root / "labels" / "schema.yaml")
    (root / "labels" / "GUIDELINES.md").write_text("# Guidelines\n\nLabel what the paragraph itself says.\n")
    sentences = [
        "Moscow and Beijing signed a new energy deal, deepening a partnership both sides call unbreakable.",
        "Analysts note that Russia increasingly depends on China, an asymmetry that breeds quiet resentment.",
        "Chinese firms kept shipping dual-use components that Russia's arms industry needs for the war.",
        "Beijing insists it is a neutral party and has offered a peace plan for Ukraine.",
        "Trade between the two countries fell for the third month in a row, customs data show.",
        "The summit ended with a joint statement on coordination at the United Nations.",
    ]
    rows = []
    for i in range(n_paragraphs):
        article = i // 4
        rows.append({"paragraph_id": f"p{i:02d}", "source": f"source_{article}.txt", "article_index": 0,
                     "paragraph_index": i % 4, "title": f"Article {article}: Russia and China",
                     "on_topic": not script_paragraph, "text": f"{sentences[i % len(sentences)]} (#{i})"})
    if script_paragraph:
        rows[0].update(text=SCRIPT_TEXT, on_topic=True)
    pd.DataFrame(rows).to_parquet(root / "data" / "paragraphs.parquet", index=False)
    return root


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def project_env(root: Path) -> dict[str, str]:
    return {**os.environ, "STANCE_ROOT": str(root), "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
            "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


class Server:
    """`stance annotate` in a subprocess on a free 127.0.0.1 port."""

    def __init__(self, root: Path, port: int | None = None, args: tuple[str, ...] = (), group_options: bool = False):
        self.root = root
        self.port = port or free_port()
        port_option = ["--port", str(self.port)]  # on `serve`, or on the `annotate` group before it
        self.args = ["annotate", *port_option, "serve"] if group_options else ["annotate", "serve", *port_option]
        self.args += list(args)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(root / f"server-{self.port}.log", "ab")
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> "Server":
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.cli", *self.args],
            cwd=self.root, env=project_env(self.root), stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {(self.root / f'server-{self.port}.log').read_text()}")
            try:
                urllib.request.urlopen(self.url + "/", timeout=2).read()
                return self
            except OSError:
                time.sleep(0.2)
        raise TimeoutError("server did not start")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


def wait_for_mirror(path: Path, condition, timeout: float = 30) -> list[str]:
    """The app rewrites annotations.jsonl in batches: its lines once `condition(lines)` holds
    (or at the timeout, for the caller's assertion to fail on)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = path.read_text(encoding="utf-8").split("\n")[:-1] if path.exists() else []
        if condition(lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.1)


def add_annotator(root: Path, name: str) -> str:
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "annotate", "add-annotator", name], cwd=root,
                         env=project_env(root), capture_output=True, text=True, check=True)
    return out.stdout.strip()


def call(url: str, method: str = "GET", body: dict | None = None, name: str | None = None,
         token: str | None = None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if name is not None:
        headers["X-Annotator"] = name
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def seed_labels(root: Path, schema, paragraphs: range, annotator: str = "expert") -> None:
    """Labels in annotations.jsonl (as committed expert labels are), cycling through the classes."""
    lines = [json.dumps({"paragraph_id": f"p{i:02d}", "task": task, "label": schema.labels(task)[i % 3],
                         "annotator": annotator, "rationale": ""})
             for i in paragraphs for task in schema.task_names]
    (root / "labels" / "annotations.jsonl").write_text("".join(line + "\n" for line in sorted(lines)), encoding="utf-8")


def wait_for_ranking(server: Server, name: str, token: str, condition, timeout: float = 120) -> dict:
    """/api/stats once `condition(stats)` holds (the learning loop works in the background)."""
    deadline = time.monotonic() + timeout
    while True:
        status, stats = call(server.url + "/api/stats", name=name, token=token)
        if status == 200 and condition(stats):
            return stats
        if time.monotonic() > deadline:
            raise TimeoutError(f"ranking not reached: {stats}")
        time.sleep(0.2)


def tiny_model(folder: Path, texts: list[str]) -> Path:
    """A real StanceModel trained on `texts` with labels cycling through each task's classes."""
    from pipeline.model import StanceModel
    from pipeline.schema import load_schema

    schema = load_schema(REPO / "labels" / "schema.yaml")
    data = {t: (texts, [schema.labels(t)[i % len(schema.labels(t))] for i in range(len(texts))])
            for t in schema.task_names}
    StanceModel.fit(schema, "tfidf_lr", {}, 0, data).save(folder)
    return folder


EXAMPLE = REPO / "examples" / "stance_tweets"  # a second domain: tweets with three stance tasks


def stance(root: Path, *args: str) -> subprocess.CompletedProcess:
    """One `stance` command in `root`, as a user runs it (a new process, cwd = the project)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "STANCE_ROOT": str(root), "COLUMNS": "1000",
           "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=900)
