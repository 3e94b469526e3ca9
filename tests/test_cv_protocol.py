"""Issue 38: the one command's protocol follows the data, cross-validation costs a few fits (folds in lockstep,
stopped together, scored without refits), racing stops only rows clearly behind, and the estimate reads the
data."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest
import torch
import yaml

from taskfit import quickstart
from tests.conftest import WORDS, write_csv


def _reviews(path, n: int, share: float = 0.5):
    rng = random.Random(5)
    pos, neg, filler = WORDS[0:6], WORDS[6:12], WORDS[12:22]
    rows = []
    for i in range(n):
        label = "pos" if i < round(n * share) else "neg"
        words = rng.sample(pos if label == "pos" else neg, 2) + rng.sample(filler, 4)
        rows.append({"text": " ".join(words) + f" {i}", "label": label})
    rng.shuffle(rows)
    return write_csv(path, rows)


# -- the protocol follows the data ---------------------------------------------------------------------------


def test_a_40_row_file_gets_cross_validation_with_nothing_carved(tmp_path):
    """Fails if the one command on a 40-row file carves a test (or dev) split out of the user's labels."""
    from taskfit.config import validate_config
    from taskfit.tasks import load_pools

    csv = _reviews(tmp_path / "few.csv", 40, share=0.68)
    quick = quickstart.plan(str(csv))
    assert quick.raw["data"]["shots"] == "all"
    assert "test_limit" not in quick.raw["data"]
    assert any(line.startswith("protocol: 40 labelled examples") for line in quick.found)
    assert "40 labelled examples, none held out" in quick.found[0]
    config = validate_config(quick.raw)
    pools = load_pools(config.data, config.task)
    assert pools.test == [] and pools.dev == [] and len(pools.train) == 40
    assert pools.selection == "cv"


def test_a_larger_file_gets_a_learning_curve_that_reaches_all_of_train(tmp_path):
    csv = _reviews(tmp_path / "big.csv", 1200)
    quick = quickstart.plan(str(csv), budget="10h")
    shots = quick.raw["data"]["shots"]
    assert shots[-1] == "all" and shots[0] == 8 and 128 in shots
    assert any("recommendation is made at all of train" in line for line in quick.found)
    tight = quickstart.plan(str(csv), budget="20s")
    cut = tight.raw["data"]["shots"]
    assert "all" not in (cut if isinstance(cut, list) else [cut])  # the full size could not be reached ...
    assert any("extrapolation" in c for c in tight.cuts)  # ... and the cut says so


def test_the_estimate_reads_the_texts_length(tmp_path):
    short = _reviews(tmp_path / "short.csv", 50)
    rows = [{"text": " ".join(["word"] * 400) + f" {i}", "label": "ab"[i % 2]} for i in range(50)]
    long = write_csv(tmp_path / "long.csv", rows)
    quick_short = quickstart.plan(str(short), budget="10h")
    quick_long = quickstart.plan(str(long), budget="10h")
    assert quick_long.estimate_s > 3 * quick_short.estimate_s


# -- folds in lockstep, scored without refits --------------------------------------------------------------


def test_lockstep_runs_one_fold_at_a_time_in_fold_order_and_stops_them_together():
    from taskfit.compare.lockstep import run_in_lockstep

    order, busy, lock = [], [0], threading.Lock()
    decided = []

    def decide(epoch):
        decided.append(epoch)
        return epoch >= 3

    def work(fold, lockstep):
        for epoch in range(1, 10):
            with lock:
                busy[0] += 1
                assert busy[0] == 1  # never two folds computing at once
                order.append((epoch, fold))
                busy[0] -= 1
            if lockstep.epoch_end(fold, epoch):
                break

    run_in_lockstep(3, work, decide)
    assert order == [(e, f) for e in (1, 2, 3) for f in (0, 1, 2)]
    assert decided == [1, 2, 3]


