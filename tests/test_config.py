from pathlib import Path

import pytest
import yaml

from taskfit.config import apply_overrides, load_config, validate_config
from taskfit.errors import TaskfitError

EXAMPLES = sorted((Path(__file__).parent.parent / "examples").glob("*.yaml"))

BASE = {"data": {"dataset": "mr"}, "strategies": [{"name": "zero-shot"}]}


def test_minimal_config_gets_defaults():
    cfg = validate_config(BASE)
    assert cfg.seeds == [0]
    assert cfg.data.shots == 16
    assert cfg.strategies[0].backbone == "smollm2"
    assert cfg.trust_remote_code is False


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({**BASE, "sedes": [0]}, "unknown config key 'sedes'. Did you mean 'seeds'?"),
        (
            {**BASE, "data": {"dataset": "mr", "shot": 8}},
            "unknown config key 'data.shot'. Did you mean 'shots'?",
        ),
        (
            {**BASE, "strategies": [{"name": "head-finetune", "lr_rate": 1e-4}]},
            "unknown config key 'strategies.0.lr_rate'. Did you mean 'lr'?",
        ),
        ({**BASE, "strategies": [{"name": "zero-shoot"}]}, "unknown strategy 'zero-shoot'"),
        ({**BASE, "strategies": [{"name": "zero-shoot"}]}, "Did you mean 'zero-shot'?"),
        ({**BASE, "prompt": {"template": "{text}{answer}", "verbaliser": {}}}, "Did you mean 'verbalizer'?"),
    ],
)
def test_unknown_keys_name_the_closest_valid_key(raw, expected):
    with pytest.raises(TaskfitError) as err:
        validate_config(raw)
    assert expected in str(err.value)


def test_type_errors_name_the_key_and_value():
    with pytest.raises(TaskfitError) as err:
        validate_config({**BASE, "strategies": [{"name": "head-finetune", "lr": "fast"}]})
    assert "strategies.0.lr" in str(err.value) and "'fast'" in str(err.value)


def test_exactly_one_data_source():
    with pytest.raises(TaskfitError, match="exactly one of data.dataset"):
        validate_config({"data": {"dataset": "mr", "train": "x.csv"}, "strategies": [{"name": "zero-shot"}]})


def test_duplicate_strategy_rows_need_ids():
    with pytest.raises(TaskfitError, match="give each an 'id'"):
        validate_config({**BASE, "strategies": [{"name": "zero-shot"}, {"name": "zero-shot"}]})
    cfg = validate_config(
        {
            **BASE,
            "strategies": [{"name": "zero-shot"}, {"name": "zero-shot", "id": "zs-mean", "scoring": "mean"}],
        }
    )
    assert [s.run_id for s in cfg.strategies] == ["zero-shot", "zs-mean"]


def test_overrides_edit_nested_keys_and_list_items():
    raw = {**BASE, "strategies": [{"name": "head-finetune"}]}
    raw = apply_overrides(raw, ["seeds=[3, 4]", "strategies.0.epochs=2", "data.test_limit=10"])
    cfg = validate_config(raw)
    assert cfg.seeds == [3, 4] and cfg.strategies[0].epochs == 2 and cfg.data.test_limit == 10
    with pytest.raises(TaskfitError, match="not a valid index"):
        apply_overrides(raw, ["strategies.5.epochs=2"])
    with pytest.raises(TaskfitError, match="key=value"):
        apply_overrides(raw, ["seeds"])


def test_load_config_reports_file_and_yaml_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  dataset: mr\nstrategies: [\n")
    with pytest.raises(TaskfitError, match=r"bad.yaml:\d+: not valid YAML"):
        load_config(bad)
    with pytest.raises(TaskfitError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_shipped_example_config_validates(path):
    cfg = load_config(path)
    assert cfg.strategies
    # and the raw file holds no key the model silently dropped
    raw = yaml.safe_load(path.read_text())
    assert set(raw) <= set(type(cfg).model_fields)


def test_examples_exist():
    assert any(p.name == "quickstart.yaml" for p in EXAMPLES)


def test_no_config_class_declares_a_field_twice():
    """A second ``lr: float = ...`` in a class body silently replaces the first (issue 32: prompt-tuning's
    ``option("lr", ...)`` was overridden by a bare Field two lines below)."""
    import ast

    import taskfit.config

    twice = []
    for path in sorted(Path(taskfit.config.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef):
                continue
            seen: set[str] = set()
            for statement in node.body:
                if isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name):
                    name = statement.target.id
                    if name in seen:
                        twice.append(f"{path.name}:{statement.lineno}: {node.name}.{name}")
                    seen.add(name)
    assert not twice, twice
