"""How long each pipeline stage last took on this machine, for the model card.

Kept in `.stance/stage_times.json` beside params.yaml, which neither git nor DVC tracks: times differ on
every run, so a second `dvc repro` must not change a tracked file because of them, and a stage that DVC
skipped keeps the time of its last real run. Run bookkeeping, like the MLflow store, not a stage input.
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Iterator

from pipeline.config import resolve

STAGE_TIMES_FILE = ".stance/stage_times.json"


def recorded() -> dict[str, dict]:
    """{stage: {"seconds": float, "finished": ISO time}} of the stages run here so far."""
    path = resolve(STAGE_TIMES_FILE)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


@contextmanager
def timed(stage: str) -> Iterator[None]:
    """Record the wall time of the block under `stage` when it succeeds."""
    start = time.perf_counter()
    yield
    times = recorded()
    times[stage] = {"seconds": round(time.perf_counter() - start, 1),
                    "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    path = resolve(STAGE_TIMES_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(times, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
