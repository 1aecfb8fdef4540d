"""Evaluation tasks as plug-ins: each declares its config keys, defaults and choices, and
implements `prepare` (once, from the dataset's captions, labels and counts) and `run` (every
evaluation, from the image features).

The task modules (`TASK_MODULES`: retrieval, zeroshot, probes, counting) each hold ``TASKS``, a
list of `Task`s. The config schema (`remoteclip_jax.config`) is assembled from them and
`Evaluator` runs them. A new task is one module with its ``TASKS`` and its name added here.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib
from typing import Any, Callable, Mapping

from remoteclip_jax.data.sources import SOURCE_DEFAULTS, nearest, normalize_spec
from remoteclip_jax.errors import ConfigError, check_choice

TASK_MODULES = ("retrieval", "zeroshot", "probes", "counting")


@dataclasses.dataclass(frozen=True)
class Dataset:
    """What tasks read of a dataset, once: its name (for messages) and per item its key (path or
    id), non-blank captions, class label ("" when none) and object counts."""

    name: str
    keys: list[str]
    captions: list[list[str]]
    labels: list[str]
    counts: list[dict[str, int]]


@dataclasses.dataclass(frozen=True)
class Task:
    """One evaluation task.

    Attributes:
        name: the ``task`` value of a config entry.
        keys: the task keys it reads (beside the source keys), with their defaults.
        prepare: (entry, dataset, tokenize) -> prepared state (tokens, splits, prompts); raises
            `DataError` for a dataset the task cannot use.
        run: (evaluator, variables, entry, prepared, image_features) -> (metrics, details).
        choices: the allowed values of keys that have a fixed set.
        prefix: metrics are named ``eval/<entry>/<prefix><metric>``.
    """

    name: str
    keys: dict[str, Any]
    prepare: Callable[..., dict]
    run: Callable[..., tuple[dict, dict]]
    choices: dict[str, tuple] = dataclasses.field(default_factory=dict)
    prefix: str = ""


@functools.cache
def registry() -> dict[str, Task]:
    """Every task by name, from the modules of `TASK_MODULES`."""
    tasks = {}
    for module in TASK_MODULES:
        for task in importlib.import_module(f"remoteclip_jax.evaluate.{module}").TASKS:
            tasks[task.name] = task
    return tasks


def eval_defaults() -> dict[str, Any]:
    """``task`` and every task key with its default (tasks sharing a key share its default)."""
    defaults: dict[str, Any] = {"task": ""}
    for task in registry().values():
        for key, value in task.keys.items():
            assert defaults.setdefault(key, value) == value, f"{key}: tasks disagree on the default"
    return defaults


def plain(value):
    """A config value as plain Python: ConfigDicts as dicts, lists and tuples as tuples (a
    command-line or JSON round trip may turn one into the other)."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return tuple(value) if isinstance(value, (list, tuple)) else value


def check_entries(evals: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``config.evals`` as {name: complete, checked evaluation entry} (source keys, task keys
    with defaults filled in, and ``name``).

    Raises:
        ConfigError: an unknown task or key, a key the task does not read, a value not allowed.
    """
    defaults, tasks = eval_defaults(), registry()
    out = {}
    for name, entry in evals.items():
        where = f"config.evals.{name}"
        entry = dict(plain(entry))
        unknown = sorted(set(entry) - set(SOURCE_DEFAULTS) - set(defaults))
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r}"
                              f"{nearest(unknown[0], [*SOURCE_DEFAULTS, *defaults])}")
        task = tasks.get(entry.get("task", ""))
        if task is None:
            raise ConfigError(f"{where}.task={entry.get('task', '')!r}: unknown task"
                              f"{nearest(str(entry.get('task', '')), tasks)} (tasks: {', '.join(tasks)})")
        full = {**defaults, **{k: v for k, v in entry.items() if k in defaults}}
        for key, default in defaults.items():
            if key != "task" and key not in task.keys and plain(full[key]) != plain(default):
                raise ConfigError(f"{where}.{key}={full[key]!r}: task {task.name!r} does not read "
                                  f"{key!r} (it reads {', '.join(sorted(task.keys))})")
        for key, allowed in task.choices.items():
            check_choice(f"{where}.{key}", full[key], allowed)
        spec = normalize_spec({k: v for k, v in entry.items() if k in SOURCE_DEFAULTS}, where)
        out[name] = {**spec, **full, "name": name}
    return out
