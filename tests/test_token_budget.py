"""Token budgets of the prompting strategies (models/token_budget.py): what is cut, in which order, and what
never is."""

from __future__ import annotations

import pytest
import torch

from taskfit.compare.plan import plan_cells
from taskfit.compare.worker import truncation_line
from taskfit.config import InContextConfig, PromptConfig, ZeroShotConfig, validate_config
from taskfit.data.readers import Example
from taskfit.errors import TaskfitError
from taskfit.models import lm_scoring
from taskfit.models.token_budget import (
    NO_DEMONSTRATIONS,
    TokenBudget,
    demonstrations,
    fit_lengths,
    prompt_budget,
    query,
)
from taskfit.prompts import Template, Verbalizer
from taskfit.prompts.demonstrations import render_demonstrations
from taskfit.strategies import BackboneCache, Context, build_strategy

TEMPLATE = Template.parse("Review: {text}\nSentiment:{answer}")
LABELS = ["negative", "positive"]
VERBALIZER = Verbalizer.build({"negative": [" bad"], "positive": [" good"]}, LABELS)
PROMPT = PromptConfig(template=TEMPLATE.source, verbalizer={"negative": [" bad"], "positive": [" good"]})


@pytest.fixture(scope="module")
def tokenizer(tiny_llama_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_llama_dir)


def words(n: int, start: int = 0) -> str:
    vocab = "good great fun movie plot actors story bad awful boring film review".split()
    return " ".join(vocab[(start + i) % len(vocab)] for i in range(n))


def demo_set(lengths: list[int]) -> list[Example]:
    return [Example(words(n, i), LABELS[i % 2]) for i, n in enumerate(lengths)]


def n_tokens(tok, text: str) -> int:
    return len(tok(text)["input_ids"])


def test_fit_lengths_cuts_the_longest_first():
    assert fit_lengths([10, 100, 20, 300], 200) == [10, 85, 20, 85]
    assert fit_lengths([10, 100, 20, 300], 1000) == [10, 100, 20, 300]  # fits: untouched
    assert fit_lengths([5, 5], 3) == [2, 1]  # the leftover token goes to the first capped text
    assert fit_lengths([7, 9], 0) == [0, 0]


def test_a_prompt_that_fits_is_unchanged(tokenizer):
    demos = demo_set([5, 6, 4])
    budget = TokenBudget(tokenizer, 512)
    fitted = budget.fit(demonstrations(TEMPLATE, VERBALIZER, demos), query(TEMPLATE, Example(words(8))))
    assert fitted.prefix == render_demonstrations(TEMPLATE, VERBALIZER, demos)
    assert fitted.prompt == TEMPLATE.prompt(Example(words(8)))
    assert fitted.cut == 0


def test_pair_templates_render_as_the_template_does(tokenizer):
    pair = Template.parse("{{P}} {text} ? {text_pair} =>{answer} .")
    demos = [Example(words(3), "negative", text_pair=words(2, 4))]
    q = Example(words(4), text_pair=words(30, 1))
    pieces = demonstrations(pair, VERBALIZER, demos)
    assert pieces.render() == render_demonstrations(pair, VERBALIZER, demos)
    assert query(pair, q).render() == pair.prompt(q)
    budget = n_tokens(tokenizer, pieces.render() + pair.prompt(q)) - 3
    fitted = TokenBudget(tokenizer, budget).fit(pieces, query(pair, q))
    # the demonstration's two short texts are cut first: the input's hypothesis stays whole
    assert fitted.prompt.endswith(" ? " + q.text_pair + " =>") and fitted.inputs_cut == 0
    assert fitted.cut >= 1 and n_tokens(tokenizer, fitted.prefix + fitted.prompt) <= budget
    with pytest.raises(TaskfitError, match="text_pair"):
        query(pair, Example("no pair"))


