"""`stance exp`: queue a definition's grid as DVC experiments, run the queue, compare with the champion.

The I/O edge: DVC is driven through its command line (queueing and running, as an engineer
would) and read through `dvc.api` (each experiment's params and metrics files); MLflow gives
the champion (registry alias -> run) and each experiment's run (tag `dvc.exp_name`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
import yaml
from rich.console import Console

from pipeline.config import ConfigError, load_params, project_root
from pipeline.experiments.compare import Candidate, Champion, Scores, compare, to_markdown
from pipeline.experiments.definition import ExperimentDef, GridPoint, expand, load_definition

exp_app = typer.Typer(no_args_is_help=True, help="Declarative experiments: queue a grid with `dvc exp`, compare "
                                                 "with the champion.")
console = Console(stderr=True)

Definition = Annotated[Path, typer.Argument(help="experiment definition, e.g. experiments/tfidf_regularisation.yaml")]


def _plan(path: Path) -> tuple[str, ExperimentDef, list[GridPoint]]:
    try:
        definition = load_definition(path)
        return path.stem, definition, expand(path.stem, definition, load_params())
    except ConfigError as err:
        console.print(f"[red]error:[/red] {err}")
        raise typer.Exit(2) from None


def _env() -> dict[str, str]:
    """This interpreter's bin folder first on PATH, so DVC's stages find the same `stance`."""
    return {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}


def _dvc(*args: str) -> None:
    if subprocess.run(["dvc", *args], cwd=project_root(), env=_env()).returncode:
        console.print(f"[red]error:[/red] `dvc {' '.join(args)}` failed")
        raise typer.Exit(1)


@exp_app.command("run")
def run(
    definition: Definition,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="experiments run in parallel")] = 1,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print the dvc commands, queue nothing")] = False,
) -> None:
    """Queue one `dvc exp run -S ...` per grid point, then run the queue (results: `stance exp compare`)."""
    _, _, points = _plan(definition)
    for point in points:
        console.print(" ".join(point.command()), highlight=False, soft_wrap=True)
        if not dry_run:
            _dvc(*point.command()[1:], "--quiet")
    if not dry_run:
        _dvc("exp", "run", "--run-all", "--jobs", str(jobs))


def _champion(tasks: list[str]) -> Champion | None:
    """The registered champion and the metrics of the run it came from (None before the first register)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from pipeline.tracking import configure

    configure()
    registry = load_params().registry
    client = MlflowClient()
    try:
        version = client.get_model_version_by_alias(registry.model_name, registry.alias)
    except MlflowException:
        return None
    run = client.get_run(version.run_id)
    label = f"{registry.model_name} v{version.version} ({run.data.tags.get('family', '?')})"
    return Champion(label, Scores.from_mlflow_metrics(run.data.metrics, tasks), version.run_id)


def _mlflow_run(run_id: str) -> tuple[float | None, str | None]:
    """The run's logged macro-F1 and the DVC experiment it was tagged with when it ran."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from pipeline.tracking import configure

    configure()
    try:
        run = MlflowClient().get_run(run_id)
    except MlflowException:
        return None, None
    return run.data.metrics.get("macro_f1"), run.data.tags.get("dvc.exp_name")


def _candidate(point: GridPoint, tasks: list[str]) -> Candidate:
    """One grid point as DVC recorded it (params and metrics files in the experiment's commit) and as MLflow did."""
    import dvc.api
    from dvc.exceptions import DvcException
    from scmrepo.exceptions import SCMError

    root, layout = str(project_root()), load_params().train
    try:
        metrics = json.loads(dvc.api.read(layout.metrics_file(point.family).as_posix(), repo=root, rev=point.name))
        params = yaml.safe_load(dvc.api.read("params.yaml", repo=root, rev=point.name))
        run = json.loads(dvc.api.read(layout.run_file(point.family).as_posix(), repo=root, rev=point.name))
    except (DvcException, SCMError, FileNotFoundError):
        return Candidate(point.name, point.family, point.overrides, None)
    ran = {key: _lookup(params, key) for key in point.overrides}
    mlflow_f1, tagged = _mlflow_run(run["run_id"])
    return Candidate(point.name, point.family, ran, Scores.from_metrics_file(metrics, tasks), run["run_id"],
                     mlflow_f1, tagged)


def _lookup(params: dict, dotted: str):
    for part in dotted.split("."):
        params = params[part]
    return params


@exp_app.command("compare")
def compare_command(
    definition: Definition,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="also write the table (markdown) here")] = None,
) -> None:
    """Does any grid point beat the champion? A table of macro-F1 with CIs from DVC and the MLflow run of each."""
    from pipeline.schema import load_schema

    name, spec, points = _plan(definition)
    tasks = load_schema().task_names
    comparison = compare([_candidate(p, tasks) for p in points], _champion(tasks), tasks, spec.question)
    table = to_markdown(comparison, tasks, load_params().evaluate.confidence)
    typer.echo(table)
    if out:
        out.write_text(f"# Experiment `{name}`\n\n{table}", encoding="utf-8")
