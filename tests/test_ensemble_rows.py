"""Ensemble rows (compare/ensemble.py): seed ensembles average probabilities, a strategy ensemble's weights
are fitted on out-of-fold or dev predictions (each example once per row, test never), the rows reach the report."""

import csv
import json

from taskfit.compare import ensemble
from taskfit.compare.ensemble import ensemble_lines, ensemble_rows, seed_ensemble, strategy_ensemble
from taskfit.compare.summary import group_records, leaderboard
from taskfit.config import validate_config

from .conftest import write_csv

LABELS = ["a", "b"]


def _rows(texts, golds, p_a):
    return [
        {"text": t, "gold": g, "predicted": "a" if p >= 0.5 else "b", "probs": {"a": p, "b": 1 - p}}
        for t, g, p in zip(texts, golds, p_a)
    ]


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _cell(out, strategy, seed, test_p, dev_p=None, shots="4", oof=None, fit=1.0):
    """A finished cell's record and folder: test (and dev) predictions with P(a) as given."""
    cell = f"{strategy}/bb/k{shots}/seed-{seed}"
    test_gold = ["a", "a", "b", "b"][: len(test_p)]
    _write(
        out / cell / "predictions.jsonl", _rows([f"test {i}" for i in range(len(test_p))], test_gold, test_p)
    )
    metrics = {"oof": oof} if oof else {}
    if dev_p is not None:
        dev_gold = ["a", "b", "a", "b"][: len(dev_p)]
        _write(
            out / cell / "dev_predictions.jsonl",
            _rows([f"dev {i}" for i in range(len(dev_p))], dev_gold, dev_p),
        )
        metrics["dev_accuracy"] = sum((p >= 0.5) == (g == "a") for p, g in zip(dev_p, dev_gold)) / len(dev_p)
    acc = sum((p >= 0.5) == (g == "a") for p, g in zip(test_p, test_gold)) / len(test_p)
    return {
        "cell": cell, "strategy": strategy, "backbone": "bb", "method": strategy, "shots": shots, "seed": seed,
        "status": "ok", "accuracy": acc, "macro_f1": acc, "fit_seconds": fit, "predict_examples_per_s": 100.0,
        "trainable_params": 10, "total_params": 100, "peak_rss_mb": 50.0, "saved_mb": 1.0, "metrics": metrics,
    }  # fmt: skip


def test_a_seed_ensemble_averages_the_probabilities_of_its_fits(tmp_path):
    # each seed is right on 2 of 4 test examples; only the mean of their probabilities is right on all 4
    records = [
        _cell(tmp_path, "lora", 0, [0.9, 0.4, 0.45, 0.1], dev_p=[0.8, 0.3], fit=2.0),
        _cell(tmp_path, "lora", 1, [0.45, 0.8, 0.1, 0.6], dev_p=[0.4, 0.1], fit=3.0),
    ]
    (group,) = group_records(records)
    row = seed_ensemble(group, tmp_path, LABELS)
    assert row is not None and row.strategy == "lora (seed ensemble of 2)" and row.fits == 2
    assert row.score == 1.0 and row.mean("fit_seconds") == 5.0  # cost: the fits' times summed
    assert row.selection == 1.0  # the dev probabilities averaged too: (0.6, 0.25) -> a, b
    assert abs(row.mean("predict_examples_per_s") - 50.0) < 1e-9  # both models predict, one after the other


def test_a_seed_ensemble_without_a_shared_dev_sample_is_not_selectable(tmp_path):
    records = [
        _cell(tmp_path, "lora", 0, [0.9, 0.4, 0.45, 0.1], dev_p=[0.8, 0.3]),
        _cell(tmp_path, "lora", 1, [0.45, 0.8, 0.1, 0.6], dev_p=[0.4, 0.1, 0.7]),
    ]
    row = seed_ensemble(group_records(records)[0], tmp_path, LABELS)
    assert row.score == 1.0 and row.selection is None and "not selectable" in row.note


