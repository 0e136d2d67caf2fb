"""What `stance` prints: its own progress and summary lines on stderr, and nothing from the libraries
underneath unless asked (`stance -v ...`).

MLflow, transformers, Hugging Face Hub and torch each talk through a different channel (Python
warnings, their own loggers, tqdm bars), and some read their switch only once, at import, or in a
child process (scoring workers, `mlflow models serve`): so each switch is set both as an environment
variable, inherited by children and read by libraries not imported yet, and through the library's
API where it is already loaded.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console

QUIET_ENV = {
    "PYTHONWARNINGS": "ignore",  # child processes
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # also transformers' "Loading weights" bar
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "TQDM_DISABLE": "1",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_LOGGING_LEVEL": "ERROR",
    "TOKENIZERS_PARALLELISM": "false",
}

LIBRARY_LOGGERS = ("py.warnings", "mlflow", "alembic", "transformers", "datasets", "huggingface_hub", "sentence_transformers",
                   "torch", "urllib3", "py4j", "pyspark", "dvc")

console = Console(stderr=True)


def configure(verbose: bool = False) -> None:
    """Quiet (the default): library warnings, logs below ERROR and progress bars off. Verbose: library
    logs at INFO on stderr, warnings shown. Python warnings become log records (logger `py.warnings`):
    libraries add their own warning filters on import (MLflow shows its type-hint notice 'once'),
    so a filter set here could be overridden; the logger level cannot."""
    logging.captureWarnings(True)
    if verbose:
        for key, value in QUIET_ENV.items():  # a quiet parent (another `stance` run) must not mute -v
            if os.environ.get(key) == value:
                del os.environ[key]
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(levelname)s %(name)s: %(message)s")
        for name in LIBRARY_LOGGERS:
            logging.getLogger(name).setLevel(logging.INFO)
        return
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    warnings.simplefilter("ignore")
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    if "datasets" in sys.modules:
        from datasets.utils.logging import disable_progress_bar

        disable_progress_bar()


@contextmanager
def mlflow_notices_quiet() -> Iterator[None]:
    """MLflow prints some notices ("Successfully registered model ...", "Created version ...") to its
    stderr stream past its loggers and their levels. In a quiet run (MLflow's level at ERROR, as
    `configure` sets it) that stream is shut for the block (MLflow's errors there reach `stance` as
    exceptions), through MLflow's own switch: a counted one, so MLflow code that mutes and unmutes
    inside the block does not open it again."""
    from mlflow.utils.autologging_utils import MlflowEventsAndWarningsBehaviorGlobally
    from mlflow.utils.logging_utils import get_mlflow_log_level

    quiet = get_mlflow_log_level() in ("ERROR", "CRITICAL")
    with MlflowEventsAndWarningsBehaviorGlobally(disable_event_logs=quiet, disable_warnings=False,
                                                 reroute_warnings=False):
        yield


@contextmanager
def progress_line(description: str, total: int) -> Iterator[Callable[..., None]]:
    """One rich progress line for a long step; yields `advance()`."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task(description, total=total)
        yield lambda n=1: progress.advance(bar, n)
