"""How fast the annotator's loop closes: from the 10th new label to a queue re-ranked by a refitted model.

Builds a throw-away project from this checkout's corpus (`stance ingest` of data/raw, the committed
labels, params.yaml: the fast model is embed_lr with its configured encoder), starts `stance annotate`
on loopback and waits until the learning loop has embedded every paragraph and fitted the fast model on
the committed labels (start-up; embeddings come from the on-disk cache after the first run). Then one
annotator takes paragraphs from /api/next and posts 10 labels over HTTP, accepting the suggestion shown
for each task, and the clock runs from the 10th acknowledgement until /api/stats reports a ranking
fitted on a store that holds those 10 labels. The MLflow registry is a fresh, empty one in the
throw-away project (nothing is registered or promoted); pass --model to add a champion.

Prints progress on stderr and JSON on the last stdout line: seconds_to_reranked_queue,
suggestion_shown (true when /api/next offered the model's suggestion for the labelled paragraphs),
startup_seconds, paragraphs, labels_before, fitted_on, encoder, load_average.

    python benchmarks/annotate_loop.py
    python benchmarks/annotate_loop.py --encoder minilm --model models/tfidf_lr
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.schema import load_schema  # noqa: E402


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def make_project(root: Path, retrain_every: int, encoder: str | None) -> dict:
    """params.yaml (with `retrain_every`, and `encoder` for embed_lr if given), the committed labels, and the
    corpus ingested from data/raw; returns the params."""
    (root / "labels").mkdir(parents=True)
    (root / "data").mkdir()
    params = yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    params.setdefault("annotate", {}).setdefault("queue", {})["retrain_every"] = retrain_every
    if encoder:
        params["models"]["embed_lr"]["encoder"] = encoder
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    for name in ("schema.yaml", "annotations.jsonl", "adjudications.jsonl", "GUIDELINES.md"):
        if (REPO / "labels" / name).exists():
            shutil.copy(REPO / "labels" / name, root / "labels" / name)
    if not (REPO / "data" / "raw").is_dir():
        raise SystemExit("data/raw is missing: run `dvc pull data/raw.dvc` first")
    (root / "data" / "raw").symlink_to(REPO / "data" / "raw")
    run(root, "ingest")
    return params


def env(root: Path) -> dict[str, str]:
    return {**os.environ, "STANCE_ROOT": str(root), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}", "PYTHONPATH": str(REPO)}


def run(root: Path, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", *args], cwd=root, env=env(root),
                         capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"stance {' '.join(args)} failed:\n{out.stderr}")
    return out.stdout.strip()


def call(url: str, name: str, token: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None,
                                     method="POST" if body is not None else "GET",
                                     headers={"Content-Type": "application/json", "X-Annotator": name,
                                              "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def wait(url: str, name: str, token: str, condition, timeout: float, server: subprocess.Popen) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit("the server exited; see its log")
        try:
            stats = call(url + "/api/stats", name, token)
            if condition(stats):
                return stats
        except (OSError, urllib.error.HTTPError):
            pass  # still starting
        time.sleep(0.1)
    raise SystemExit(f"timed out after {timeout:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--labels", type=int, default=10, help="labels to post (also the refit interval)")
    parser.add_argument("--model", help="champion: a model folder or MLflow URI (default: none registered)")
    parser.add_argument("--encoder", help="embed_lr encoder for the fast model (default: params.yaml's)")
    parser.add_argument("--startup-timeout", type=float, default=3600, help="seconds to wait for the first ranking")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="annotate_loop_") as tmp:
        root = Path(tmp)
        params = make_project(root, args.labels, args.encoder)
        token = run(root, "annotate", "add-annotator", "bench")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        url = f"http://127.0.0.1:{port}"
        serve = ["annotate", "serve", "--port", str(port), *(["--model", str(Path(args.model).resolve())
                                                               if Path(args.model).exists() else args.model]
                                                             if args.model else [])]
        with open(root / "server.log", "ab") as server_log:
            started = time.monotonic()
            server = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *serve], cwd=root, env=env(root),
                                      stdout=server_log, stderr=subprocess.STDOUT)
            try:
                log("waiting for the learning loop to embed the corpus and fit the fast model ...")
                ready = wait(url, "bench", token, lambda s: s["ranking"]["model"] == "fast"
                             and s["ranking"]["status"] == "ready", args.startup_timeout, server)
                startup = time.monotonic() - started
                before = ready["labels"]["total"]
                log(f"ready after {startup:.1f} s: ranking #{ready['ranking']['version']} on {before} labels")
                tasks = load_schema(root / "labels" / "schema.yaml").task_names
                posted, shown = 0, []
                while posted < args.labels:
                    state = call(url + "/api/next", "bench", token)
                    pid, suggestions = state["paragraph"]["paragraph_id"], state.get("suggestions") or {}
                    shown.append(set(tasks) <= set(suggestions))
                    if not shown[-1]:
                        raise SystemExit(f"/api/next offered no suggestion for {pid}: {state}")
                    for task in [t for t in tasks if t not in state["labels"]]:
                        label = suggestions[task]["label"]
                        call(url + "/api/labels", "bench", token,
                             {"paragraph_id": pid, "task": task, "label": label, "suggested": label})
                        posted += 1
                        if posted == args.labels:
                            break
                acked = time.monotonic()
                reranked = wait(url, "bench", token, lambda s: s["ranking"]["labels_seen"] >= before + args.labels,
                                300, server)
                seconds = time.monotonic() - acked
            finally:
                server.terminate()
                server.wait(timeout=60)
        tail = (root / "server.log").read_text(encoding="utf-8", errors="replace").splitlines()[-5:]
        log("server log (last lines):\n  " + "\n  ".join(tail))
    print(json.dumps({
        "seconds_to_reranked_queue": round(seconds, 2),
        "suggestion_shown": all(shown),
        "startup_seconds": round(startup, 1),
        "paragraphs": state["progress"]["total"],
        "labels_before": before,
        "labels_posted": args.labels,
        "fitted_on": reranked["ranking"]["fitted_on"],
        "ranking_trigger": reranked["ranking"]["trigger"],
        "encoder": params["models"]["embed_lr"]["encoder"],
        "load_average": round(os.getloadavg()[0], 2),
    }))


if __name__ == "__main__":
    main()