def test_demonstrations_are_cut_first_and_the_template_stays(tokenizer):
    demos = demo_set([60, 10, 80, 70])
    text = words(30, 5)
    pieces = demonstrations(TEMPLATE, VERBALIZER, demos)
    full = n_tokens(tokenizer, pieces.render() + TEMPLATE.prompt(Example(text)))
    budget = TokenBudget(tokenizer, full - 60)
    fitted = budget.fit(pieces, query(TEMPLATE, Example(text)))
    assert n_tokens(tokenizer, fitted.prefix + fitted.prompt) <= full - 60
    assert fitted.prompt == TEMPLATE.prompt(Example(text))  # the input is whole
    assert fitted.prompt.endswith("\nSentiment:")  # the answer slot
    blocks = fitted.prefix.split("\n\n")[:-1]
    assert len(blocks) == 4
    for block, demo in zip(blocks, demos):  # each demonstration keeps its template, answer and beginning
        assert block.startswith("Review: ") and block.endswith(
            "\nSentiment:" + VERBALIZER.first_word(demo.label)
        )
        shown = block.removeprefix("Review: ").rsplit("\nSentiment:", 1)[0]
        assert demo.text.startswith(shown)
    kept = [b.removeprefix("Review: ").rsplit("\nSentiment:", 1)[0] for b in blocks]
    assert kept[1] == demos[1].text  # the short demonstration is whole: the longest are cut first
    assert [k != d.text for k, d in zip(kept, demos)] == [True, False, True, True]
    assert (fitted.cut, fitted.inputs_cut, fitted.demos_cut) == (3, 0, (0, 2, 3))


def test_the_input_is_cut_once_the_demonstrations_are_empty(tokenizer):
    demos = demo_set([40, 40])
    text = words(50, 3)
    pieces = demonstrations(TEMPLATE, VERBALIZER, demos)
    fixed = n_tokens(
        tokenizer, render_demonstrations(TEMPLATE, VERBALIZER, [Example("", d.label) for d in demos])
    )
    budget = TokenBudget(tokenizer, fixed + 20)
    fitted = budget.fit(pieces, query(TEMPLATE, Example(text)))
    assert n_tokens(tokenizer, fitted.prefix + fitted.prompt) <= fixed + 20
    assert fitted.prefix == render_demonstrations(TEMPLATE, VERBALIZER, [Example("", d.label) for d in demos])
    assert fitted.prompt.startswith("Review: ") and fitted.prompt.endswith("\nSentiment:")
    shown = fitted.prompt.removeprefix("Review: ").removesuffix("\nSentiment:")
    assert shown and text.startswith(shown) and shown != text
    assert (fitted.cut, fitted.inputs_cut) == (3, 1)


def test_a_budget_below_the_fixed_text_is_a_clear_error(tokenizer):
    demos = demo_set([10, 10])
    pieces = demonstrations(TEMPLATE, VERBALIZER, demos)
    fixed_text = render_demonstrations(TEMPLATE, VERBALIZER, [Example("", d.label) for d in demos])
    fixed_text += TEMPLATE.prompt(Example(""))
    with pytest.raises(TaskfitError, match=r"max_length 10 is too small.*at least (\d+)") as err:
        TokenBudget(tokenizer, 10).fit(pieces, query(TEMPLATE, Example(words(20))))
    minimum = int(err.value.args[0].split("at least ")[1].split(",")[0])
    assert minimum >= n_tokens(tokenizer, fixed_text)
    fitted = TokenBudget(tokenizer, minimum).fit(pieces, query(TEMPLATE, Example(words(20))))
    assert n_tokens(tokenizer, fitted.prefix + fitted.prompt) <= minimum


