"""Reading a config: YAML, ``--set`` overrides, unknown keys named with the closest valid one (pydantic
reports an extra key but not what was meant), and validation errors as one readable message."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from taskfit.config.base import StrategyBase
from taskfit.config.continual import CONTINUAL_METHODS, ContinualConfig
from taskfit.config.experiment import ExperimentConfig, Task, shows_input, strategy_configs
from taskfit.errors import TaskfitError, did_you_mean


def _model_types(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in get_args(annotation):
        out.extend(_model_types(arg))
    return out


def _container(annotation: Any, value: Any) -> Any:
    """The list[...] or dict[...] member of an (optional) annotation that matches the value's shape."""
    wanted = list if isinstance(value, list) else dict if isinstance(value, dict) else None
    for member in (annotation, *get_args(annotation)):
        if wanted is not None and get_origin(member) is wanted:
            return member
    return annotation


def _check_keys(model: type[BaseModel], data: Any, path: str, task: str = "classification") -> None:
    if not isinstance(data, dict):
        return
    fields = {**model.model_fields, **{f.alias: f for f in model.model_fields.values() if f.alias}}
    for key, value in data.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in fields and key in STRATEGY_ONLY_KEYS and issubclass(model, StrategyBase):
            raise TaskfitError(_not_supported(model, key, path, task))
        if key not in fields:
            raise TaskfitError(
                f"unknown config key '{where}'."
                + did_you_mean(str(key), fields)
                + f" Valid keys here: {', '.join(fields)}."
            )
        if model is ExperimentConfig and key == "strategies" and isinstance(value, list):
            for i, item in enumerate(value):  # which class a name means depends on the task
                if isinstance(item, dict) and "name" in item:
                    registry = strategy_configs(task)
                    _check_strategy_name(item["name"], f"{where}.{i}", task)
                    _check_keys(registry[item["name"]], item, f"{where}.{i}", task)
            continue
        annotation = _container(fields[key].annotation, value)
        if get_origin(annotation) is list and isinstance(value, list):
            candidates = _model_types(get_args(annotation)[0])
            items = [(f"{where}.{i}", item) for i, item in enumerate(value)]
        elif get_origin(annotation) is dict and isinstance(value, dict):
            candidates = _model_types(get_args(annotation)[1])
            items = [(f"{where}.{k}", item) for k, item in value.items()]
        else:
            candidates = _model_types(annotation)
            items = [(where, value)]
        for item_path, item in items:
            if len(candidates) == 1:
                _check_keys(candidates[0], item, item_path, task)


STRATEGY_ONLY_KEYS = {
    "adversarial": "trains by gradient through the shared training loop",
    "augment": "trains on the K-shot training sample",
}


def _not_supported(model: type[BaseModel], key: str, path: str, task: str) -> str:
    """Which strategies take ``augment:``/``adversarial:``, for a block whose strategy does not."""
    name = get_args(model.model_fields["name"].annotation)[0]
    takers = [n for n, cls in strategy_configs(task).items() if key in cls.model_fields]
    return (
        f"{path}.{key}: the {task} strategy '{name}' does not support '{key}:' (only a strategy that "
        f"{STRATEGY_ONLY_KEYS[key]} does: {', '.join(takers)}). Move it to one of those or remove it."
    )


def _check_strategy_name(name: Any, path: str, task: str = "classification") -> None:
    registry = strategy_configs(task)
    if not isinstance(name, str):
        raise TaskfitError(
            f"{path}.name: expected one strategy name, got {name!r}; available: {', '.join(registry)}"
        )
    if name not in registry:
        other = "generation" if task == "classification" else "classification"
        hint = (
            f" ('{name}' is a {other} strategy: set task: {other}?)"
            if name in strategy_configs(other)
            else ""
        )
        if task == "ner" and not hint:
            hint = " (NER strategies: the trained ones tag every token; zero-shot/in-context prompt an LM)"
        raise TaskfitError(
            f"{path}.name: unknown strategy '{name}' (task: {task}); available: {', '.join(registry)}."
            + did_you_mean(str(name), registry)
            + hint
        )