def test_a_failing_fold_fails_the_cell_and_releases_the_others():
    from taskfit.compare.lockstep import run_in_lockstep

    def work(fold, lockstep):
        for epoch in range(1, 5):
            if fold == 1 and epoch == 2:
                raise RuntimeError("fold 1 broke")
            lockstep.epoch_end(fold, epoch)

    with pytest.raises(RuntimeError, match="fold 1 broke"):
        run_in_lockstep(3, work, lambda epoch: False)


def test_folds_stop_on_the_mean_curve_and_each_is_scored_at_the_epoch_the_other_folds_chose():
    """Fold 0 (the one holding t0) peaks at epoch 4, the others at 3. The mean curve peaks at 3, so every fold
    stops at 3 + FOLD_PATIENCE; fold 0 is scored at 3 (the others' choice), not at its own best 4; the final
    fit runs the grid's schedule and stops at epoch 3."""
    from dataclasses import dataclass, field

    from taskfit.compare.cv import FOLD_PATIENCE, cv_fit
    from taskfit.config.base import ByEpochWithPatience, StrategyBase
    from taskfit.data.readers import Example
    from taskfit.strategies import Context
    from taskfit.strategies.base import Predictions
    from taskfit.tasks import get_task

    class Cfg(ByEpochWithPatience, StrategyBase):  # declares that it trains by epochs and stops early
        epochs: int = 30
        patience: int = 8

    @dataclass
    class Fake:
        config: Cfg
        ctx: Context
        log: list = field(default_factory=list)
        epoch: int = 0

        def fit(self, train, dev):
            assert dev == []  # nothing held out to restore a best epoch from
            for e in range(1, self.config.epochs + 1):
                self.epoch = e
                self.log.append({"epoch": e})
                if self.ctx.run.epoch_end is not None and self.ctx.run.epoch_end(e):
                    break

        def predict(self, examples):
            best = 4 if any(e.text == "t0" for e in examples) else 3
            labels = [
                e.label if self.epoch == best or i % 2 else ("b" if e.label == "a" else "a")
                for i, e in enumerate(examples)
            ]
            probs = torch.tensor([[0.9, 0.1] if lab == "a" else [0.1, 0.9] for lab in labels])
            return Predictions(labels, probs, ["a", "b"])

        def trainable_parameters(self):
            return (10, 10)

    built = []

    def build(cfg, ctx):
        built.append(Fake(cfg, ctx))
        return built[-1]

    pool = [Example(f"t{i}", "a" if i % 2 else "b") for i in range(20)]
    ctx = Context(labels=["a", "b"], seed=0)
    strategy, metrics = cv_fit(Cfg(), ctx, pool, [], 4, get_task("classification"), build)
    assert len(built) == 4 + 1  # k folds and the fit on all: no refits
    assert metrics["cv"]["epochs"] == 3 and metrics["cv"]["stopped_at"] == 3 + FOLD_PATIENCE
    assert [f.epoch for f in built[:4]] == [3 + FOLD_PATIENCE] * 4
    assert strategy.epoch == 3 and strategy.config.epochs == 30  # the same schedule, stopped at 3
    fold_scores = [s["dev_accuracy"] for s in metrics["cv"]["fold_scores"]]
    assert sorted(fold_scores) == pytest.approx([0.4, 1.0, 1.0, 1.0])  # t0's fold at epoch 3: 2 of 5 right
    assert metrics["dev_accuracy"] == pytest.approx(0.85)
    assert sum(r["probs"][r["gold"]] > 0.5 for r in metrics["oof"]) == 17


def test_the_fold_memory_check_runs_large_models_one_after_another():
    from taskfit.compare.lockstep import fits_at_once

    gb = 2**30
    assert fits_at_once(5, 11_000_000, 22_700_000, memory_bytes=24 * gb)  # minilm head-finetune
    assert not fits_at_once(5, 135_000_000, 135_000_000, memory_bytes=24 * gb)  # smollm2, full


# -- racing ------------------------------------------------------------------------------------------------


