"""Calibrated prompting: the maths on a hand-built biased scorer, and the wiring in the strategies."""

import math

import pytest
import torch

from taskfit.config import STRATEGY_CONFIGS, PromptConfig, validate_config
from taskfit.data.readers import Example
from taskfit.errors import TaskfitError
from taskfit.prompts import Template
from taskfit.prompts.calibration import calibrate, calibrated, reference_prompts
from taskfit.strategies import Context, build_strategy

from .test_strategies import LABELS, toy

TEMPLATE = Template.parse("Review: {text}\nSentiment:{answer}")


def test_reference_prompts_for_each_method():
    assert reference_prompts(TEMPLATE, "contextual") == [
        "Review: N/A\nSentiment:",
        "Review: \nSentiment:",
        "Review: [MASK]\nSentiment:",
    ]
    assert reference_prompts(TEMPLATE, "pmi") == ["Sentiment:"]


def test_calibration_divides_by_the_content_free_distribution():
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4]])
    out = torch.softmax(calibrate(probs.log(), torch.tensor([0.75, 0.25]).log()), -1)
    assert torch.allclose(out, torch.tensor([[0.75, 0.25], [1 / 3, 2 / 3]]), atol=1e-6)


def test_a_biased_scorer_is_corrected_with_known_probabilities():
    """The scorer prefers label 0 everywhere: 0.8 on content-free inputs, so every raw prediction is label 0."""
    table = {"great": [0.7, 0.3], "awful": [0.85, 0.15]}

    def score(prompts):
        rows = []
        for p in prompts:
            word = next((w for w in table if w in p), None)
            rows.append(table[word] if word else [0.8, 0.2])  # content-free: the bias itself
        return torch.tensor(rows).log()

    prompts = [TEMPLATE.prompt(Example(text=t)) for t in ("great", "awful")]
    raw = torch.softmax(calibrated(score, prompts, TEMPLATE, "none"), -1)
    assert raw.argmax(-1).tolist() == [0, 0]
    fixed = torch.softmax(calibrated(score, prompts, TEMPLATE, "contextual"), -1)
    expected = torch.tensor([[0.7 / 0.8, 0.3 / 0.2], [0.85 / 0.8, 0.15 / 0.2]])
    assert torch.allclose(fixed, expected / expected.sum(-1, keepdim=True), atol=1e-6)
    assert fixed.argmax(-1).tolist() == [1, 0]  # 'great' now goes to label 1
    assert math.isclose(fixed[0, 1].item(), 1.5 / 2.375, rel_tol=1e-6)


@pytest.mark.parametrize("name", ["zero-shot", "in-context"])
def test_strategies_apply_calibration_to_their_own_scores(name, tiny_llama_dir):
    prompt = PromptConfig(
        template=TEMPLATE.source, verbalizer={"positive": [" positive"], "negative": [" negative"]}
    )

    def build(method):
        extra = {"demos_per_class": 1} if name == "in-context" else {}
        cfg = STRATEGY_CONFIGS[name].model_validate(
            {"name": name, "backbone": str(tiny_llama_dir), "calibration": method, **extra}
        )
        strategy = build_strategy(cfg, Context(LABELS, prompt, seed=0))
        strategy.fit(toy(8), [])
        return strategy

    test = toy(6, offset=100)
    raw, cal = build("none"), build("contextual")
    p_raw, p_cal = raw.predict(test).probs, cal.predict(test).probs
    # the reference: the uncalibrated model (same demonstrations) on the content-free inputs
    p_cf = raw.predict([Example(text=t) for t in ("N/A", "", "[MASK]")]).probs.mean(0)
    expected = p_raw / p_cf
    assert torch.allclose(p_cal, expected / expected.sum(-1, keepdim=True), atol=1e-5)
    assert not torch.allclose(p_raw, p_cal)
    if name == "in-context":
        diag = cal.diagnostics(cal.predict(test).labels)
        assert diag["last_demonstration_label"] == cal.pool[-1].label
        share = sum(p == cal.pool[-1].label for p in cal.predict(test).labels) / len(test)
        assert diag["share_predicted_as_last_demonstration"] == share


