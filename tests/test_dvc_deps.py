"""dvc.yaml is honest: every stage declares each module of the package it imports and each project file
it reads (package templates included), and declares no module it does not import, so `dvc repro` reruns
exactly what a change touches.

Imports are found twice: statically (the module graph from the stage's `stance` command, function-level
imports and "module:Class" family names included) and at run time (the package modules loaded while the
command runs, in its own process). Reads are observed with an audit hook while each command runs.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from support import REPO

PACKAGE = "pipeline"
FAMILY_REF = re.compile(r"^(pipeline(?:\.\w+)+):\w+$")  # "pipeline.models.tfidf_lr:TfidfLogReg"
# run bookkeeping, not stage inputs: the tracking service's files and the stage times (pipeline/stage_times.py)
RUN_BOOKKEEPING = ("mlflow.db", "mlruns", "mlartifacts", ".stance")
# Package files a stage reads rather than imports; checked statically only: `train` copies the whole
# package into its MLflow model (code for `mlflow models serve`), which reads every file without using it.
TEMPLATES = REPO / PACKAGE / "templates"


def _interpolate(value, params: dict):
    if isinstance(value, dict):
        return {_interpolate(k, params): _interpolate(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, params) for v in value]
    if isinstance(value, str):
        def lookup(match):
            found = params
            for part in match.group(1).split("."):
                found = found[part]
            return str(found)
        return re.sub(r"\$\{([\w.]+)\}", lookup, value)
    return value


def dvc_stages(params: dict | None = None) -> dict[str, dict]:
    """dvc.yaml's stages with ${...} resolved from params.yaml and `foreach` expanded (name@key)."""
    params = params or yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))
    stages = {}
    for name, stage in yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"].items():
        if "foreach" in stage:  # foreach: ${families} -> one stage per family (a list: ${item}; a dict: ${key})
            for key in params[stage["foreach"].removeprefix("${").removesuffix("}")]:
                stages[f"{name}@{key}"] = _interpolate(stage["do"], {**params, "key": key, "item": key})
        else:
            stages[name] = _interpolate(stage, params)
    return stages


def _paths(entries: list) -> list[str]:
    return [next(iter(e)) if isinstance(e, dict) else e for e in entries or []]


def declared(stage: dict) -> list[str]:
    return _paths(stage.get("deps"))


def outputs(stage: dict) -> list[str]:
    return [p for kind in ("outs", "metrics", "plots") for p in _paths(stage.get(kind))]


def covered(path: str, entries: list[str]) -> bool:
    return any(path == e or path.startswith(e.rstrip("/") + "/") for e in entries)


def module_file(name: str) -> str | None:
    base = REPO / Path(*name.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.exists():
            return candidate.relative_to(REPO).as_posix()
    return None


def _imported(tree: ast.AST) -> set[str]:
    """Package modules a piece of code imports anywhere (module level or inside functions)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and FAMILY_REF.match(node.value):
            found.add(FAMILY_REF.match(node.value).group(1))
    modules = set()
    for name in found:
        parts = name.split(".")
        modules |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)
                    if parts[0] == PACKAGE and module_file(".".join(parts[:i]))}
    return modules


def _cli_imports() -> tuple[list[ast.stmt], list[ast.stmt]]:
    """pipeline/cli.py's module-level imports: (its own, those that only register the other command
    groups `score`, `annotate`, `labels` and `exp` from their pipeline/<group>/cli.py)."""
    tree = ast.parse((REPO / "pipeline" / "cli.py").read_text(encoding="utf-8"))
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    registers = [n for n in imports if isinstance(n, ast.ImportFrom) and (n.module or "").endswith(".cli")]
    return [n for n in imports if n not in registers], registers


def command_imports(command: str) -> set[str]:
    """The `stance <command>` entry: pipeline/cli.py's own module-level imports and those inside the
    command's function."""
    tree = ast.parse((REPO / "pipeline" / "cli.py").read_text(encoding="utf-8"))
    function = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == command)
    return {"pipeline", "pipeline.cli"} | _imported(ast.Module(_cli_imports()[0], [])) | _imported(function)


def _templates(tree: ast.AST) -> set[str]:
    """Templates of pipeline/templates/ a module names (the file name as a string constant): files it reads."""
    names = {p.name for p in TEMPLATES.iterdir()} if TEMPLATES.is_dir() else set()
    return {(TEMPLATES / node.value).relative_to(REPO).as_posix() for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in names}


def static_closure(command: str) -> set[str]:
    """The package files `stance <command>` imports or reads: its modules and the templates they name."""
    seen, todo, templates = set(), list(command_imports(command)), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name != "pipeline.cli":
            tree = ast.parse((REPO / module_file(name)).read_text(encoding="utf-8"))
            todo += _imported(tree)
            templates |= _templates(tree)
    return {module_file(m) for m in seen} | templates


