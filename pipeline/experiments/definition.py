"""An experiment definition (experiments/<name>.yaml) and its expansion into grid points.

Each point is one `dvc exp run` with `-S key=value` overrides and `train@<family>` as
target, so an experiment retrains only the family it varies and never runs `register`:
trying a variant must not move the champion alias.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import Field

from pipeline.config import ConfigError, Params, Strict, load_yaml, validate_section

Scalar = str | int | float | bool


class ExperimentDef(Strict):
    question: str = Field(min_length=1, description="what the experiment answers, shown with its results")
    families: dict[str, dict[str, Scalar | list[Scalar]]] = Field(
        min_length=1, description="model family -> hyperparameter -> value or list of values to sweep")
    set: dict[str, Scalar | list[Scalar]] = Field(
        default_factory=dict, description="other params.yaml keys (dotted), e.g. labels.annotations")


@dataclass(frozen=True)
class GridPoint:
    name: str  # the DVC experiment name: <definition>-<family>-<index>
    family: str
    overrides: dict[str, Scalar]  # dotted params key -> value

    def command(self) -> list[str]:
        """The `dvc exp run` that queues this point."""
        flags = [arg for key, value in self.overrides.items() for arg in ("-S", f"{key}={_literal(value)}")]
        return ["dvc", "exp", "run", "--queue", "--name", self.name, *flags, f"train@{self.family}"]


def _literal(value: Scalar) -> str:
    """A value as DVC's -S parser (YAML) reads it back with the same type."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def load_definition(path: Path) -> ExperimentDef:
    return load_yaml(path, ExperimentDef)


def _sweep(values: dict[str, Scalar | list[Scalar]]) -> list[dict[str, Scalar]]:
    """Every combination of the listed values (a scalar is a one-value list), in file order."""
    axes = [v if isinstance(v, list) else [v] for v in values.values()]
    return [dict(zip(values, combo)) for combo in itertools.product(*axes)]


def expand(name: str, definition: ExperimentDef, params: Params) -> list[GridPoint]:
    """Grid points for a definition, each family's hyperparameters validated before anything is queued."""
    from pipeline.models import family_class

    points = []
    for family, grid in definition.families.items():
        if family not in params.families:
            raise ConfigError(f"experiment {name}: family '{family}' has no `train@{family}` stage: add it to "
                              f"`families` in params.yaml (have: {', '.join(params.families)})")
        for hyper in _sweep(grid):
            validate_section(family_class(family).Params, {**params.models[family], **hyper}, f"models.{family}")
            for other in _sweep(definition.set):
                overrides = {**{f"models.{family}.{k}": v for k, v in hyper.items()}, **other}
                points.append(GridPoint(f"{name}-{family}-{len(points) + 1}", family, overrides))
    return points
