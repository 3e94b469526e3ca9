"""True few-shot: one small file, no dev or test. ``data.selection: auto`` resolves to cross-validation and
holds nothing out; the report says the CV estimate is the only one; the final model trains on every label
and ``taskfit serve`` of the grid folder serves it."""

from __future__ import annotations

import json

import httpx

from taskfit.compare.plan import plan_cells, resolve_selection
from taskfit.config import validate_config
from taskfit.data.prepare import FEW_MAX, FEW_PER_LABEL, few_labels
from taskfit.tasks import load_pools
from tests.conftest import shipped_example, write_csv
from tests.test_readme import few_csv


def _config(csv, **data):
    return validate_config(
        {
            "name": "few",
            "data": {"train": str(csv), "shots": "all", **data},
            "strategies": [{"name": "head-finetune", "backbone": "minilm", "epochs": 2}],
            "seeds": [0],
        }
    )


def test_auto_takes_cv_and_holds_nothing_out_on_a_small_file_without_dev(tmp_path):
    csv = few_csv(tmp_path / "few.csv")
    pools = load_pools(_config(csv).data)
    assert pools.selection == "cv" and (len(pools.train), len(pools.dev), len(pools.test)) == (40, 0, 0)
    assert any("nothing held out" in n for n in pools.notes)
    # a test file is used as given (and nothing carved from train); the folds still choose
    test = write_csv(
        tmp_path / "test.csv", [{"text": "good fun", "label": "pos"}, {"text": "bad", "label": "neg"}]
    )
    pools = load_pools(_config(csv, test=str(test)).data)
    assert pools.selection == "cv" and (len(pools.train), len(pools.test)) == (40, 2)


def test_auto_stays_dev_with_a_dev_file_a_large_pool_or_an_explicit_choice(tmp_path):
    csv = few_csv(tmp_path / "few.csv")
    dev = few_csv(tmp_path / "dev.csv", n=10)
    with_dev = load_pools(_config(csv, dev=str(dev)).data)
    assert with_dev.selection == "dev" and len(with_dev.dev) == 10 and len(with_dev.test) == 8  # 20% carved
    legacy = load_pools(_config(csv, selection=None).data)  # a saved config from before auto: dev, carved
    explicit_dev = load_pools(_config(csv, selection="dev").data)
    for pools in (legacy, explicit_dev):
        assert pools.selection == "dev" and (len(pools.train), len(pools.dev), len(pools.test)) == (28, 4, 8)
    sampled = load_pools(_config(csv, shots=8).data)  # a K grid samples: the rest of the file is held out
    assert sampled.selection == "dev" and len(sampled.test) == 8
    for k in ("all", 8):  # asked for, cv holds nothing out of a small file whatever K (as auto with all)
        explicit_cv = load_pools(_config(csv, selection="cv", shots=k).data)
        assert explicit_cv.selection == "cv" and (len(explicit_cv.train), len(explicit_cv.test)) == (40, 0)
    data = _config(csv).data
    assert few_labels(data, FEW_PER_LABEL * 2, 2) and not few_labels(data, FEW_PER_LABEL * 2 + 1, 2)
    assert not few_labels(data, FEW_MAX + 1, 20)  # 2000 in all, however many labels
    assert not few_labels(data, 3, 2, smallest=1)  # under two examples a label: no folds can be made
    assert few_labels(data, 40, 6, smallest=1)  # one rare label among many: it sits in one fold (issue 38)
    builtin = validate_config({"name": "b", "data": {"dataset": "mr"}, "strategies": [{"name": "zero-shot"}]})
    assert not few_labels(builtin.data, 40, 2)  # built-in datasets keep their own splits and dev