def _recording(monkeypatch):
    seen = []
    real = ensemble.ensemble_weights

    def record(fits, labels, **kw):
        seen.append({name: list(rows) for name, rows in fits.items()})
        return real(fits, labels, **kw)

    monkeypatch.setattr(ensemble, "ensemble_weights", record)
    return seen


def test_dev_weights_use_each_dev_example_once_per_row_and_never_test(tmp_path, monkeypatch):
    seen = _recording(monkeypatch)
    records = []
    for seed in (0, 1):
        records += [
            _cell(tmp_path, "good", seed, [0.9, 0.8, 0.2, 0.1], dev_p=[0.9, 0.2, 0.8, 0.1]),
            _cell(tmp_path, "fair", seed, [0.6, 0.4, 0.4, 0.3], dev_p=[0.6, 0.4, 0.4, 0.4]),
            _cell(tmp_path, "poor", seed, [0.4, 0.6, 0.6, 0.6], dev_p=[0.4, 0.6, 0.6, 0.6]),
        ]
    groups = group_records(records)
    assert groups[0].by == "dev"
    row = strategy_ensemble(groups, tmp_path, LABELS)
    assert row is not None and row.strategy.startswith("ensemble of ") and len(row.ok) == 2  # one per seed
    assert row.fits == 6 and row.mean("fit_seconds") == 3.0  # per seed: the three fits summed
    assert seen  # the weights are fitted on parts of dev (the gain's check) and, when kept, on all of it
    for fits in seen:
        for rows in fits.values():
            texts = [r["text"] for r in rows]
            assert len(texts) == len(set(texts)) <= 4  # each dev example at most once per row
            assert all(t.startswith("dev ") for t in texts)  # never a test example
    assert {r["text"] for fits in seen for rows in fits.values() for r in rows} == {
        f"dev {i}" for i in range(4)
    }
    assert abs(sum(row.ok[0]["weights"].values()) - 1) < 1e-9 and row.ok[0]["weights"]["good (bb)"] > 0.5


def test_out_of_fold_weights_use_each_pool_example_once_per_row(tmp_path, monkeypatch):
    seen = _recording(monkeypatch)
    pool_gold = ["a", "b"] * 6

    def oof(right):  # one out-of-fold record per pool example; right (0.8 on the gold label) where right(i)
        return [
            {
                "i": i,  # where it sits in the pool (the ensemble ignores it)
                "gold": g,
                "probs": {g: 0.8 if right(i) else 0.2, ("b" if g == "a" else "a"): 0.2 if right(i) else 0.8},
            }
            for i, g in enumerate(pool_gold)
        ]

    records = []
    for seed in (0, 1):
        for name, right in (("x", lambda i: i % 4 != 0), ("y", lambda i: i % 3 != 0)):
            records.append(_cell(tmp_path, name, seed, [0.9, 0.8, 0.2, 0.1], oof=oof(right)))
            records[-1]["metrics"]["dev_accuracy"] = 0.7  # the folds' mean score
    groups = group_records(records)
    row = strategy_ensemble(groups, tmp_path, LABELS)
    assert row is not None and "out-of-fold" in row.note
    for fits in seen:  # parts of the pool (the gain's check), and all of it when the weights are kept
        for name, rows in fits.items():
            cell = next(r for r in records if f"{r['strategy']} (bb)" == name)
            positions = [r["i"] for r in rows]
            assert positions == sorted(set(positions))  # each pool example at most once, in pool order
            assert all(r == cell["metrics"]["oof"][r["i"]] for r in rows)
    assert {r["i"] for fits in seen for rows in fits.values() for r in rows} == set(range(len(pool_gold)))