def test_calibration_with_per_query_demonstrations_is_rejected():
    with pytest.raises(TaskfitError, match="calibration needs one demonstration prefix"):
        validate_config(
            {
                "data": {"dataset": "mr"},
                "strategies": [{"name": "in-context", "selection": "similar", "calibration": "contextual"}],
            }
        )


def test_order_ensemble_averages_each_orders_calibrated_probabilities(tiny_llama_dir):
    prompt = PromptConfig(
        template=TEMPLATE.source, verbalizer={"positive": [" positive"], "negative": [" negative"]}
    )

    def build(**extra):
        cfg = STRATEGY_CONFIGS["in-context"].model_validate(
            {"name": "in-context", "backbone": str(tiny_llama_dir), "demos_per_class": 2, **extra}
        )
        strategy = build_strategy(cfg, Context(LABELS, prompt, seed=3))
        strategy.fit(toy(8), [])
        return strategy

    test = toy(6, offset=100)
    ensemble = build(order_ensemble=3, calibration="contextual")
    orders = ensemble.orders()
    assert orders[0] == ensemble.pool and len(orders) == 3
    assert all(sorted(map(str, o)) == sorted(map(str, ensemble.pool)) for o in orders)  # permutations
    assert orders[1] != orders[0] or orders[2] != orders[0]
    # by hand: one single-order run per permutation, then the mean of their calibrated probabilities
    singles = []
    for order in orders:
        single = build(calibration="contextual")
        single.pool = order
        singles.append(single.predict(test).probs)
    expected = torch.stack(singles).mean(0)
    assert torch.allclose(ensemble.predict(test).probs, expected, atol=1e-5)
    gold = [e.label for e in test]
    diag = ensemble.diagnostics(ensemble.predict(test).labels, gold)
    per_order = [
        sum(LABELS[i] == g for i, g in zip(p.argmax(-1).tolist(), gold)) / len(gold) for p in singles
    ]
    assert diag["per_order_accuracy"] == pytest.approx(per_order)
    assert diag["per_order_spread"] == pytest.approx(max(per_order) - min(per_order))
    with pytest.raises(TaskfitError, match="order_ensemble permutes one shared"):
        validate_config(
            {
                "data": {"dataset": "mr"},
                "strategies": [{"name": "in-context", "selection": "similar", "order_ensemble": 2}],
            }
        )


def test_demo_sets_are_disjoint_balanced_and_their_calibrated_probabilities_averaged(
    tiny_llama_dir, tmp_path
):
    from taskfit.strategies import load_strategy

    prompt = PromptConfig(
        template=TEMPLATE.source, verbalizer={"positive": [" positive"], "negative": [" negative"]}
    )

    def build(**extra):
        cfg = STRATEGY_CONFIGS["in-context"].model_validate(
            {"name": "in-context", "backbone": str(tiny_llama_dir), "demos_per_class": 2, **extra}
        )
        return build_strategy(cfg, Context(LABELS, prompt, seed=3))

    train, test = toy(8), toy(6, offset=100)
    ensemble = build(demo_sets=3, calibration="contextual")
    ensemble.fit(train, [])
    sets = ensemble.sets
    assert len(sets) == 3 and sets[0] == ensemble.pool
    for demos in sets:  # balanced: two of each label
        assert sorted(e.label for e in demos) == sorted(LABELS * 2)
    assert len({id(e) for e in sets[0] + sets[1]}) == 8  # 8 examples, 4 per label: two sets fit disjoint
    assert len({id(e) for e in ensemble.demonstrations}) == 8  # the third reuses some, all 8 are shown
    singles = []
    for demos in sets:  # by hand: one prefix at a time, then the mean of their calibrated probabilities
        single = build(calibration="contextual")
        single.fit(train, [])
        single.pool = demos
        singles.append(single.predict(test).probs)
    assert torch.allclose(ensemble.predict(test).probs, torch.stack(singles).mean(0), atol=1e-5)
    ensemble.save(tmp_path / "model")
    again = load_strategy(tmp_path / "model")
    assert [[e.text for e in s] for s in again.sets] == [[e.text for e in s] for s in sets]
    assert torch.allclose(again.predict(test).probs, torch.stack(singles).mean(0), atol=1e-5)
    assert build(demo_sets=2).config.run_id == "in-context+2-demo-sets"
    with pytest.raises(TaskfitError, match="demo_sets averages shared demonstration prefixes"):
        validate_config(
            {
                "data": {"dataset": "mr"},
                "strategies": [{"name": "in-context", "selection": "similar", "demo_sets": 2}],
            }
        )