def _record(name: str, right: list[bool], gold: list[str], shots="all", status="ok") -> dict:
    def probs(g, ok):
        other = "b" if g == "a" else "a"
        return {g: 0.8, other: 0.2} if ok else {g: 0.2, other: 0.8}

    oof = [{"gold": g, "probs": probs(g, ok)} for g, ok in zip(gold, right)]
    return {"strategy": name, "backbone": "m", "shots": shots, "status": status, "metrics": {"oof": oof}}


def test_racing_stops_only_rows_clearly_behind_and_never_the_leader():
    from taskfit.compare.racing import race

    rng = random.Random(0)
    gold = ["a", "b"] * 40
    strong = [rng.random() < 0.9 for _ in gold]
    close = [rng.random() < 0.85 for _ in gold]
    weak = [rng.random() < 0.45 for _ in gold]
    records = [_record("strong", strong, gold), _record("close", close, gold), _record("weak", weak, gold)]
    verdicts = {v.row[0]: v for v in race(records, "all/0", ["a", "b"], "accuracy")}
    assert "strong" not in verdicts  # the leader is never judged
    assert verdicts["weak"].stopped and verdicts["weak"].gain > 3 * verdicts["weak"].noise
    assert not verdicts["close"].stopped
    assert "led by" in verdicts["weak"].reason("accuracy", 0)


GOLD_INDEX = np.array([0, 1] * 20)


def test_racing_never_stops_the_row_that_would_have_won():
    """Hand-built grids: three rows scored on the same 40 labels on 3 seeds (shots: all: a seed changes the
    folds and the initialisation, flipping a few predictions, not the examples). The row the full protocol
    picks (the best mean over the seeds) is never stopped by the race on seed 0 alone."""
    import numpy as np

    from taskfit.compare.racing import race
    from taskfit.compare.selection import _score

    gold = ["a", "b"] * 20
    stops = 0
    for trial in range(80):
        rng = random.Random(trial)
        ability = {"r0": 0.8, "r1": 0.75, "r2": 0.55}
        base = {n: [rng.random() < p for _ in gold] for n, p in ability.items()}
        seeds = {  # each seed flips 5% of a row's predictions
            n: [[(not ok) if rng.random() < 0.05 else ok for ok in base[n]] for _ in range(3)] for n in base
        }

        def f1(right):
            pred = np.where(np.array(right), GOLD_INDEX, 1 - GOLD_INDEX)
            return _score(GOLD_INDEX, pred, 2, "macro_f1")

        winner = max(seeds, key=lambda n: np.mean([f1(r) for r in seeds[n]]))
        records = [_record(n, seeds[n][0], gold) for n in seeds]
        stopped = {v.row[0] for v in race(records, "all/0", ["a", "b"], "macro_f1") if v.stopped}
        stops += len(stopped)
        assert winner not in stopped, (trial, winner, stopped)
    assert stops > 20  # it does stop rows: r2 is clearly behind on most grids


def test_a_stopped_row_is_shown_and_never_recommended():
    from taskfit.compare.summary import group_records, leaderboard, recommend
    from taskfit.config import BudgetConfig

    def rec(name, seed, score, status="ok"):
        r = {
            "cell": f"{name}/{seed}",
            "strategy": name,
            "backbone": "m",
            "method": name,
            "shots": "all",
            "seed": seed,
            "status": status,
            "error": "stopped after seed 0: x led by 0.300" if status == "stopped" else None,
            "metrics": {"dev_accuracy": score} if status == "ok" else None,
            "accuracy": None,
            "macro_f1": None,
        }
        return r

    records = [rec("a", 0, 0.70), rec("a", 1, 0.70), rec("b", 0, 0.95), rec("b", 1, 0, "stopped")]
    groups = group_records(records)
    lines = "\n".join(recommend(groups, BudgetConfig(), None, 0))
    assert "Best" in lines and "a (m)" in lines.split("Best", 1)[1].split("\n")[0]
    assert "Stopped by the race" in lines and "b (m)" in lines
    assert "(1 stopped)" in leaderboard(groups)