def test_a_top_row_that_cannot_join_an_out_of_fold_ensemble_is_named(tmp_path):
    """A row without training data is scored on a dev sample, not on the folds: it cannot be weighted with
    out-of-fold predictions, and the note says it was left out although ranked above the members."""
    pool_gold = ["a", "b"] * 6
    oof = [{"gold": g, "probs": {g: 0.8, ("b" if g == "a" else "a"): 0.2}} for g in pool_gold]
    records = [_cell(tmp_path, "zs", None, [0.9, 0.8, 0.2, 0.1], dev_p=[0.9, 0.1, 0.8, 0.2], shots="0")]
    for seed in (0, 1):
        for name in ("x", "y"):
            records.append(_cell(tmp_path, name, seed, [0.9, 0.8, 0.2, 0.1], oof=oof))
            records[-1]["metrics"]["dev_accuracy"] = 0.7
    groups = group_records(records)
    candidates = sorted(groups, key=lambda g: -g.rank)
    assert candidates[0].strategy == "zs"
    row = strategy_ensemble(candidates, tmp_path, LABELS)
    assert row is not None and row.strategy == "ensemble of x + y"
    assert "ranked above a member but left out" in row.note and "zs (bb)" in row.note


def test_rows_ranked_on_test_are_never_ensembled_across_strategies(tmp_path):
    records = [_cell(tmp_path, name, 0, [0.9, 0.8, 0.2, 0.1]) for name in ("x", "y")]  # no dev scores
    groups = group_records(records)
    assert groups[0].by == "test" and strategy_ensemble(groups, tmp_path, LABELS) is None


def test_ensemble_rows_are_marked_in_the_leaderboard(tmp_path):
    records = []
    for seed in (0, 1):
        records += [
            _cell(tmp_path, "good", seed, [0.9, 0.8, 0.2, 0.1], dev_p=[0.9, 0.2, 0.8, 0.1]),
            _cell(tmp_path, "fair", seed, [0.6, 0.4, 0.4, 0.3], dev_p=[0.6, 0.4, 0.4, 0.4]),
        ]
    groups = group_records(records)
    rows = ensemble_rows(groups, tmp_path, LABELS)
    assert [r.ensemble for r in rows] == ["strategies", "seeds", "seeds"]
    table = leaderboard(groups, None, rows)
    assert "good (seed ensemble of 2)" in table and "ensemble of good + fair" in table and "(4 fits)" in table
    (line,) = ensemble_lines(rows, groups[0])
    assert "K=4" in line and "never chosen" in line and "ensemble of good + fair" in line
    fair = next(g for g in groups if g.strategy == "fair")  # were it recommended, better ensembles are named
    assert (
        "Ahead of the recommended row on dev: ensemble of good + fair (bb), good (seed ensemble of 2) (bb)."
        in (ensemble_lines(rows, fair)[0])
    )


def test_a_tiny_grid_reports_its_ensemble_rows(sentiment_csv, tiny_bert_dir, tmp_path):
    raw = {
        "name": "ens",
        "data": {"train": str(sentiment_csv), "shots": [2], "dev_shots": 2},
        "seeds": [0, 1],
        "workers": 1,
        "final": "none",
        "ensembles": ["seeds", "strategies"],
        "strategies": [
            {"name": "zero-shot", "backbone": str(tiny_bert_dir)},
            {"name": "head-finetune", "backbone": str(tiny_bert_dir), "epochs": 1},
        ],
    }
    from taskfit.compare import run_experiment

    out = tmp_path / "out"
    summary = run_experiment(validate_config(raw), out, isolate=False)
    assert (out / "head-finetune" / "tiny-bert0" / "k2" / "seed-0" / "dev_predictions.jsonl").exists()
    kinds = {e["ensemble"] for e in summary["ensembles"]}
    assert kinds == {"seeds", "strategies"}
    assert {(s["strategy"], s["shots"]) for s in summary["strategies"]} == {
        ("zero-shot", "0"),
        ("head-finetune", "2"),
    }
    assert {e["shots"] for e in summary["ensembles"]} == {"2"}  # the strategy ensemble is a K=2 row
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "head-finetune (seed ensemble of 2)" in md and "ensemble of " in md
    assert "head-finetune (seed ensemble of 2)" in (out / "report.html").read_text(encoding="utf-8")
    assert "never chosen" in "\n".join(summary["recommendation"])
    with open(out / "cells.csv", encoding="utf-8") as f:
        assert sum(r["status"] == "ensemble" for r in csv.DictReader(f)) == 3  # 1 seed row + 2 seeds


