import json

import pytest

from taskfit.config import PromptSearchConfig, ZeroShotConfig, validate_config
from taskfit.prompts import Template
from taskfit.strategies import BackboneCache, Context, build_strategy, load_strategy
from taskfit.strategies.prompt_search import WORD, candidates, choose_prompt, search_label_words

from .test_strategies import LABELS, PROMPT, toy


def test_candidates_are_the_product_without_duplicates():
    search = PromptSearchConfig(
        templates=["Q: {text} A:{answer}", PROMPT.template],
        verbalizers=[{"positive": " good", "negative": " bad"}],
    )
    out = candidates(PROMPT, search, [{"positive": [" nice"], "negative": [" awful"]}])
    assert len(out) == 2 * 3 and out[0] == PROMPT
    assert out[1].verbalizer == {"positive": [" good"], "negative": [" bad"]}


def test_choose_prompt_takes_the_best_dev_score_and_logs_all():
    prompts = [
        PROMPT.model_copy(update={"template": t})
        for t in ("a {text}{answer}", "b {text}{answer}", "c {text}{answer}")
    ]
    log = []
    [best] = choose_prompt(prompts, lambda p: {"a": 0.5, "b": 0.75, "c": 0.75}[p.template[0]], log)
    assert best.template.startswith("b")  # first of the tied best
    assert [r["dev_accuracy"] for r in log if r["event"] == "prompt_candidate"] == [0.5, 0.75, 0.75]
    assert log[-1]["event"] == "prompt_chosen" and log[-1]["candidates"] == 3


def test_label_word_search_returns_distinct_whole_words(tiny_llama_dir):
    backbone = BackboneCache().get(str(tiny_llama_dir))
    found = search_label_words(
        backbone.model, backbone.tokenizer, Template.parse(PROMPT.template), toy(12), LABELS, 3
    )
    assert len(found) == 3
    words = [w for v in found for ws in v.values() for w in ws]
    assert len(words) == len(set(words)) == 6 and all(WORD.match(w) for w in words)


def test_zero_shot_with_search_keeps_the_best_prompt_and_saves_it(tiny_llama_dir, tmp_path):
    search = PromptSearchConfig(
        templates=["Text: {text}\nLabel:{answer}"],
        verbalizers=[{"positive": [" good"], "negative": [" bad"]}],
        auto_label_words=2,
    )
    cfg = ZeroShotConfig(name="zero-shot", backbone=str(tiny_llama_dir), prompt_search=search)
    s = build_strategy(cfg, Context(LABELS, PROMPT, seed=0, backbones=BackboneCache()))
    s.fit(toy(12), toy(8, offset=30))
    tried = [r for r in s.log if r["event"] == "prompt_candidate"]
    chosen = s.log[-1]
    assert len(tried) == 2 * 4 and chosen["event"] == "prompt_chosen"
    assert chosen["dev_accuracy"] == max(r["dev_accuracy"] for r in tried)
    assert (s.ctx.prompt.template, s.ctx.prompt.verbalizer) == (chosen["template"], chosen["verbalizer"])
    s.save(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "strategy.json").read_text())
    assert saved["prompt"]["template"] == chosen["template"]
    test = toy(5, offset=70)
    assert load_strategy(tmp_path / "m").predict(test).labels == s.predict(test).labels


def test_search_makes_zero_shot_seed_dependent():
    from taskfit.compare import uses_shots

    cfg = validate_config(
        {
            "data": {"dataset": "mr"},
            "strategies": [
                {"name": "zero-shot"},
                {"name": "zero-shot", "id": "zs-search", "prompt_search": {"auto_label_words": 2}},
            ],
        }
    )
    assert [uses_shots(s) for s in cfg.strategies] == [False, True]
    with pytest.raises(Exception, match="Did you mean 'auto_label_words'"):
        validate_config(
            {
                "data": {"dataset": "mr"},
                "strategies": [{"name": "zero-shot", "prompt_search": {"auto_words": 2}}],
            }
        )


@pytest.mark.parametrize("name", ["zero-shot", "in-context"])
def test_a_prompt_ensemble_averages_its_best_candidates_and_reloads(name, tiny_llama_dir, tmp_path):
    """prompt_ensemble: N keeps the N best candidates on dev; predictions are the mean of their
    probabilities (checked against each member predicting alone), and a reloaded run predicts the same."""
    import torch

    from taskfit.config import InContextConfig
    from taskfit.strategies.prompt_search import apply_prompt

    search = PromptSearchConfig(
        templates=["Text: {text}\nLabel:{answer}"],
        verbalizers=[{"positive": [" good"], "negative": [" bad"]}],
    )
    config_class = ZeroShotConfig if name == "zero-shot" else InContextConfig
    extra = {"calibration": "none", "demos_per_class": 1} if name == "in-context" else {}
    cfg = config_class(
        name=name, backbone=str(tiny_llama_dir), prompt_search=search, prompt_ensemble=3, **extra
    )
    assert cfg.variant().endswith("+3-prompts")
    s = build_strategy(cfg, Context(LABELS, PROMPT, seed=0, backbones=BackboneCache()))
    s.fit(toy(12), toy(8, offset=30))
    members = s.prompt_members
    record = next(r for r in s.log if r["event"] == "prompt_ensemble")
    tried = sorted((r["dev_accuracy"] for r in s.log if r["event"] == "prompt_candidate"), reverse=True)
    assert len(members) == 3 and record["dev_accuracy"] == tried[:3]
    test = toy(5, offset=70)
    together = s.predict(test).probs
    alone = []
    for prompt in members:
        apply_prompt(s, prompt)
        s.prompt_members = []
        alone.append(s.predict(test).probs)
        s.prompt_members = members
    apply_prompt(s, members[0])
    assert torch.allclose(together, torch.stack(alone).mean(0), atol=1e-5)
    assert not torch.allclose(alone[0], alone[1])  # the members are different prompts
    s.save(tmp_path / "m")
    reloaded = load_strategy(tmp_path / "m")
    assert len(reloaded.prompt_members) == 3
    assert torch.allclose(reloaded.predict(test).probs, together, atol=1e-5)


def test_a_prompt_ensemble_without_a_search_is_refused():
    with pytest.raises(Exception, match="prompt_ensemble averages the best prompt_search candidates"):
        validate_config(
            {"data": {"dataset": "mr"}, "strategies": [{"name": "zero-shot", "prompt_ensemble": 3}]}
        )