def test_label_bias_fitted_on_dev_removes_a_known_offset():
    from taskfit.prompts.calibration import fit_label_bias

    # a model that is right in its ranking up to a constant +2 nats on label 0: the fitted offsets undo it
    torch.manual_seed(0)
    gold = torch.randint(0, 3, (300,))
    clean = torch.randn(300, 3) * 0.5 + 3.0 * torch.nn.functional.one_hot(gold, 3)
    biased = clean + torch.tensor([2.0, 0.0, 0.0])
    bias = fit_label_bias(biased, gold, l2=0.0)
    assert bias[0] - bias[1] == pytest.approx(-2.0, abs=0.3) and bias[2] - bias[1] == pytest.approx(
        0.0, abs=0.3
    )
    assert abs(float(bias.sum())) < 1e-5  # centred
    before = (biased.argmax(-1) == gold).float().mean()
    after = ((torch.log_softmax(biased, -1) + bias).argmax(-1) == gold).float().mean()
    assert after > before


def test_prompt_finetune_calibrates_after_training_and_reloads_it(tiny_llama_dir, tmp_path):
    from taskfit.strategies import load_strategy
    from taskfit.strategies.base import probs_to_predictions

    prompt = PromptConfig(
        template=TEMPLATE.source, verbalizer={"positive": [" positive"], "negative": [" negative"]}
    )
    cfg = STRATEGY_CONFIGS["prompt-finetune"].model_validate(
        {"name": "prompt-finetune", "backbone": str(tiny_llama_dir), "epochs": 1, "calibration": "dev"}
    )
    s = build_strategy(cfg, Context(LABELS, prompt, seed=0))
    dev = toy(8, offset=50)
    s.fit(toy(8), dev)
    assert s.label_bias is not None and s.log[-1]["event"] == "calibration"
    test = toy(6, offset=100)
    raw = s._label_scores(test, grad=False)
    expected = probs_to_predictions(torch.log_softmax(raw.float(), -1) + s.label_bias, LABELS).probs
    assert torch.allclose(s.predict(test).probs, expected, atol=1e-6)
    s.save(tmp_path / "m")
    assert torch.allclose(load_strategy(tmp_path / "m").predict(test).probs, expected, atol=1e-5)
    with pytest.raises(TaskfitError, match="calibration: dev needs a dev set"):
        build_strategy(cfg, Context(LABELS, prompt, seed=0)).fit(toy(8), [])


def test_rows_are_named_by_a_non_default_calibration():
    from taskfit.config import InContextConfig, PromptFinetuneConfig, ZeroShotConfig

    assert InContextConfig(name="in-context").calibration == "auto"
    assert InContextConfig(name="in-context").run_id == "in-context"
    assert InContextConfig(name="in-context", calibration="none").run_id == "in-context+uncalibrated"
    assert InContextConfig(name="in-context", calibration="contextual").run_id == "in-context+contextual"
    assert InContextConfig(name="in-context", order_ensemble=4).run_id == "in-context+4-orders"
    assert InContextConfig(name="in-context", selection="similar").calibration == "none"  # no shared prefix
    assert ZeroShotConfig(name="zero-shot").run_id == "zero-shot"
    assert ZeroShotConfig(name="zero-shot", calibration="pmi").run_id == "zero-shot+pmi"
    assert (
        PromptFinetuneConfig(name="prompt-finetune", calibration="dev").run_id
        == "prompt-finetune+dev-calibrated"
    )
    assert ZeroShotConfig(name="zero-shot", calibration="pmi", id="mine").run_id == "mine"


