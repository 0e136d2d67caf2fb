"""Batch scoring for analysts (`stance score`): any article format in, paragraph and article stances
and an offline HTML report out; streaming, resumable, and on Spark at scale.

Modules: `readers` (input discovery and parsing), `core` (pure scoring and article aggregation),
`writers` (crash-safe parts and final tables), `report` (self-contained HTML), `runner` (the local
engine), `spark` (the same model on Apache Spark), `cli` (the `score` command).
"""