def _cv_grid(name, train, tmp_path, strategies) -> dict:
    """A K=2, two-seed, 2-fold cross-validated grid with a strategy ensemble and a 20-text test file."""
    rows = [
        {"text": f"{w} and {w} again {i}", "label": lab}
        for i, (w, lab) in enumerate([("great", "positive"), ("awful", "negative")] * 10)
    ]
    test = write_csv(tmp_path / "test.csv", rows)
    return {
        "name": name,
        "data": {"train": str(train), "test": str(test), "shots": [2], "selection": "cv", "folds": 2},
        "seeds": [0, 1],
        "workers": 1,
        "final": "none",
        "ensembles": ["strategies"],
        "strategies": strategies,
    }


def test_a_cross_validated_grid_fits_the_weights_on_out_of_fold_predictions(
    sentiment_csv, tiny_bert_dir, tmp_path, monkeypatch
):
    seen = _recording(monkeypatch)
    raw = _cv_grid(
        "ens-cv",
        sentiment_csv,
        tmp_path,
        [
            {"name": "head-finetune", "backbone": str(tiny_bert_dir), "epochs": 1},
            {"name": "bitfit", "backbone": str(tiny_bert_dir), "epochs": 1},
        ],
    )
    from taskfit.compare import run_experiment

    summary = run_experiment(validate_config(raw), tmp_path / "out", isolate=False)
    (row,) = summary["ensembles"]
    assert "out-of-fold" in row["note"] and row["runs"] == 2  # one weight fit per seed
    # K=2 per class and no dev file: the pool is 4 examples, each predicted once per row out of fold; the
    # weights are fitted on halves of it (the gain's check), on all 4 only where the mix is kept
    sizes = {len(rows) for fits in seen for rows in fits.values()}
    assert 2 in sizes and sizes <= {2, 4}


def test_without_a_test_split_ensemble_rows_say_why_they_are_missing(sentiment_csv, tiny_bert_dir, tmp_path):
    """A few labels, no dev, no test: cross-validation scores every row and there is nothing left to score an
    ensemble whose weights were fitted on those same out-of-fold predictions; the report says so."""
    raw = {
        "name": "ens-none",
        "data": {"train": str(sentiment_csv), "shots": [2], "selection": "cv", "folds": 2},
        "seeds": [0],
        "workers": 1,
        "final": "none",
        "ensembles": ["seeds", "strategies"],
        "strategies": [{"name": "head-finetune", "backbone": str(tiny_bert_dir), "epochs": 1}],
    }
    from taskfit.compare import run_experiment

    summary = run_experiment(validate_config(raw), tmp_path / "out", isolate=False)
    assert summary["ensembles"] == []
    assert any("ensembles: none built" in n and "no test split" in n for n in summary["notes"])