def test_shipped_user_file_example_and_keys_of_auto_resolved_to_dev_stay_as_they_were(tmp_path):
    _, _, pools = shipped_example("relation.yaml", "relation")
    assert pools.selection == "dev"
    csv = few_csv(tmp_path / "few.csv")
    auto, legacy = _config(csv), _config(csv, selection=None)
    as_dev = resolve_selection(_config(csv, shots=8), load_pools(_config(csv, shots=8).data))
    assert as_dev.data.selection is None  # auto that comes to dev: the unset value, so the same keys
    legacy8 = _config(csv, shots=8, selection=None)
    assert [c.key for c in plan_cells(as_dev, "f")] == [c.key for c in plan_cells(legacy8, "f")]
    assert [c.key for c in plan_cells(_config(csv, shots=8), "f")] == [
        c.key for c in plan_cells(legacy8, "f")
    ]
    as_cv = resolve_selection(auto, load_pools(auto.data))
    assert as_cv.data.selection == "cv"  # the same cells as asking for cv, which hold nothing out either
    keys = [c.key for c in plan_cells(as_cv, "f")]
    assert keys == [c.key for c in plan_cells(_config(csv, selection="cv"), "f")]
    assert keys != [c.key for c in plan_cells(legacy, "f")]
    assert keys != [c.key for c in plan_cells(_config(csv, selection="cv", folds=3), "f")]  # folds count


def test_forty_labels_without_dev_or_test_end_to_end_then_served(tmp_path, tiny_bert_dir, monkeypatch):
    from taskfit.compare import run_experiment
    from taskfit.serving.predictor import Predictor
    from taskfit.strategies.head_finetune import HeadFinetune
    from tests.test_serving import serving

    fits = []
    original = HeadFinetune.fit

    def counting_fit(self, train, dev):
        fits.append((len(train), len(dev)))
        return original(self, train, dev)

    monkeypatch.setattr(HeadFinetune, "fit", counting_fit)
    csv = few_csv(tmp_path / "few.csv")
    config = validate_config(
        {
            "name": "few",
            "data": {"train": str(csv), "shots": "all", "folds": 3},
            "strategies": [
                {"name": "zero-shot", "backbone": str(tiny_bert_dir)},
                # a random tiny BERT learns the toy words only if its embeddings train
                {
                    "name": "head-finetune",
                    "backbone": str(tiny_bert_dir),
                    "epochs": 2,
                    "freeze_embeddings": False,
                },
            ],
            "seeds": [0],
            "final": "head-finetune",  # the trained row, whatever the tiny model ranks first
            "training": {"mixed_precision": "no"},  # the toy sits near the majority line; bf16 tips it under
        }
    )
    out = tmp_path / "runs" / "few"
    summary = run_experiment(config, out, isolate=False)
    # the cell: 3 fold fits in lockstep on the other folds' labels (each scores its own fold after every
    # epoch; no refits), one on all 40; then the final model on all 40
    assert len(fits) == 5 and all(26 <= n_train <= 27 and n_dev == 0 for n_train, n_dev in fits[:3])
    assert fits[3:] == [(40, 0), (40, 0)]
    card = json.loads((out / "final" / "final.json").read_text(encoding="utf-8"))
    assert card["labelled_examples"] == 40 and card["dev_examples"] == 0 and summary["final"]["row"]
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "No test split: the cross-validated estimate is the only estimate" in report
    assert "40 labelled examples" in report and "Cost of cross-validation" in report
    assert "fitted 4 times per seed" in report
    assert "only estimate" in (out / "final" / "README.md").read_text(encoding="utf-8")
    metrics = json.loads(
        (out / "head-finetune" / "tiny-bert0" / "kall" / "seed-0" / "metrics.json").read_text()
    )
    assert "accuracy" not in metrics and metrics["cv"]["pool"] == 40  # no test: nothing scored on it
    # `taskfit serve runs/few` serves runs/few/final
    with serving(Predictor.load(out, device="cpu")) as url:
        reply = httpx.post(f"{url}/v1/predict", json={"inputs": ["good fun", "bad dull"]}, timeout=30)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["task"] == "classification" and len(body["predictions"]) == 2
    assert {p["label"] for p in body["predictions"]} <= {"pos", "neg"}


def test_the_final_model_of_a_row_is_built_on_that_rows_backbone(tmp_path, tiny_bert_dir, tiny_llama_dir):
    """One strategy id over two backbones (backbone: [a, b]): the final model is the recommended row's."""
    from taskfit.compare.final import fit_final
    from taskfit.compare.summary import Group

    csv = few_csv(tmp_path / "few.csv")
    config = validate_config(
        {
            "name": "few",
            "data": {"train": str(csv), "shots": "all"},
            "prompt": {"template": "{text} It was{answer}", "verbalizer": {"pos": " good", "neg": " bad"}},
            "strategies": [{"name": "zero-shot", "backbone": [str(tiny_llama_dir), str(tiny_bert_dir)]}],
        }
    )
    row = Group(
        "zero-shot", str(tiny_bert_dir), "zero-shot", "0", ok=[{"cell": "zero-shot/x/k0", "seed": None}]
    )
    card = fit_final(config, tmp_path / "out", [row], row, load_pools(config.data))
    assert card["backbone"] == str(tiny_bert_dir) and card["settings"]["backbone"] == str(tiny_bert_dir)


