"""--workers, --executor and --address reach the config that runs, for a data file as for a YAML config, and
bad values are refused with the flag's name (issue 32). run_experiment is replaced: nothing runs, no Ray."""

from __future__ import annotations

import pytest
import yaml

from taskfit.cli import main
from tests.conftest import write_csv


@pytest.fixture
def ran(monkeypatch) -> list:
    """The configs cmd_compare hands to run_experiment."""
    configs = []

    def fake_run(config, output_dir=None, **kwargs):
        configs.append(config)
        return {"strategies": []}

    monkeypatch.setattr("taskfit.compare.run_experiment", fake_run)
    return configs


@pytest.fixture
def reviews(tmp_path):
    rows = [
        {"text": f"review {i} {'good' if i % 2 else 'bad'}", "label": "pos" if i % 2 else "neg"}
        for i in range(40)
    ]
    return write_csv(tmp_path / "reviews.csv", rows)


RAY = ["--executor", "ray", "--address", "ray://10.0.0.1:10001"]


def test_a_data_file_runs_on_the_executor_and_address_given(reviews, tmp_path, ran):
    assert main(["compare", str(reviews), "--output", str(tmp_path / "out"), "--workers", "3", *RAY]) == 0
    (config,) = ran
    assert (config.executor, config.ray.address, config.workers) == ("ray", "ray://10.0.0.1:10001", 3)


def test_a_yaml_config_runs_on_the_executor_and_address_given(reviews, tmp_path, ran):
    assert main(["init", str(reviews), "--output", str(tmp_path / "grid.yaml")]) == 0
    assert main(["compare", str(tmp_path / "grid.yaml"), "--workers", "auto", *RAY]) == 0
    (config,) = ran
    assert (config.executor, config.ray.address, config.workers) == ("ray", "ray://10.0.0.1:10001", "auto")


def test_an_address_without_the_ray_executor_is_refused_for_a_data_file(reviews, tmp_path, ran, capsys):
    argv = ["compare", str(reviews), "--output", str(tmp_path / "out"), "--address", "auto"]
    assert main(argv) == 2
    assert "--address" in capsys.readouterr().err and not ran


def test_an_executor_in_the_yaml_takes_an_address_from_the_command_line(reviews, tmp_path, ran):
    assert main(["init", str(reviews), "--output", str(tmp_path / "grid.yaml")]) == 0
    path = tmp_path / "grid.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "executor: ray\n", encoding="utf-8")
    assert yaml.safe_load(path.read_text(encoding="utf-8"))["executor"] == "ray"
    assert main(["compare", str(path), "--address", "auto"]) == 0
    assert ran[0].ray.address == "auto"


@pytest.mark.parametrize("value", ["-1", "0", "two", "1.5"])
def test_workers_must_be_a_positive_whole_number_or_auto(value, reviews, tmp_path, ran, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["compare", str(reviews), "--output", str(tmp_path / "out"), "--workers", value])
    assert exit_.value.code == 2 and not ran
    err = capsys.readouterr().err
    assert "--workers" in err and "a whole number of at least 1, or auto" in err and repr(value) in err