def test_a_row_without_training_data_joins_with_its_predictions_on_each_seed_s_pool(tmp_path, monkeypatch):
    """In a cross-validated grid a K=0 row predicts every seed's labelled pool: at each seed the ensemble
    fits its weight on that seed's pool (aligned with the trained rows' out-of-fold records), not another's."""
    seen = _recording(monkeypatch)
    pool_gold = ["a", "b"] * 6

    def records_for(tag, right):
        return [
            {"tag": tag, "gold": g, "probs": {g: 0.9 if right(i) else 0.1, ("b" if g == "a" else "a"): 0.1 if right(i) else 0.9}}
            for i, g in enumerate(pool_gold)
        ]  # fmt: skip

    zs = _cell(tmp_path, "zs", None, [0.9, 0.8, 0.2, 0.1], shots="0")
    zs["metrics"] = {
        "dev_accuracy": 0.9,
        "pool_predictions": {f"4/{s}": records_for(f"zs pool {s}", lambda i: i % 5 != 0) for s in (0, 1)},
    }
    other = _cell(tmp_path, "zs-other", None, [0.9, 0.8, 0.2, 0.1], shots="0")  # on a second backbone
    records = [zs, {**other, "strategy": "zs", "backbone": "other", "metrics": zs["metrics"]}]
    for seed in (0, 1):
        for name, right in (("x", lambda i: i % 4 != 0), ("y", lambda i: i % 3 != 0)):
            records.append(_cell(tmp_path, name, seed, [0.9, 0.8, 0.2, 0.1], oof=records_for(name, right)))
            records[-1]["metrics"]["dev_accuracy"] = 0.7
    candidates = sorted(group_records(records), key=lambda g: -g.rank)
    assert candidates[0].strategy == "zs"
    row = strategy_ensemble(candidates, tmp_path, LABELS)
    assert (
        row is not None
        and row.strategy == "ensemble of zs (bb) + zs (other) + x"
        and "left out" not in row.note
    )
    assert [r["seed"] for r in row.ok] == [0, 1] and row.ok[0]["cell"] == "ensemble/k4/seed-0"
    tags = {r["tag"] for fits in seen for r in fits["zs (bb)"]}
    assert tags == {"zs pool 0", "zs pool 1"}  # each seed's own pool; every fit within one seed's pool
    assert all(len({r["tag"] for r in fits["zs (bb)"]}) == 1 for fits in seen)


def test_a_cross_validated_grid_scores_zero_shot_on_every_seed_s_pool(sentiment_csv, tiny_bert_dir, tmp_path):
    """zero-shot learns nothing: in a cv grid it predicts the labelled pool of every (K, seed) cell, in that
    cell's pool order, is ranked on those labels, and joins the out-of-fold ensemble; its key says so, and a
    dev grid's K=0 cell keeps the key and the dev sample it had."""
    from taskfit.compare import run_experiment
    from taskfit.compare.plan import plan_cells

    raw = _cv_grid(
        "zs-cv",
        sentiment_csv,
        tmp_path,
        [
            {"name": "zero-shot", "backbone": str(tiny_bert_dir)},
            {"name": "head-finetune", "backbone": str(tiny_bert_dir), "epochs": 1},
        ],
    )
    config = validate_config(raw)
    dev_raw = {**raw, "data": {**raw["data"], "selection": "dev"}}
    (zs_cv,) = [c for c in plan_cells(config, "f") if c.shots == 0]
    (zs_dev,) = [c for c in plan_cells(validate_config(dev_raw), "f") if c.shots == 0]
    assert zs_cv.pools == ((2, 0), (2, 1)) and zs_dev.pools == () and zs_cv.key != zs_dev.key

    out = tmp_path / "out"
    summary = run_experiment(config, out, isolate=False)
    zs = json.loads((out / "zero-shot" / "tiny-bert0" / "k0" / "metrics.json").read_text(encoding="utf-8"))
    pools = zs["pool_predictions"]
    assert sorted(pools) == ["2/0", "2/1"]
    for seed in (0, 1):
        hf = json.loads(
            (out / "head-finetune" / "tiny-bert0" / "k2" / f"seed-{seed}" / "metrics.json").read_text(
                encoding="utf-8"
            )
        )
        assert [r["gold"] for r in pools[f"2/{seed}"]] == [
            r["gold"] for r in hf["oof"]
        ]  # the same pool order
        assert len(pools[f"2/{seed}"]) == hf["cv"]["pool"] == 4
    assert 4 <= zs["dev_examples_scored"] <= 8  # the two pools' examples, each once
    (row,) = summary["ensembles"]
    assert "zero-shot" in row["strategy"] and "left out" not in row["note"]