def test_variants_of_one_strategy_are_rows_without_ids():
    config = validate_config(
        {
            "data": {"dataset": "mr"},
            "strategies": [
                {"name": "in-context", "calibration": "none"},
                {"name": "in-context"},
                {"name": "in-context", "calibration": "contextual", "order_ensemble": 4},
            ],
        }
    )
    assert [s.run_id for s in config.strategies] == [
        "in-context+uncalibrated",
        "in-context",
        "in-context+contextual+4-orders",
    ]


@pytest.mark.parametrize("better", ["none", "contextual"])
def test_auto_calibration_keeps_what_scores_better_on_dev(better, tiny_llama_dir, tmp_path, monkeypatch):
    """A dev set on which exactly one of the two methods is right everywhere: auto must pick that one, use it
    for predictions, and keep it through save -> load."""
    from taskfit.strategies import load_strategy

    prompt = PromptConfig(
        template=TEMPLATE.source, verbalizer={"positive": [" positive"], "negative": [" negative"]}
    )
    cfg = STRATEGY_CONFIGS["in-context"].model_validate(
        {"name": "in-context", "backbone": str(tiny_llama_dir), "demos_per_class": 1}
    )
    strategy = build_strategy(cfg, Context(LABELS, prompt, seed=0))
    train, dev = toy(8), toy(6, offset=100)
    strategy.fit(train, [])
    assert strategy.calibration == "none"  # no dev set: nothing to choose on
    labels = {}
    for method in ("none", "contextual"):
        strategy.calibration = method
        labels[method] = strategy.predict(dev).labels
    if labels["none"] == labels["contextual"]:
        pytest.skip("this tiny model's calibration changes no dev prediction")
    # relabel dev so that the wanted method's predictions are the gold labels
    gold = [Example(e.text, lab) for e, lab in zip(dev, labels[better])]
    strategy.fit(train, gold)
    assert strategy.calibration == better
    event = [e for e in strategy.log if e.get("event") == "calibration"][-1]
    assert event["chosen"] == better and event["dev_accuracy"][better] == 1.0
    assert strategy.predict(dev).labels == labels[better]
    strategy.save(tmp_path / "model")
    again = load_strategy(tmp_path / "model")
    assert again.calibration == better and again.predict(dev).labels == labels[better]


def test_kept_label_scores_give_both_calibrations_from_one_pass_of_the_lm(tiny_llama_dir):
    """A cross-validated in-context cell predicts the same examples under both calibrations (held out, then
    test): with ``scored`` set, the second is a correction of the kept scores, same numbers, no LM call."""
    prompt = PromptConfig(
        template=TEMPLATE.source, verbalizer={"positive": [" positive"], "negative": [" negative"]}
    )
    cfg = STRATEGY_CONFIGS["in-context"].model_validate(
        {"name": "in-context", "backbone": str(tiny_llama_dir), "demos_per_class": 1, "demo_sets": 2}
    )
    strategy = build_strategy(cfg, Context(LABELS, prompt, seed=0))
    strategy.fit(toy(8), [])
    test = toy(6, offset=100)
    fresh = {}
    for method in ("none", "contextual"):
        strategy.calibration = method
        fresh[method] = strategy.predict(test).probs
    assert not torch.allclose(fresh["none"], fresh["contextual"])  # the two calibrations differ here
    calls: list = []  # every pass of the LM embeds its inputs first
    hook = strategy.backbone.model.get_input_embeddings().register_forward_hook(lambda *_: calls.append(1))
    try:
        strategy.scored = {}
        strategy.calibration = "contextual"
        first = strategy.predict(test).probs
        passes = len(calls)
        strategy.calibration = "none"
        second = strategy.predict(test).probs
        strategy.calibration = "contextual"
        third = strategy.predict(test).probs
    finally:
        hook.remove()
    assert passes > 0 and len(calls) == passes  # nothing scored twice
    assert torch.allclose(first, fresh["contextual"], atol=1e-6) and torch.allclose(third, first)
    assert torch.allclose(second, fresh["none"], atol=1e-6)