def test_a_cross_validated_grid_races_and_the_report_says_so(tmp_path, tiny_bert_dir, monkeypatch):
    """End to end on tiny models: a row far behind on seed 0 is not run on seed 1, and the summary marks it."""
    from taskfit.compare.engine import run_experiment
    from taskfit.config import validate_config

    csv = _reviews(tmp_path / "few.csv", 40)
    config = validate_config(
        {
            "name": "race",
            "data": {"train": str(csv), "shots": "all", "folds": 2},
            "seeds": [0, 1],
            "prompt": {
                "template": "Text: {text}\nLabel:{answer}",
                "verbalizer": {"pos": [" good"], "neg": [" bad"]},
                "label_descriptions": {"pos": "good great fun", "neg": "bad awful boring"},
            },
            "strategies": [
                {"name": "zero-shot", "backbone": str(tiny_bert_dir)},
                {
                    "name": "head-finetune",
                    "backbone": str(tiny_bert_dir),
                    "epochs": 2,
                    "lr": 1e-9,
                    "head_lr": 1e-9,
                },
            ],
            "final": "none",
        }
    )
    summary = run_experiment(config, tmp_path / "out", isolate=False)
    statuses = {(c["strategy"], c["seed"]): c["status"] for c in summary["cells"]}
    assert statuses[("head-finetune", 0)] == "ok"
    rows = {s["strategy"]: s for s in summary["strategies"]}
    assert statuses[("head-finetune", 1)] == "stopped", rows
    assert rows["head-finetune"]["stopped"].startswith("stopped after seed 0")
    assert "Stopped by the race" in "\n".join(summary["recommendation"])


def test_init_prints_the_protocol_and_writes_shots_all(tmp_path, monkeypatch, capsys):
    from taskfit.cli import main

    monkeypatch.chdir(tmp_path)
    _reviews(tmp_path / "few.csv", 40)
    assert main(["init", "few.csv"]) == 0
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert "protocol: 40 labelled examples" in out and "if the race stops" in out
    raw = yaml.safe_load((tmp_path / "few.yaml").read_text(encoding="utf-8"))
    assert raw["data"]["shots"] == "all"


def test_the_progress_estimate_starts_from_the_cost_model_and_follows_finished_cells():
    """On a 50-article file the time left read 'about 4m24s' for 9 minutes: it knew only finished cells."""
    from taskfit.progress import cell_estimate, estimate_left

    prior = {("a/m", "all"): 100.0, ("b/m", "all"): 50.0, ("z/m", "0"): 10.0}
    assert estimate_left([], [], [("a/m", "all"), ("z/m", "0")], 1, prior) == pytest.approx(110)
    finished = [
        ("b/m", "all", 100.0)
    ]  # b took twice its estimate: a, which trains too, is read twice as long
    assert cell_estimate("a/m", "all", finished, prior) == pytest.approx(200)
    assert cell_estimate("z/m", "0", finished, prior) == pytest.approx(10)  # a row that trains nothing: not
    assert estimate_left([], [], [("a/m", "all")], 1) is None  # without a prior: from the first cell on


def test_a_label_with_one_example_does_not_turn_the_protocol_into_a_carve(tmp_path):
    """On a 40-row trec file ABBR had one example: the file was split 29/3/8 instead of cross-validated."""
    from taskfit.compare.cv import _fold_count
    from taskfit.config import validate_config
    from taskfit.data.readers import Example
    from taskfit.tasks import load_pools

    rows = [{"text": f"{WORDS[i % 20]} {i}", "label": "ab"[i % 2]} for i in range(39)]
    rows.append({"text": "rare one", "label": "c"})
    csv = write_csv(tmp_path / "few.csv", rows)
    quick = quickstart.plan(str(csv))
    assert quick.raw["data"]["shots"] == "all"
    config = validate_config(quick.raw)
    pools = load_pools(config.data, config.task)
    assert pools.test == [] and len(pools.train) == 40 and pools.selection == "cv"
    assert any("'c' have 1 labelled example" in note for note in pools.notes)
    pool = [Example("x", "a")] * 10 + [Example("y", "b")] * 10 + [Example("z", "c")]
    assert _fold_count(pool, 5) == 5  # the singleton does not cut the folds to 2