def test_the_mix_is_kept_on_every_seed_or_none_from_the_seeds_gains_pooled():
    from taskfit.compare.cv import across_seeds

    # one seed's check kept a mix (+0.12), the others gained nothing: the mean +0.016 is inside the noise
    lucky = [
        {"gain": 0.12, "chosen": True},
        *({"gain": g, "chosen": False} for g in (-0.03, 0.0, -0.02, 0.01)),
    ]
    rule = across_seeds(lucky)
    assert rule["chosen"] is False and rule["seeds"] == 5 and abs(rule["gain"] - 0.016) < 1e-9
    assert rule["noise"] > rule["gain"]
    # a gain on every seed, none of them large alone: kept everywhere
    steady = [{"gain": g, "chosen": False} for g in (0.03, 0.02, 0.04, 0.025, 0.035)]
    assert across_seeds(steady)["chosen"] is True
    # one seed: no pooled decision, the seed's own verdict stands
    assert across_seeds(lucky[:1]) is None
    # two seeds, one too small to measure a gain: not kept anywhere (never on one seed only)
    assert across_seeds([{"gain": None}, {"gain": 0.1, "chosen": True}])["chosen"] is False


def _scripted_gains(tmp_path, monkeypatch, gains: list[float], seeds: tuple[int, ...]) -> list[dict]:
    """Two rows (x ahead of y on dev) on each seed, whose ensemble check reports ``gains`` in turn (one per
    seed, cycling) with noise 0.01; the records, with their predictions written under ``tmp_path``."""
    import itertools

    real = ensemble.checked_weights
    scripted = itertools.cycle(gains)

    def fake(fits, labels, best, score="accuracy", parts=5, weight=None):
        weights, verdict = real(fits, labels, best, score, parts, weight)
        gain = next(scripted)
        return weights, {**verdict, "gain": gain, "noise": 0.01, "chosen": gain > 0}

    monkeypatch.setattr(ensemble, "checked_weights", fake)
    pool_gold = ["a", "b"] * 6

    def oof(right):
        return [
            {"gold": g, "probs": {g: 0.8 if right(i) else 0.2, ("b" if g == "a" else "a"): 0.2 if right(i) else 0.8}}
            for i, g in enumerate(pool_gold)
        ]  # fmt: skip

    records = []
    for seed in seeds:
        for name, right, score in (("x", lambda i: i % 4 != 0, 0.75), ("y", lambda i: i % 3 != 0, 0.7)):
            records.append(_cell(tmp_path, name, seed, [0.9, 0.8, 0.2, 0.1], oof=oof(right)))
            records[-1]["metrics"]["dev_accuracy"] = score
    return records


def test_a_strategy_ensemble_applies_the_pooled_decision_to_every_seed(tmp_path, monkeypatch):
    """Seed 0's own check keeps the mix, seed 1's gain is negative: pooled over the two seeds the mix is
    not kept, so both seeds' rows are the best member alone (seed 0's own verdict is kept for the record)."""
    records = _scripted_gains(tmp_path, monkeypatch, [0.3, -0.2], (0, 1))
    row = strategy_ensemble(group_records(records), tmp_path, LABELS)
    assert row is not None and [r["seed"] for r in row.ok] == [0, 1]
    assert all(r["weights"] == {"x (bb)": 1.0, "y (bb)": 0.0} for r in row.ok)
    assert row.ok[0]["weighted"]["seed_chosen"] is True and row.ok[0]["weighted"]["chosen"] is False
    assert "kept on no seed" in row.note and "averaged +0.050 over 2 seeds" in row.note


def test_a_seed_the_ensemble_cannot_report_does_not_vote_on_the_mix(tmp_path, monkeypatch):
    """Seed 2's member lost its test predictions: the row reports seeds 0 and 1, and only their gains decide
    (with seed 2's -0.9 counted, the mean would be -0.1 and the mix dropped)."""
    records = _scripted_gains(tmp_path, monkeypatch, [0.3, 0.3, -0.9], (0, 1, 2))
    (tmp_path / "y/bb/k4/seed-2/predictions.jsonl").unlink()
    row = strategy_ensemble(group_records(records), tmp_path, LABELS)
    assert row is not None and [r["seed"] for r in row.ok] == [0, 1]
    assert all(r["weighted"]["chosen"] is True for r in row.ok)
    assert "kept on every seed" in row.note and "over 2 seeds" in row.note
