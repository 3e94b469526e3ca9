"""`taskfit compare`: up-front validation, isolated failing cells, resume after SIGKILL, search, the report."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest
import yaml

from taskfit.cli import main
from taskfit.compare import run_experiment, store
from taskfit.compare.summary import Group, recommend
from taskfit.config import BudgetConfig, validate_config
from taskfit.errors import TaskfitError

from . import processes


def grid(train_csv, bert, llama=None, **extra):
    raw = {
        "name": "grid",
        "data": {"train": str(train_csv), "shots": [2, 4], "dev_shots": 2},
        "seeds": [0, 1],
        "workers": 1,
        "threads_per_worker": 1,
        "strategies": [
            {"name": "zero-shot", "backbone": str(bert)},
            {"name": "head-finetune", "backbone": str(bert), "epochs": 2},
        ],
    }
    if llama:
        raw["prompt"] = {
            "template": "Review: {text}\nSentiment:{answer}",
            "verbalizer": {"positive": " positive", "negative": " negative"},
        }
    raw.update(extra)
    return raw


def leaderboard_values(summary):
    return sorted(
        (
            r["strategy"],
            r["backbone"],
            r["shots"],
            r["runs"],
            r["failed"],
            r["accuracy_mean"],
            r["macro_f1_mean"],
        )
        for r in summary["strategies"]
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"name": "prompt-finetune", "backbone": "BERT"}, "'prompt-finetune' needs a causal-lm backbone"),
        (
            {"name": "bitfit", "backbone": "LLAMA"},
            "'bitfit' needs an encoder backbone, but .* is a causal-lm",
        ),
        ({"name": "prompt-tune"}, "unknown strategy 'prompt-tune'"),
    ],
)
def test_grid_is_validated_before_any_cell_runs(
    edit, message, sentiment_csv, tiny_bert_dir, tiny_llama_dir, tmp_path
):
    raw = grid(sentiment_csv, tiny_bert_dir, tiny_llama_dir)
    edit = {k: {"BERT": str(tiny_bert_dir), "LLAMA": str(tiny_llama_dir)}.get(v, v) for k, v in edit.items()}
    raw["strategies"].append(edit)
    with pytest.raises(TaskfitError, match=message):
        run_experiment(validate_config(raw), tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing ran, nothing written


def test_a_shots_value_the_data_cannot_give_is_rejected_up_front(sentiment_csv, tiny_bert_dir, tmp_path):
    raw = grid(sentiment_csv, tiny_bert_dir)
    raw["data"]["shots"] = [4, 500]
    with pytest.raises(TaskfitError, match="K=500 examples per class"):
        run_experiment(validate_config(raw), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_crashing_cell_fails_alone_and_the_report_shows_it(sentiment_csv, tiny_bert_dir, tmp_path, capsys):
    broken = tmp_path / "broken-bert"
    shutil.copytree(tiny_bert_dir, broken)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")  # loads fine until the weights
    raw = grid(sentiment_csv, tiny_bert_dir, seeds=[0], workers=2)
    raw["data"]["shots"] = 4
    raw["strategies"].append({"name": "lora", "backbone": str(broken), "epochs": 1})
    summary = run_experiment(validate_config(raw), tmp_path / "out")  # each cell in its own process
    rows = {r["strategy"]: r for r in summary["strategies"]}
    assert rows["lora"]["failed"] == 1 and rows["lora"]["runs"] == 0
    assert rows["head-finetune"]["runs"] == 1 and rows["zero-shot"]["runs"] == 1
    cell = tmp_path / "out" / "lora" / "broken-bert" / "k4" / "seed-0"
    assert (cell / "error.txt").exists() and not (cell / "metrics.json").exists()
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Failed cells" in html and "lora/broken-bert/k4/seed-0" in html
    db = store.open_existing(tmp_path / "out")
    assert [r["cell"] for r in store.rows(db, status="failed")] == ["lora/broken-bert/k4/seed-0"]
    capsys.readouterr()
    assert main(["runs", "list", str(tmp_path / "out"), "--status", "failed"]) == 0
    listed = capsys.readouterr().out
    assert "lora/broken-bert/k4/seed-0" in listed and "head-finetune" not in listed
    assert main(["runs", "show", str(tmp_path / "out"), "lora/broken"]) == 0
    assert "failed" in capsys.readouterr().out
    assert main(["runs", "export", str(tmp_path / "out"), "--output", str(tmp_path / "cells.csv")]) == 0
    lines = (tmp_path / "cells.csv").read_text().splitlines()
    assert lines[0].startswith("cell,key,strategy") and len(lines) == 4


def test_grid_cells_are_nested_in_k_and_skipped_when_finished(sentiment_csv, tiny_bert_dir, tmp_path, capsys):
    cfg = validate_config(grid(sentiment_csv, tiny_bert_dir))
    first = run_experiment(cfg, tmp_path / "out", isolate=False)
    out = tmp_path / "out"
    cells = sorted(str(p.parent.relative_to(out)) for p in out.rglob("metrics.json"))
    assert cells == [f"head-finetune/tiny-bert0/k{k}/seed-{s}" for k in (2, 4) for s in (0, 1)] + [
        "zero-shot/tiny-bert0/k0"
    ]
    k2 = json.loads((out / "head-finetune/tiny-bert0/k2/seed-0/cell.json").read_text())
    assert k2["shots"] == 2 and k2["data"]["shots"] == 2
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("metrics.json")}
    capsys.readouterr()
    again = run_experiment(cfg, out, isolate=False)
    assert "5 cells, 5 already finished" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("metrics.json")} == stamps
    assert leaderboard_values(again) == leaderboard_values(first)
    # a changed setting makes exactly that strategy's cells stale
    changed = grid(sentiment_csv, tiny_bert_dir)
    changed["strategies"][1]["lr"] = 1e-4
    run_experiment(validate_config(changed), out, isolate=False)
    assert "5 cells, 1 already finished, 4 to run" in capsys.readouterr().out


def test_sigkill_midway_then_rerun_finishes_without_redoing_cells(sentiment_csv, tiny_bert_dir, tmp_path):
    raw = grid(sentiment_csv, tiny_bert_dir)
    raw["strategies"][1]["epochs"] = 3
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(raw))
    command = [sys.executable, "-m", "taskfit", "compare", str(tmp_path / "grid.yaml"), "--output"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [*command, str(killed)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    # wait on the event (two cells finished), walking with a helper that tolerates folders a running cell
    # removes meanwhile (its checkpoint rotation): Path.rglob raises FileNotFoundError on those
    processes.wait_until(
        lambda: len(processes.find(killed, "metrics.json")) >= 2 or process.poll() is not None,
        "two cells to finish",
        poll_s=0.05,
    )
    # freeze the grid and its cells at once, so that no other cell finishes between counting and the kill;
    # then kill the grid only and let its orphaned cells run on: they must notice and exit
    pids = processes.freeze(process.pid)
    process.send_signal(signal.SIGKILL)
    process.wait(processes.FAILSAFE_S)
    finished = {p: p.stat().st_mtime_ns for p in processes.find(killed, "metrics.json")}
    assert 2 <= len(finished) < 5, "the kill should land mid-grid"
    processes.signal_all(pids[1:], signal.SIGCONT)
    processes.wait_until(lambda: processes.gone(pids), "the orphaned cells to exit", poll_s=0.1)
    # an orphan notices the kill within a second (its watcher polls); one that was in its last second may
    # finish its cell first, and that result (written atomically) is kept, not redone: count after they exit
    kept = {p: p.stat().st_mtime_ns for p in processes.find(killed, "metrics.json")}
    assert finished.items() <= kept.items()
    rerun = subprocess.run(
        [*command, str(killed)], env=env, capture_output=True, text=True, timeout=processes.FAILSAFE_S
    )
    assert rerun.returncode == 0, rerun.stderr
    assert f"5 cells, {len(kept)} already finished" in rerun.stdout
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # not redone
    straight = subprocess.run(
        [*command, str(tmp_path / "straight")],
        env=env,
        capture_output=True,
        text=True,
        timeout=processes.FAILSAFE_S,
    )
    assert straight.returncode == 0, straight.stderr
    resumed = json.loads((killed / "results.json").read_text())
    uninterrupted = json.loads((tmp_path / "straight" / "results.json").read_text())
    assert leaderboard_values(resumed) == leaderboard_values(uninterrupted)
    assert all(r["status"] == "ok" for r in resumed["cells"]) and len(resumed["cells"]) == 5


def test_search_tunes_on_dev_only_and_records_the_choice(sentiment_csv, tiny_bert_dir, tmp_path, monkeypatch):
    import taskfit.training.loop as loop_module  # the dev accuracy a trial is judged on (Task.dev_score)

    raw = grid(sentiment_csv, tiny_bert_dir, seeds=[0])
    raw["data"]["shots"] = 4
    raw["strategies"] = [
        {
            "name": "head-finetune",
            "backbone": str(tiny_bert_dir),
            "search": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}, "epochs": [1, 2]},
            "trials": 3,
        }
    ]
    scored: list[str] = []
    real_accuracy = loop_module.accuracy
    monkeypatch.setattr(
        loop_module, "accuracy", lambda p, ex: scored.extend(e.source for e in ex) or real_accuracy(p, ex)
    )
    summary = run_experiment(validate_config(raw), tmp_path / "out", isolate=False)
    cell = tmp_path / "out" / "head-finetune" / "tiny-bert0" / "k4" / "seed-0"
    trials = [json.loads(line) for line in (cell / "search.jsonl").read_text().splitlines()]
    assert [t["trial"] for t in trials[:3]] == [0, 1, 2] and trials[3]["event"] == "chosen"
    assert trials[3]["dev_accuracy"] == max(t["dev_accuracy"] for t in trials[:3])
    chosen = json.loads((cell / "metrics.json").read_text())["chosen"]
    assert 1e-4 <= chosen["lr"] <= 1e-2 and chosen["epochs"] in (1, 2)
    saved = json.loads((cell / "model" / "strategy.json").read_text())["strategy"]
    assert saved["lr"] == chosen["lr"] and saved["search"] is None
    test_sources = {r["text"] for r in map(json.loads, (cell / "predictions.jsonl").read_text().splitlines())}
    assert len(scored) == 3 * 4 and test_sources  # three trials, each scored on the 4 dev examples only
    assert summary["strategies"][0]["chosen"] == [chosen]
    assert "Hyperparameters chosen on dev" in (tmp_path / "out" / "report.md").read_text()


def test_report_embeds_the_plots(sentiment_csv, tiny_bert_dir, tmp_path):
    run_experiment(validate_config(grid(sentiment_csv, tiny_bert_dir)), tmp_path / "out", isolate=False)
    html = (tmp_path / "out" / "report.html").read_text()
    for plot in ("shots", "cost", "learning"):
        assert f'<figure id="plot-{plot}"><svg' in html
        assert (tmp_path / "out" / "plots" / f"{plot}.svg").exists()
        assert f"](plots/{plot}.svg)" in (tmp_path / "out" / "report.md").read_text()
    assert "<script" not in html and "http" not in html.split("<svg", 1)[0]  # self-contained


def _group(name, shots, accs, trainable=0, fit=1.0):
    g = Group(name, "bb", name, shots)
    for seed, acc in accs.items():
        g.ok.append(
            {
                "seed": seed,
                "accuracy": acc,
                "macro_f1": acc,
                "trainable_params": trainable,
                "fit_seconds": fit,
                "predict_examples_per_s": 100.0,
                "peak_rss_mb": 500.0,
                "saved_mb": 1.0,
                "cell": f"{name}/{seed}",
            }
        )
    return g


def test_recommendation_separates_real_differences_from_seed_noise():
    best = _group("big", "16", {0: 0.80, 1: 0.82, 2: 0.81}, trainable=1_000_000, fit=60)
    close = _group("small", "16", {0: 0.79, 1: 0.83, 2: 0.80}, trainable=10_000, fit=5)
    behind = _group("weak", "16", {0: 0.60, 1: 0.61, 2: 0.62}, trainable=0, fit=1)
    text = "\n".join(recommend([best, close, behind], BudgetConfig(), {"label": "pos", "accuracy": 0.5}, 500))
    assert "Best by accuracy at K=16" in text and "**big (bb)** 0.810 ± 0.010" in text
    noise_line = next(line for line in text.splitlines() if "Not distinguishable" in line)
    assert "small (bb)" in noise_line and "weak" not in noise_line
    assert re.search(r"Cheapest within noise of the best\*\* \(.*?\): \*\*small \(bb\)\*\*", text)
    budgeted = "\n".join(recommend([best, close, behind], BudgetConfig(trainable_params=100), None, 500))
    assert "**Best within your budget** (trainable params ≤ 100): **weak (bb)**" in budgeted


def test_plan_covers_the_grid_and_keys_change_only_with_what_decides_a_result(sentiment_csv, tiny_bert_dir):
    from taskfit.compare.plan import data_fingerprint, plan_cells
    from taskfit.tasks import load_pools

    raw = grid(sentiment_csv, tiny_bert_dir)
    raw["data"]["shots"] = [4, "all", 2]
    cfg = validate_config(raw)
    fingerprint = data_fingerprint(load_pools(cfg.data))
    cells = plan_cells(cfg, fingerprint)
    assert [c.path for c in cells] == ["zero-shot/tiny-bert0/k0"] + [
        f"head-finetune/tiny-bert0/k{k}/seed-{s}" for k in ("2", "4", "all") for s in (0, 1)
    ]
    assert len({c.key for c in cells}) == len(cells)
    renamed = validate_config({**raw, "name": "other", "workers": 2})  # bookkeeping, not results
    assert [c.key for c in plan_cells(renamed, fingerprint)] == [c.key for c in cells]
    assert [c.key for c in plan_cells(cfg, "edited data")] != [c.key for c in cells]


def test_compare_runs_the_data_checks_first_and_shows_the_majority_row(
    sentiment_csv, tiny_bert_dir, tmp_path, capsys
):
    rows = sentiment_csv.read_text().splitlines()
    fresh = [
        f"{w} unseen {i},{lab}"
        for i, (w, lab) in enumerate([("good", "positive"), ("awful", "negative")] * 4)
    ]
    (tmp_path / "test.csv").write_text("\n".join([rows[0], *rows[1:4], *fresh]) + "\n")  # 3 leaked rows
    raw = grid(sentiment_csv, tiny_bert_dir, seeds=[0])
    raw["data"].update({"shots": 4, "test": str(tmp_path / "test.csv")})
    raw["strategies"] = raw["strategies"][:1]
    run_experiment(validate_config(raw), tmp_path / "out", isolate=False)
    printed = capsys.readouterr().out
    assert "data check: duplicates.cross-split: 3 text(s) of test also in train" in printed
    report = (tmp_path / "out" / "report.md").read_text()
    assert "data check: duplicates.cross-split" in report
    assert "| majority class (always '" in report


def test_a_zero_shot_row_scored_on_the_pools_is_paired_with_a_trained_row_pool_by_pool():
    """Each seed's pool is easier or harder for every row alike: paired pool by pool, a trained row 0.02
    ahead on every pool is clearly ahead; against one score on the union of the pools it would not be."""
    from taskfit.compare.summary import paired_p_value

    hardness = {0: 0.70, 1: 0.80, 2: 0.90}  # zero-shot's accuracy on each seed's pool of 50 examples

    def pool(seed):
        right = round(hardness[seed] * 50)
        return [
            {"gold": "a", "probs": {"a": 0.9, "b": 0.1} if i < right else {"a": 0.1, "b": 0.9}}
            for i in range(50)
        ]

    zero = _group("zs", "0", {None: 0.80})
    zero.ok[0]["dev_accuracy"] = 0.80
    zero.ok[0]["metrics"] = {"pool_predictions": {f"16/{s}": pool(s) for s in hardness}}
    trained = _group("ft", "16", {s: v + 0.02 for s, v in hardness.items()})
    for r in trained.ok:
        r["dev_accuracy"] = r["accuracy"]
    for g in (zero, trained):
        g.by = "dev"
    p, how = paired_p_value(trained, zero)
    assert how == "paired over seeds" and p < 1e-6  # the same +0.02 on every pool
    zero.ok[0]["metrics"] = {}  # no pool predictions: its one score against each seed's
    p_union, _ = paired_p_value(trained, zero)
    assert p_union > 0.5