def test_the_stop_rule_reads_only_the_epochs_reached_so_far():
    """Folds run one after another: fold 0's curve goes further than fold 1 has; its later epochs must not
    keep fold 1 training (review finding)."""
    from taskfit.compare.cv import stop_rule

    done = {e: (0.9 if e == 20 else 0.5) for e in range(1, 31)}  # fold 0 peaked late, at 20
    running = {e: (0.8 if e == 2 else 0.5) for e in range(1, 8)}  # fold 1 peaked at 2, now at 7
    assert stop_rule([done, running], 7, 5)  # up to epoch 7 the mean peaks at 2: stop
    assert not stop_rule([done, running], 6, 5)


def test_final_averages_the_rows_the_grid_cannot_tell_apart(tmp_path, tiny_bert_dir):
    """Two rows within noise of each other: final/ refits both and averages them; it loads and serves as one
    model, and its card names the members and the average's own cross-validated estimate."""
    import json

    from taskfit.compare.engine import run_experiment
    from taskfit.config import validate_config
    from taskfit.data.readers import Example
    from taskfit.serving.predictor import Predictor

    csv = _reviews(tmp_path / "few.csv", 40)
    row = {"name": "head-finetune", "backbone": str(tiny_bert_dir), "epochs": 2, "lr": 1e-3, "head_lr": 1e-2}
    config = validate_config(
        {
            "name": "close",
            "data": {"train": str(csv), "shots": "all", "folds": 2},
            "seeds": [0, 1],
            "race": False,
            "strategies": [{**row, "id": "first"}, {**row, "id": "second", "dropout": 0.2}],
        }
    )
    summary = run_experiment(config, tmp_path / "out", isolate=False)
    card = json.loads((tmp_path / "out" / "final" / "final.json").read_text())
    assert card["row"] == "ensemble", card
    assert sorted(m["row"] for m in card["members"]) == ["first", "second"]
    assert card["estimate"]["ensemble"]["seeds"] == 2 and card["estimate"]["ensemble"]["std"] is not None
    assert "Members" in (tmp_path / "out" / "final" / "README.md").read_text()
    saved = json.loads((tmp_path / "out" / "final" / "model" / "strategy.json").read_text())
    assert saved["members"] == ["members/0", "members/1"]
    predictor = Predictor.load(tmp_path / "out")
    out = predictor.predict([Example("good great fun"), Example("bad awful boring")])
    assert [set(o["scores"]) for o in out] == [{"neg", "pos"}] * 2
    assert abs(sum(out[0]["scores"].values()) - 1) < 1e-5
    assert "ensemble" in summary["final"]["row"]
    # one row alone when final_members is 1
    config = config.model_copy(update={"final_members": 1})
    run_experiment(config, tmp_path / "out", isolate=False)
    card = json.loads((tmp_path / "out" / "final" / "final.json").read_text())
    assert card["row"] in ("first", "second") and "members" not in card
    assert not (tmp_path / "out" / "final" / "model" / "members").exists()


def test_a_row_that_alone_would_take_most_of_the_budget_goes_before_seeds_and_folds(tmp_path):
    """Long texts (issue 38: 50 news articles ran 23 minutes against 15): contrastive's pairs cost the square
    of the length, so it is dropped first, and the rows that stay keep more of the protocol."""
    rows = [
        {"text": " ".join(["word", "news", "market"] * 180) + f" {i}", "label": "abcde"[i % 5]}
        for i in range(50)
    ]
    long = quickstart.plan(str(write_csv(tmp_path / "long.csv", rows)))
    assert long.cuts[0].startswith("strategy contrastive (minilm) dropped: alone it would take"), long.cuts
    assert long.estimate_s <= 15 * 60
    short = quickstart.plan(str(_reviews(tmp_path / "short.csv", 40)))
    assert not any("dropped" in c for c in short.cuts), short.cuts  # short texts: nothing that heavy