def test_in_context_under_cv_is_scored_on_the_labels_its_prefix_never_saw(tmp_path, tiny_llama_dir):
    """A small file, no dev: in-context is fitted once on all 40 labels and scored on the 36 that are not its
    demonstrations; its train log holds one calibration choice, made on them; its out-of-fold records leave
    the demonstrations out (an ensemble's weights never see a label twice)."""
    from taskfit.compare import run_experiment

    csv = few_csv(tmp_path / "few.csv")
    raw = {
        "name": "few-icl",
        "data": {"train": str(csv), "shots": "all"},
        "seeds": [0],
        "workers": 1,
        "final": "none",
        "prompt": {
            "template": "Review: {text}\nSentiment:{answer}",
            "verbalizer": {"pos": [" positive"], "neg": [" negative"]},
        },
        "strategies": [{"name": "in-context", "backbone": str(tiny_llama_dir), "demos_per_class": 2}],
    }
    run_experiment(validate_config(raw), tmp_path / "out", isolate=False)
    (cell,) = (tmp_path / "out" / "in-context").glob("*/k*/seed-*/metrics.json")
    metrics = json.loads(cell.read_text())
    cv = metrics["cv"]
    other = json.loads((cell.parent / "alternative" / "metrics.json").read_text())["cv"]["calibration"]
    assert {other["applied"], cv["calibration"]["applied"]} == {
        "none",
        "contextual",
    }  # no test: held out only
    assert cv["method"] == "held out of the demonstrations" and (cv["pool"], cv["held_out"]) == (40, 36)
    assert sum(s["dev_examples_scored"] for s in cv["fold_scores"]) == 36
    assert cv["calibration"]["chosen"] in ("none", "contextual") and cv["calibration"]["noise"] is not None
    assert sum(r["probs"] is None for r in metrics["oof"]) == 4 and len(metrics["oof"]) == 40
    log = [json.loads(line) for line in (cell.parent / "train_log.jsonl").read_text().splitlines()]
    choices = [e for e in log if e.get("event") == "calibration"]
    assert len(choices) == 1 and choices[0]["chosen"] == cv["calibration"]["chosen"]
    report = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    if "Nothing to recommend" in report:  # the random tiny LM is no better than chance: the floor is named
        assert "(always the most frequent label of the examples it is scored on)" in report
        assert "'?'" not in report
    else:
        assert "scored on every label that is not one of its demonstrations" in report


def test_the_final_card_says_how_an_in_context_row_was_estimated_and_what_changed():
    """No test split, a row that learns from its demonstrations: the card said "a row that learns nothing:
    on every label", "on dev" for a cross-validated ranking and spoke of epochs for a calibration change."""
    from taskfit.compare.final import card_text

    card = {
        "row": "in-context",
        "backbone": "smollm2",
        "why": "named in the config (final: in-context)",
        "ranked_by": "macro_f1 cross-validated",
        "labelled_examples": 40,
        "train_examples": 40,
        "dev_examples": 0,
        "changed_from_grid": {"calibration": "contextual"},
        "grid_row": {"K": "all", "seeds": 3},
        "estimate": {"dev_mean": 0.746, "dev_std": 0.068, "test_mean": None, "test_interval_95": None},
    }
    text = card_text(card, "macro-F1")
    assert "ranked by macro_f1 cross-validated" in text and "epochs" not in text
    assert "the calibration the grid's row chose over its seeds" in text
    assert "0.746 ± 0.068 cross-validated (each label scored by a model that did not learn from it)" in text
    zero = card_text({**card, "changed_from_grid": {}, "grid_row": {"K": "0", "seeds": 1}}, "macro-F1")
    assert "on every label (a row that learns nothing)" in zero and "grid's:** none." in zero
