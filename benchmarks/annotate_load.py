"""Load and fault test of the annotation server: N annotators x M labels over HTTP on loopback,
a kill -9 of the server half-way, a restart on the same port, and the rest of the labels.

Each annotator is a thread with its own keep-alive connection that POSTs /api/labels one after
another and retries a label until the (restarted) server acknowledges it, as the app does.
At the end the server is stopped normally and every acknowledged label is looked up in the
SQLite store and in annotations.jsonl. Prints JSON:

    acknowledged, lost (acknowledged but in neither file: must be 0), labels_per_s (acknowledged
    over the whole wall time, restart included; labels_per_s_while_serving leaves the restart
    out), p50_ms / p99_ms (per acknowledged request),
    store_size_at_end (labels), downtime_s (kill to first request served again), and as the
    baseline in the same run, mirror_rewrite_ms_at_end: what rewriting annotations.jsonl costs at
    the final size, which the old store paid on every save.

    python benchmarks/annotate_load.py                        # 20 annotators x 500 labels
    python benchmarks/annotate_load.py --annotators 4 --labels 50
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.annotate.store import LabelStore  # noqa: E402
from pipeline.labels import load_annotations  # noqa: E402
from pipeline.schema import load_schema  # noqa: E402


def make_project(root: Path, n_paragraphs: int) -> None:
    """params.yaml + the real label schema + `n_paragraphs` paragraphs."""
    (root / "labels").mkdir(parents=True)
    (root / "data").mkdir()
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    shutil.copy(REPO / "labels" / "schema.yaml", root / "labels" / "schema.yaml")
    rows = [{"paragraph_id": f"p{i:05d}", "source": f"source_{i // 10}.txt", "article_index": 0,
             "paragraph_index": i % 10, "title": f"Article {i // 10}", "on_topic": True,
             "text": f"Moscow and Beijing signed a new energy deal, paragraph {i}."} for i in range(n_paragraphs)]
    pd.DataFrame(rows).to_parquet(root / "data" / "paragraphs.parquet", index=False)


class Server:
    def __init__(self, root: Path, port: int):
        self.root, self.port = root, port
        self.log = open(root / "server.log", "ab")
        self.proc: subprocess.Popen | None = None

    def start(self) -> float:
        """Start and wait until it answers; returns the time that took."""
        started = time.monotonic()
        env = {**os.environ, "STANCE_ROOT": str(self.root), "HF_HUB_OFFLINE": "1",
               "MLFLOW_TRACKING_URI": f"sqlite:///{self.root / 'mlflow.db'}", "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "annotate", "serve", "--port",
                                      str(self.port)], cwd=self.root, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError((self.root / "server.log").read_text())
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=2).read()
                return time.monotonic() - started
            except OSError:
                time.sleep(0.1)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=60)


def annotator(port: int, name: str, token: str, work: list[dict], acked: list, latencies: list,
              counter: list, lock: threading.Lock) -> None:
    headers = {"Content-Type": "application/json", "X-Annotator": name, "Authorization": f"Bearer {token}"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for body in work:
        data = json.dumps(body).encode()
        while True:
            started = time.perf_counter()
            try:
                conn.request("POST", "/api/labels", data, headers)
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    break
                raise RuntimeError(f"HTTP {response.status}")
            except (OSError, http.client.HTTPException):
                conn.close()  # server killed: reconnect and send the same label again
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                time.sleep(0.05)
        elapsed = time.perf_counter() - started
        with lock:
            acked.append((body["paragraph_id"], body["task"], name, body["label"]))
            latencies.append(elapsed)
            counter[0] += 1
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--annotators", type=int, default=20)
    parser.add_argument("--labels", type=int, default=500, help="labels per annotator")
    parser.add_argument("--kill-at", type=float, default=0.5, help="share of all labels acknowledged before kill -9")
    args = parser.parse_args()

    schema = load_schema(REPO / "labels" / "schema.yaml")
    tasks = schema.task_names
    n_paragraphs = -(-args.labels // len(tasks))
    total = args.annotators * args.labels
    with tempfile.TemporaryDirectory(prefix="annotate_load_") as tmp:
        root = Path(tmp)
        make_project(root, n_paragraphs)
        store = LabelStore(root / "labels" / "store.sqlite", root / "labels" / "annotations.jsonl")
        names = [f"annotator{i:02d}" for i in range(args.annotators)]
        tokens = {name: store.add_annotator(name) for name in names}
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        server = Server(root, port)
        server.start()

        acked: list[tuple] = []
        latencies: list[float] = []
        counter, lock = [0], threading.Lock()
        threads = []
        for k, name in enumerate(names):
            work = [{"paragraph_id": f"p{i // len(tasks):05d}", "task": tasks[i % len(tasks)],
                     "label": schema.labels(tasks[i % len(tasks)])[(i + k) % len(schema.labels(tasks[i % len(tasks)]))]}
                    for i in range(args.labels)]
            threads.append(threading.Thread(target=annotator, args=(port, name, tokens[name], work, acked,
                                                                    latencies, counter, lock)))
        started = time.monotonic()
        for thread in threads:
            thread.start()
        while counter[0] < args.kill_at * total:
            time.sleep(0.01)
        killed_at = time.monotonic()
        acked_before_kill = counter[0]
        server.kill()
        server.start()
        downtime = time.monotonic() - killed_at
        for thread in threads:
            thread.join()
        wall = time.monotonic() - started
        server.stop()  # normal shutdown: the mirror is brought up to date

        with sqlite3.connect(root / "labels" / "store.sqlite") as conn:
            in_sqlite = set(conn.execute("SELECT paragraph_id, task, annotator, label FROM labels"))
        in_jsonl = {(a.paragraph_id, a.task, a.annotator, a.label)
                    for a in load_annotations(root / "labels" / "annotations.jsonl", schema)}
        acked_set = set(acked)
        rewrite_started = time.perf_counter()
        store.sync_mirror()
        rewrite_ms = (time.perf_counter() - rewrite_started) * 1000
        ms = np.array(latencies) * 1000
        print(json.dumps({
            "annotators": args.annotators, "labels_per_annotator": args.labels,
            "acknowledged": len(acked_set), "acknowledged_before_kill": acked_before_kill,
            "lost": len(acked_set - (in_sqlite & in_jsonl)),
            "missing_from_sqlite": len(acked_set - in_sqlite), "missing_from_jsonl": len(acked_set - in_jsonl),
            "labels_per_s": round(len(acked_set) / wall, 1), "wall_s": round(wall, 2),
            "labels_per_s_while_serving": round(len(acked_set) / (wall - downtime), 1),
            "downtime_s": round(downtime, 2),
            "p50_ms": round(float(np.percentile(ms, 50)), 1), "p99_ms": round(float(np.percentile(ms, 99)), 1),
            "max_ms": round(float(ms.max()), 1),
            "store_size_at_end": len(in_sqlite),
            "store_bytes_at_end": sum(p.stat().st_size for p in (root / "labels").glob("store.sqlite*")),
            "mirror_rewrite_ms_at_end": round(rewrite_ms, 1),
        }, indent=2))


if __name__ == "__main__":
    main()