def _format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if "[" not in str(p))
        message = e["msg"].removeprefix("Value error, ")
        if loc == "strategies" and message.startswith("strategies."):
            lines.append(f"  {message}")  # parse_strategy names the block and key itself
            continue
        got = f" (got {e['input']!r})" if shows_input(e) else ""
        lines.append(f"  {loc or '(top level)'}: {message}{got}")
    return "invalid config:\n" + "\n".join(lines)


def validate_config(raw: dict[str, Any]) -> ExperimentConfig:
    if not isinstance(raw, dict):
        raise TaskfitError(f"a config must be a mapping of keys to values, got {type(raw).__name__}")
    task = raw.get("task", "classification")
    if task not in get_args(Task):  # first: which strategies are valid depends on it
        raise TaskfitError(
            f"task: {task!r} is not a task; tasks: {', '.join(get_args(Task))}."
            + did_you_mean(str(task), get_args(Task))
        )
    _check_keys(ExperimentConfig, raw, "", task)
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as err:
        raise TaskfitError(_format_validation_error(err)) from None


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """``key.sub=value`` (list items by index: ``strategies.0.lr=1e-4``); values parsed as YAML."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise TaskfitError(f"--set expects key=value, got '{item}'")
        value = yaml.safe_load(text) if text else ""
        parts = key.split(".")
        node: Any = raw
        for i, part in enumerate(parts[:-1]):
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise TaskfitError(
                        f"--set {key}: '{'.'.join(parts[:i])}' has {len(node)} items; '{part}' is not a valid index"
                    )
                node = node[int(part)]
            else:
                node = node.setdefault(part, {})
        last = parts[-1]
        if isinstance(node, list):
            if not last.isdigit() or int(last) >= len(node):
                raise TaskfitError(f"--set {key}: '{last}' is not a valid index (list of {len(node)})")
            node[int(last)] = value
        else:
            node[last] = value
    return raw


def _load_yaml(path: str | Path, overrides: list[str] | None, validate):
    """Read a YAML config, apply ``--set`` overrides and validate it; every error names the file (and the
    line, for YAML syntax)."""
    path = Path(path)
    if not path.exists():
        raise TaskfitError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise TaskfitError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    except UnicodeDecodeError as exc:
        raise TaskfitError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    raw = apply_overrides(raw, overrides or [])
    try:
        return validate(raw)
    except TaskfitError as exc:
        raise TaskfitError(f"{path}: {exc}") from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    return _load_yaml(path, overrides, validate_config)


def validate_continual_config(raw: Any) -> ContinualConfig:
    if not isinstance(raw, dict):
        raise TaskfitError(f"a config must be a mapping of keys to values, got {type(raw).__name__}")
    _check_keys(ContinualConfig, {k: v for k, v in raw.items() if k != "methods"}, "")
    methods = raw.get("methods")
    for i, item in enumerate(methods if isinstance(methods, list) else []):
        where = f"methods.{i}"
        if not isinstance(item, dict) or item.get("name") not in CONTINUAL_METHODS:
            name = item.get("name") if isinstance(item, dict) else item
            raise TaskfitError(
                f"{where}.name: unknown continual method {name!r}; available: {', '.join(CONTINUAL_METHODS)}."
                + did_you_mean(str(name), CONTINUAL_METHODS)
            )
        _check_keys(CONTINUAL_METHODS[item["name"]], item, where)
    try:
        return ContinualConfig.model_validate(raw)
    except ValidationError as err:
        raise TaskfitError(_format_validation_error(err)) from None


def load_continual_config(path: str | Path, overrides: list[str] | None = None) -> ContinualConfig:
    return _load_yaml(path, overrides, validate_continual_config)