@pytest.mark.parametrize("name", list(dvc_stages()))
def test_stage_declares_exactly_the_modules_and_templates_it_uses(name):
    stage = dvc_stages()[name]
    command = stage["cmd"].split()[1]
    modules = static_closure(command)
    deps = [d for d in declared(stage) if d.startswith(f"{PACKAGE}/")]
    missing = sorted(m for m in modules if not covered(m, deps))
    unused = sorted(d for d in deps if not any(covered(m, [d]) for m in modules))
    assert not missing, f"{name}: imports {missing} but dvc.yaml does not declare them"
    assert not unused, f"{name}: dvc.yaml declares {unused}, which `stance {command}` never imports"


def test_paths_are_written_once_in_params():
    """dvc.yaml names no data path of its own: every dep and output outside the package is a params value."""
    raw = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    for name, stage in raw.items():
        stage = stage.get("do", stage)
        for path in declared(stage) + outputs(stage):
            if not path.startswith(f"{PACKAGE}/"):
                assert "${" in path, f"{name}: '{path}' is written in dvc.yaml; take it from params.yaml"


# --- what each command reads and loads while it runs (a process per command, an audit hook in each) ---

PROBE = r"""
import json, os, sys

reads = set()


def audit(event, args):
    if event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        mode, flags = args[1], args[2] if len(args) > 2 else 0
        writes = any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & (os.O_WRONLY | os.O_RDWR))
        if not writes:
            reads.add(os.path.abspath(os.fsdecode(args[0])))


sys.addaudithook(audit)
from pipeline.cli import app

try:
    app(sys.argv[2:], standalone_mode=False)
finally:
    modules = sorted(name for name in sys.modules if name.split(".")[0] == "pipeline")
    with open(sys.argv[1], "w") as out:
        json.dump({"reads": sorted(reads), "modules": modules}, out)
"""


def _observe(root: Path, argv: list[str], report: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO), "STANCE_ROOT": str(root),
           "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
    env.pop("MLFLOW_REGISTRY_URI", None)
    done = subprocess.run([sys.executable, "-c", PROBE, str(report), *argv], cwd=root, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(report.read_text(encoding="utf-8"))


@pytest.mark.slow
def test_each_stage_reads_and_loads_only_what_it_declares(trained_project, tmp_path):
    """Each stage runs in a copy of the trained project. `train` runs without CV: it reads the same
    files, and runs after `register`, which needs the CV metrics the copy holds."""
    root = tmp_path / "project"
    shutil.copytree(trained_project, root)
    params = yaml.safe_load((root / "params.yaml").read_text(encoding="utf-8"))
    stages = dvc_stages(params)
    runs = {"register": ["register"], "ingest": ["ingest"], "dataset": ["dataset"],
            "train@tfidf_lr": ["train", "--family", "tfidf_lr", "--no-cv"]}
    for name, argv in runs.items():
        seen = _observe(root, argv, tmp_path / f"{name}.json")
        stage = stages[name]
        # a DVC-tracked dep may be read through its .dvc file (its hash): data/raw -> data/raw.dvc
        allowed = declared(stage) + [f"{d}.dvc" for d in declared(stage)] + outputs(stage) + ["params.yaml",
                                                                                             *RUN_BOOKKEEPING]
        reads = sorted({Path(p).relative_to(root).as_posix() for p in seen["reads"]
                        if Path(p).is_relative_to(root) and Path(p).is_file()})
        undeclared = [p for p in reads if not covered(p, allowed)]
        assert not undeclared, f"{name} reads {undeclared}, which dvc.yaml does not declare"
        loaded = [module_file(m) for m in seen["modules"] if module_file(m)]
        deps = [d for d in declared(stage) if d.startswith(f"{PACKAGE}/")]
        extra = [m for m in loaded if not covered(m, deps) and not _only_registers_commands(m)]
        assert not extra, f"{name} loads {extra}, which dvc.yaml does not declare"


def _only_registers_commands(path: str) -> bool:
    """Modules `pipeline/cli.py` imports only to register the other command groups (scoring, annotate,
    exp), and what they import at module level: loaded by every `stance` command, used by none of the stages."""
    return path in _registration_modules()


def _registration_modules() -> set[str]:
    todo, seen = list(_imported(ast.Module(_cli_imports()[1], []))), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        body = ast.parse((REPO / module_file(name)).read_text(encoding="utf-8")).body
        todo += _imported(ast.Module([n for n in body if isinstance(n, (ast.Import, ast.ImportFrom))], []))
    return {module_file(m) for m in seen}