def test_multi_token_label_words_are_reserved(tokenizer, tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    long_word = Verbalizer.build({"negative": [" awful boring film"], "positive": [" good"]}, LABELS)
    budget = prompt_budget(model, tokenizer, 40, long_word)
    assert budget.reserve == len(tokenizer(" awful boring film", add_special_tokens=False)["input_ids"]) - 1
    assert budget.reserve > 0
    fitted = budget.fit(NO_DEMONSTRATIONS, query(TEMPLATE, Example(words(80))))
    assert n_tokens(tokenizer, fitted.prompt) <= 40 - budget.reserve
    assert prompt_budget(model, tokenizer, None).max_length == 512  # the tiny model's context, under 1024


@pytest.fixture
def scored(monkeypatch):
    """Every (shared_prefix, prompts) the LM scores."""
    calls = []
    original = lm_scoring.score_words

    def spy(model, tokenizer, prompts, words, shared_prefix=None, **kw):
        calls.append((shared_prefix or "", list(prompts)))
        return original(model, tokenizer, prompts, words, shared_prefix, **kw)

    monkeypatch.setattr(lm_scoring, "score_words", spy)
    return calls


def test_in_context_prompts_respect_max_length(tiny_llama_dir, scored):
    ctx = Context(LABELS, PROMPT, seed=0, backbones=BackboneCache())
    cfg = InContextConfig(
        name="in-context", backbone=str(tiny_llama_dir), demos_per_class=2, max_length=100, calibration="none"
    )
    s = build_strategy(cfg, ctx)
    s.fit([Example(words(40, i), LABELS[i % 2]) for i in range(8)], [])
    queries = [Example(words(5)), Example(words(60, 2))]
    preds = s.predict(queries)
    assert preds.probs.shape == (2, 2)
    tok = s.backbone.tokenizer
    # the template text alone takes 62 tokens: the short input keeps its demonstrations (cut), the long one
    # empties them and is cut itself; two prefixes, so two scoring groups
    assert len(scored) == 2 and scored[0][0] != scored[1][0]
    assert all(n_tokens(tok, pre + p) <= 100 for pre, prompts in scored for p in prompts)
    assert any(p == TEMPLATE.prompt(queries[0]) for _, prompts in scored for p in prompts)
    assert s.truncation["max_length"] == 100
    assert s.truncation["inputs_truncated"] == 1  # the 60-word input; the 5-word one is whole
    assert s.truncation["demonstrations_truncated"] == 4  # every 40-word demonstration, counted once
    assert s.truncation["texts_truncated"] == 5 and s.truncation["inputs"] == 2
    assert "5 texts cut" in truncation_line(s.truncation)
    assert any(e["event"] == "truncated" for e in s.log)


def test_in_context_without_cuts_scores_one_shared_prefix(tiny_llama_dir, scored):
    ctx = Context(LABELS, PROMPT, seed=0, backbones=BackboneCache())
    cfg = InContextConfig(
        name="in-context", backbone=str(tiny_llama_dir), demos_per_class=1, calibration="none"
    )
    s = build_strategy(cfg, ctx)
    s.fit([Example(words(4, i), LABELS[i % 2]) for i in range(4)], [])
    s.predict([Example(words(5)), Example(words(6, 1))])
    assert len(scored) == 1 and scored[0][0] == s.shared_prefix()
    assert s.truncation["texts_truncated"] == 0 and s.truncation["max_length"] == 512


def test_zero_shot_causal_cuts_the_input_only(tiny_llama_dir, scored):
    ctx = Context(LABELS, PROMPT, seed=0, backbones=BackboneCache())
    s = build_strategy(ZeroShotConfig(name="zero-shot", backbone=str(tiny_llama_dir), max_length=16), ctx)
    s.fit([], [])
    s.predict([Example(words(40)), Example(words(2))])
    tok = s.backbone.tokenizer
    prompts = scored[0][1]
    assert all(n_tokens(tok, p) <= 16 for p in prompts) and all(p.endswith("\nSentiment:") for p in prompts)
    assert prompts[1] == TEMPLATE.prompt(Example(words(2)))
    assert s.truncation["texts_truncated"] == 1


def test_encoder_zero_shot_embeds_at_max_length(tiny_bert_dir):
    prompt = PromptConfig(
        template="{text}{answer}", label_descriptions={"positive": "good great", "negative": "bad awful"}
    )
    ctx = Context(LABELS, prompt, backbones=BackboneCache())
    long = "good " * 5 + "bad awful terrible hated " * 20
    short = build_strategy(ZeroShotConfig(name="zero-shot", backbone=str(tiny_bert_dir), max_length=8), ctx)
    default = build_strategy(ZeroShotConfig(name="zero-shot", backbone=str(tiny_bert_dir)), ctx)
    cut = short.predict([Example(long)]).probs
    # 8 tokens: [CLS], the first six words, [SEP]: the same as embedding those six words whole
    head = default.predict([Example("good good good good good bad")]).probs
    assert torch.allclose(cut, head, atol=1e-5)
    assert not torch.allclose(cut, default.predict([Example(long)]).probs, atol=1e-3)
    assert short.truncation == {"max_length": 8, "texts_truncated": 1, "inputs_truncated": 1, "inputs": 1}
    assert default.truncation["max_length"] == 256 and default.truncation["texts_truncated"] == 0


def test_cell_keys_leave_max_length_out_until_it_is_set():
    base = {
        "name": "keys",
        "data": {"dataset": "mr", "shots": [8]},
        "prompt": {"template": TEMPLATE.source, "verbalizer": {"negative": " bad", "positive": " good"}},
        "strategies": [{"name": "zero-shot"}, {"name": "in-context"}],
    }
    unset = plan_cells(validate_config(base), "f" * 64)
    base["strategies"] = [{"name": "zero-shot", "max_length": 512}, {"name": "in-context", "max_length": 512}]
    set_ = plan_cells(validate_config(base), "f" * 64)
    assert all("max_length" not in c.strategy.model_dump(exclude_unset=True) for c in unset)
    assert [c.key for c in unset] != [c.key for c in set_]
    base["strategies"] = [{"name": "zero-shot", "max_length": None}, {"name": "in-context"}]
    assert [c.key for c in plan_cells(validate_config(base), "f" * 64)] == [c.key for c in unset]
