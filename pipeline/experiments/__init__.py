"""Declarative experiments (`stance exp`): a YAML file under experiments/ names model families,
hyperparameter grids and other params overrides; each grid point becomes a queued `dvc exp run`,
and the results are compared with the registered champion.

Modules: `definition` (load and expand a definition into DVC commands), `compare` (pure verdicts
and the comparison table), `cli` (the `stance exp` commands: DVC and MLflow I/O).
"""
