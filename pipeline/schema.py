"""The label schema (labels/schema.yaml): tasks, their classes and definitions.

Nothing else in the package names a task or a class; everything iterates over
`LabelSchema.tasks`, so adding a task to the YAML is enough to train and score it.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.config import load_params, load_yaml, resolve


class ClassDef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    definition: str = Field(min_length=1)
    key: str | None = Field(None, max_length=1, description="keyboard shortcut in the annotation app")


class TaskDef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    question: str = Field(min_length=1)
    classes: dict[str, ClassDef]

    @model_validator(mode="after")
    def _at_least_two(self) -> "TaskDef":
        if len(self.classes) < 2:
            raise ValueError("a task needs at least two classes")
        return self

    @property
    def labels(self) -> list[str]:
        """Class names in schema order (the order of ClassLabel ids and probability columns)."""
        return list(self.classes)


class TopicDef(BaseModel):
    """What makes a text on-topic for this domain: it mentions at least one term of every group
    (case-insensitive, whole words). Off-topic texts stay in the corpus, flagged."""
    model_config = ConfigDict(extra="forbid", frozen=True)
    groups: dict[str, list[str]] = Field(default_factory=dict)


class LabelSchema(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    tasks: dict[str, TaskDef]
    topic: TopicDef = Field(default_factory=TopicDef, description="no block: nothing is off-topic")

    @model_validator(mode="after")
    def _unique_keys(self) -> "LabelSchema":
        if not self.tasks:
            raise ValueError("the schema defines no task")
        keys = [c.key for t in self.tasks.values() for c in t.classes.values() if c.key]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"keyboard shortcuts used twice: {dupes}")
        return self

    @property
    def task_names(self) -> list[str]:
        return list(self.tasks)

    def labels(self, task: str) -> list[str]:
        return self.tasks[task].labels

    @property
    def topic_groups(self) -> dict[str, list[str]]:
        return self.topic.groups

    def canonical(self, task: str, label: str) -> tuple[str, str]:
        """(task, label) spelled as in the schema when they match one case-insensitively, else unchanged."""
        task = next((t for t in self.tasks if t.casefold() == task.casefold()), task)
        if task in self.tasks:
            label = next((c for c in self.tasks[task].classes if c.casefold() == label.casefold()), label)
        return task, label

    def check(self, task: str, label: str) -> str | None:
        """None when (task, label) is valid, else a message saying what is wrong."""
        if task not in self.tasks:
            return f"unknown task '{task}' (schema has: {', '.join(self.tasks)})"
        if label not in self.tasks[task].classes:
            return f"unknown class '{label}' for task '{task}' (allowed: {', '.join(self.labels(task))})"
        return None


def load_schema(path: str | Path | None = None) -> LabelSchema:
    """Load and validate the schema; by default the file named in params.yaml."""
    return load_yaml(Path(path) if path else resolve(load_params().labels.schema_file), LabelSchema,
                     "label schema not found")
