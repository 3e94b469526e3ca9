"""``ray.parallel_trials``: the batched ask/tell loop (no Ray needed), what enters the cell key, the local
executor's note, and one small search cell run with parallel trials on a Ray cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types

import optuna
import pytest
import yaml

from taskfit.compare import run_experiment
from taskfit.compare.cell import ParallelSearch
from taskfit.compare.search import TrialResult, new_study, parallel_trials_key, run_search
from taskfit.config import RangeSpace, validate_config

from .test_compare import grid

SPACE = {"lr": RangeSpace(low=1e-4, high=1e-2, log=True), "epochs": [1, 2, 3]}


def score_of(params: dict) -> float:
    return round(-abs(params["lr"] - 3e-3) * 100, 3) + 0.01 * params["epochs"]


def fake_runner(batches: list[int], score=score_of):
    def run_batch(params: list[dict]) -> list[TrialResult]:
        batches.append(len(params))
        return [TrialResult("dev_accuracy", score(p), 0.0, fitted=f"model {p}") for p in params]

    return run_batch


def search(sampler, trials: int, at_once: int, score=score_of):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    batches: list[int] = []
    best_params, best, records = run_search(study, SPACE, trials, at_once, fake_runner(batches, score))
    return best_params, best, records, batches


def test_batches_are_told_in_trial_order_and_the_best_trial_is_kept(capsys):
    best_params, best, records, batches = search(optuna.samplers.RandomSampler(seed=3), 7, 3)
    assert batches == [3, 3, 1]
    assert [r["trial"] for r in records] == list(range(7))
    assert best.score == max(r["dev_accuracy"] for r in records)
    assert best.fitted == f"model {best_params}"  # the fitted strategy of that very trial
    assert "search trial 6:" in capsys.readouterr().out


def test_ties_keep_the_earlier_trial_also_within_a_batch():
    best_params, best, records, _ = search(optuna.samplers.RandomSampler(seed=0), 4, 4, score=lambda p: 0.5)
    assert best_params == records[0]["params"] and best.score == 0.5


@pytest.mark.parametrize(
    ("sampler", "trials"),
    [
        (lambda: optuna.samplers.RandomSampler(seed=7), 16),
        (
            lambda: optuna.samplers.GridSampler({"lr": [1e-4, 1e-3, 1e-2], "epochs": [1, 2, 3]}, seed=7),
            8,
        ),  # not all 9: an exhausted grid stops the study
        (lambda: optuna.samplers.TPESampler(seed=7), 10),  # all within TPE's random startup trials
    ],
)
def test_seeded_samplers_propose_the_same_trials_in_batches(sampler, trials):
    one = search(sampler(), trials, 1)
    four = search(sampler(), trials, 4)
    assert one[2] == four[2] and one[0] == four[0]  # every trial's params and score, and the choice
    assert one[3] == [1] * trials


def test_tpe_past_its_startup_trials_proposes_differently_in_batches():
    one = search(optuna.samplers.TPESampler(seed=7), 14, 1)[2]
    four = search(optuna.samplers.TPESampler(seed=7), 14, 4)[2]
    assert one[:10] == four[:10] and one[10:] != four[10:]


def test_a_stored_study_starts_over_when_the_cell_is_rerun(tmp_path):
    url = f"sqlite:///{tmp_path / 'studies.db'}"
    for _ in range(2):
        study = new_study(0, url, "taskfit/cell/key")
        best_params, _best, records = run_search(study, SPACE, 3, 2, fake_runner([]))
    assert len(optuna.load_study(study_name="taskfit/cell/key", storage=url).trials) == 3
    assert records == search(optuna.samplers.TPESampler(seed=0), 3, 1)[2]


def test_parallel_trials_enter_the_key_only_where_they_change_the_proposals(sentiment_csv, tiny_bert_dir):
    def key(trials: int, executor: str, n: int) -> dict:
        raw = grid(sentiment_csv, tiny_bert_dir, executor=executor, ray={"parallel_trials": n})
        raw["strategies"] = [{**raw["strategies"][1], "search": {"epochs": [1, 2]}, "trials": trials}]
        config = validate_config(raw)
        return parallel_trials_key(config, config.strategies[0])

    assert key(3, "ray", 2) == {} and key(12, "ray", 1) == {} and key(12, "local", 2) == {}
    assert key(12, "ray", 2) == {"parallel_trials": 2}


class FakeRay(types.SimpleNamespace):
    """Just enough of Ray for ``cluster_batch_runner``: a remote call runs when it is waited for."""

    def __init__(self):
        super().__init__(calls=[])

    def is_initialized(self):
        return True

    def remote(self, **options):
        def wrap(fn):
            return types.SimpleNamespace(
                remote=lambda *args: self.calls.append((fn, args)) or len(self.calls) - 1
            )

        return wrap

    def wait(self, refs, num_returns=1, timeout=None):
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref):
        fn, args = self.calls[ref]
        return {"metric": "dev_accuracy", "score": score_of(args[0]), "seconds": 0.0, "node": "n1"}

    def cancel(self, ref, force=False):
        pass


def test_a_batch_runs_its_first_trial_here_and_the_rest_as_tasks_up_to_the_slots(monkeypatch):
    import taskfit.compare.ray_search as ray_search
    from taskfit.strategies import Context

    fake = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", fake)
    here: list[dict] = []

    def fit_here(candidate, ctx, train, dev, task):
        here.append(candidate)
        return TrialResult("dev_accuracy", score_of(candidate), 0.0, fitted="here")

    monkeypatch.setattr(ray_search, "fit_trial", fit_here)
    parallel = ParallelSearch(trials=4, slots=2, resources={"CPU": 1.0})
    run_batch = ray_search.cluster_batch_runner(
        lambda p: p, Context(labels=["a"]), [], [], "classification", parallel
    )
    params = [{"lr": 1e-3 * i, "epochs": 1} for i in range(1, 5)]
    results = run_batch(params)
    assert [r.score for r in results] == [score_of(p) for p in params]  # in the batch's order
    # one slot besides the cell's: one trial at a time elsewhere while the cell fits the next one itself
    assert here == params[:2] and [args[0] for _fn, args in fake.calls] == [params[3], params[2]]
    assert [r.node for r in results] == [None, None, "n1", "n1"] and results[0].fitted == "here"


def test_the_local_executor_runs_the_trials_one_after_another_with_a_note(
    sentiment_csv, tiny_bert_dir, tmp_path, monkeypatch
):
    monkeypatch.setitem(sys.modules, "ray", None)  # not installed: the local executor needs no Ray
    raw = grid(sentiment_csv, tiny_bert_dir, seeds=[0], ray={"parallel_trials": 2})
    raw["data"]["shots"] = 4
    raw["strategies"] = [{**raw["strategies"][1], "search": {"epochs": [1, 2]}, "trials": 2}]
    lines: list[str] = []
    stream = types.SimpleNamespace(write=lines.append, flush=lambda: None)
    summary = run_experiment(validate_config(raw), tmp_path / "out", isolate=False, stream=stream)
    assert "ray.parallel_trials: 2 applies to executor: ray only" in "".join(lines)
    cell = tmp_path / "out" / "head-finetune" / "tiny-bert0" / "k4" / "seed-0"
    records = [json.loads(line) for line in (cell / "search.jsonl").read_text().splitlines()]
    assert [r.get("trial") for r in records] == [0, 1, None] and "refit_seconds" not in records[-1]
    raw.pop("ray")
    plain = run_experiment(validate_config(raw), tmp_path / "plain", isolate=False, stream=stream)
    assert summary["cells"][0]["key"] == plain["cells"][0]["key"]  # the same cell: nothing to rerun


try:
    import ray
except ImportError:
    ray = None


@pytest.mark.skipif(ray is None, reason="Ray is an optional extra: pip install 'taskfit[ray]'")
def test_parallel_trials_on_ray_choose_what_the_sequential_search_chooses(
    sentiment_csv, tiny_bert_dir, tmp_path
):
    from .test_ray_executor import FAILSAFE_S, _stop_group

    raw = grid(sentiment_csv, tiny_bert_dir, seeds=[0])
    raw["data"]["shots"] = 4
    raw["strategies"] = [
        {**raw["strategies"][1], "search": {"lr": {"low": 1e-4, "high": 1e-1, "log": True}}, "trials": 3}
    ]
    local = run_experiment(validate_config(raw), tmp_path / "local", isolate=False)
    raw.update(executor="ray", ray={"parallel_trials": 2, "memory_gb_per_cell": 0.25})
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(raw))
    # the driver in a process of its own, with the one-machine cluster it starts and stops: a Ray session
    # started in this process would leave state that breaks a later connection to another cluster here
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "taskfit",
            "compare",
            str(tmp_path / "grid.yaml"),
            "--output",
            str(tmp_path / "ray"),
        ],
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        driver.wait(FAILSAFE_S)
    finally:
        _stop_group(driver)
    ran = json.loads((tmp_path / "ray" / "results.json").read_text())
    cell = "head-finetune/tiny-bert0/k4/seed-0"
    records = [
        json.loads(line) for line in (tmp_path / "ray" / cell / "search.jsonl").read_text().splitlines()
    ]
    expected = [
        json.loads(line) for line in (tmp_path / "local" / cell / "search.jsonl").read_text().splitlines()
    ]
    assert [r.get("trial") for r in records] == [0, 1, 2, None]
    spec = json.loads((tmp_path / "ray" / cell / "cell.json").read_text())
    assert spec["parallel_search"]["trials"] == 2
    if spec["parallel_search"]["slots"] == 2:  # the cluster holds two cells (a machine of 2+ cores)
        assert "node" in records[1]  # the batch's second trial ran as a task of its own
    drop = ("seconds", "refit_seconds", "node")
    assert [{k: v for k, v in r.items() if k not in drop} for r in records] == [
        {k: v for k, v in r.items() if k not in drop} for r in expected
    ]
    assert ran["cells"][0]["key"] == local["cells"][0]["key"]
    assert ran["cells"][0]["accuracy"] == local["cells"][0]["accuracy"]
