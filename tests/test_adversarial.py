"""FGM/PGD adversarial training: the perturbation is in the adversarial forward pass only, has the promised
size, and the gradients stepped on are exactly clean + adversarial (nothing left behind in the embeddings)."""

import copy

import pytest
import torch

from taskfit.config import AdversarialConfig, HeadFinetuneConfig, LoraStrategyConfig, validate_config
from taskfit.errors import TaskfitError
from taskfit.strategies import Context, build_strategy
from taskfit.training.adversarial import EmbeddingPerturbation, adversarial_step, input_embeddings

from .test_strategies import LABELS, toy


def classifier(bert):
    strategy = build_strategy(
        HeadFinetuneConfig(name="head-finetune", backbone=str(bert)), Context(LABELS, None, seed=0)
    )
    strategy.model.eval()  # no dropout: passes are comparable; gradients still flow
    return strategy


def loss_of(strategy, examples):
    def forward():
        targets = torch.tensor([LABELS.index(e.label) for e in examples])
        return torch.nn.functional.cross_entropy(strategy.model(**strategy._batch(examples)), targets)

    return forward


def layer_norm_inputs(model):
    """What the BERT embedding LayerNorm receives (word + position + type embeddings), per forward pass."""
    seen = []
    handle = model.encoder.embeddings.LayerNorm.register_forward_pre_hook(
        lambda m, args: seen.append(args[0].detach().clone())
    )
    return seen, handle


def by_hand(strategy, examples, perturbation, weight=1.0):
    """Clean gradient plus the gradient of the loss with ``perturbation`` added to the embedding output."""
    model = strategy.model
    model.zero_grad()
    loss_of(strategy, examples)().backward()
    handle = input_embeddings(model).register_forward_hook(lambda m, i, out: out + perturbation)
    (loss_of(strategy, examples)() * weight).backward()
    handle.remove()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def run_step(strategy, examples, config):
    model = strategy.model
    model.zero_grad()
    captured = []
    loss = adversarial_step(
        loss_of(strategy, examples),
        lambda value: value.backward(),
        EmbeddingPerturbation(input_embeddings(model)),
        config,
        on_adversarial=captured.extend,
    )
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss, captured, grads


def per_example_norm(r):
    return r.flatten(1).norm(dim=1)


@pytest.mark.parametrize(
    "config",
    [
        AdversarialConfig(method="fgm", epsilon=0.7, weight=0.5),
        AdversarialConfig(method="pgd", epsilon=0.5, alpha=0.3, steps=3),
    ],
    ids=["fgm", "pgd"],
)
def test_the_step_accumulates_clean_plus_adversarial_gradients_and_leaves_the_embeddings_alone(
    tiny_bert_dir, config
):
    strategy = classifier(tiny_bert_dir)
    examples = toy(4)
    model = strategy.model
    embedding = input_embeddings(model)
    weight_before = embedding.weight.detach().clone()
    reference = copy.deepcopy(strategy)
    seen, handle = layer_norm_inputs(model)
    loss, captured, grads = run_step(strategy, examples, config)
    handle.remove()
    (r,) = captured
    # present in the adversarial pass: its LayerNorm input is the clean one plus r, exactly
    assert torch.allclose(seen[-1], seen[0] + r, atol=1e-6)
    assert not torch.equal(seen[-1], seen[0])
    if config.method == "fgm":
        assert torch.allclose(per_example_norm(r), torch.full((4,), 0.7), atol=1e-5)
    else:  # three steps of 0.3 leave the 0.5 ball: projected back onto its surface
        assert torch.allclose(per_example_norm(r), torch.full((4,), 0.5), atol=1e-5)
    # gone afterwards: no hook left, same output as before, the embedding weight untouched
    assert not embedding._forward_hooks
    assert torch.equal(embedding.weight, weight_before)
    with torch.no_grad():
        batch = strategy._batch(examples)
        assert torch.equal(model(**batch), reference.model(**batch))
    # the gradients are the clean one plus the weighted one at the final perturbation, nothing else
    expected = by_hand(reference, examples, r, config.weight)
    assert grads.keys() == expected.keys()
    for name in grads:
        assert torch.allclose(grads[name], expected[name], atol=1e-6), name
    # and an optimiser step from them moves the embedding exactly as the by-hand step does
    for s, g in ((strategy, grads), (reference, expected)):
        for n, p in s.model.named_parameters():
            p.grad = g.get(n)
        torch.optim.SGD(s.model.parameters(), lr=0.1).step()
    assert torch.equal(input_embeddings(model).weight, input_embeddings(reference.model).weight)
    assert loss.item() > 0


def grad_at(strategy, examples, r):
    """The loss gradient at the embedding output, with ``r`` added there."""
    delta = r.clone().requires_grad_(True)
    handle = input_embeddings(strategy.model).register_forward_hook(lambda m, i, out: out + delta)
    (g,) = torch.autograd.grad(loss_of(strategy, examples)(), delta)
    handle.remove()
    return g


def test_pgd_stays_inside_the_ball_and_takes_normalised_ascent_steps(tiny_bert_dir):
    strategy = classifier(tiny_bert_dir)
    examples = toy(4)
    config = AdversarialConfig(method="pgd", epsilon=5.0, alpha=0.4, steps=2)
    _, (r,), _ = run_step(strategy, examples, config)
    assert (per_example_norm(r) <= 5.0 + 1e-5).all()

    def unit(g):
        return g / per_example_norm(g).view(-1, 1, 1)

    zero = torch.zeros_like(r)
    r1 = 0.4 * unit(grad_at(strategy, examples, zero))
    r2 = r1 + 0.4 * unit(grad_at(strategy, examples, r1))  # inside the ball of 5: no projection
    assert torch.allclose(r, r2, atol=1e-5)
    assert (per_example_norm(r) > 0.4).all()  # the second step went somewhere
    # an ascent direction: the loss at the perturbed input is above the clean loss
    clean = loss_of(strategy, examples)().item()
    handle = input_embeddings(strategy.model).register_forward_hook(lambda m, i, out: out + r)
    assert loss_of(strategy, examples)().item() > clean
    handle.remove()


def count_embedding_calls(strategy):
    calls = [0]
    input_embeddings(strategy.model).register_forward_hook(lambda m, i, o: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize(("method", "passes"), [(None, 1), ("fgm", 2), ("pgd", 4)])
def test_fit_epochs_runs_one_extra_pass_per_adversarial_step(tiny_bert_dir, method, passes):
    adversarial = AdversarialConfig(method=method, steps=3) if method else None
    config = HeadFinetuneConfig(
        name="head-finetune", backbone=str(tiny_bert_dir), epochs=1, batch_size=4, adversarial=adversarial
    )
    strategy = build_strategy(config, Context(LABELS, None, seed=0))
    calls = count_embedding_calls(strategy)
    strategy.fit(toy(16), [])
    assert calls[0] == 4 * passes  # 4 batches
    assert strategy.log[0]["train_loss"] > 0


def test_lora_with_a_frozen_embedding_trains_adversarially_and_keeps_it_bit_identical(tiny_bert_dir):
    def fit(adversarial):
        config = LoraStrategyConfig(
            name="lora", backbone=str(tiny_bert_dir), epochs=2, batch_size=4, adversarial=adversarial
        )
        strategy = build_strategy(config, Context(LABELS, None, seed=0))
        before = input_embeddings(strategy.model).weight.detach().clone()
        strategy.fit(toy(16), [])
        assert torch.equal(input_embeddings(strategy.model).weight, before)
        return {n: p.detach().clone() for n, p in strategy.model.named_parameters() if p.requires_grad}

    plain, adversarial = fit(None), fit(AdversarialConfig(method="fgm", epsilon=2.0))
    assert plain.keys() == adversarial.keys()
    assert any(not torch.equal(plain[k], adversarial[k]) for k in plain)  # the perturbation changed training


def test_adversarial_is_refused_where_nothing_trains_through_the_loop():
    for strategy in ({"name": "zero-shot"}, {"name": "contrastive", "backbone": "minilm"}):
        with pytest.raises(TaskfitError, match="does not support 'adversarial:'.*head-finetune, lora"):
            validate_config({"data": {"dataset": "mr"}, "strategies": [{**strategy, "adversarial": {}}]})
    with pytest.raises(TaskfitError, match="Did you mean 'epsilon'"):
        validate_config(
            {"data": {"dataset": "mr"}, "strategies": [{"name": "lora", "adversarial": {"epsilion": 1}}]}
        )


def test_causal_lm_strategies_of_the_shared_loop_train_adversarially(tiny_llama_dir):
    """prompt-finetune (which embeds several times per batch: one pass per label word) and generation SFT get
    the same hook: exactly twice the embedding calls of plain training."""
    from taskfit.config import STRATEGY_CONFIGS, GenerationLoraConfig
    from taskfit.data.readers import Example

    from .test_strategies import PROMPT

    def calls_when_fit(make, adversarial):
        strategy, module, train = make(adversarial)
        calls = count_embedding_calls(type("M", (), {"model": module})())
        strategy.fit(train, [])
        assert all(r["train_loss"] > 0 for r in strategy.log if "train_loss" in r)
        return calls[0]

    def prompted(adversarial):
        raw = {"name": "prompt-finetune", "backbone": str(tiny_llama_dir), "epochs": 1, "batch_size": 4}
        config = STRATEGY_CONFIGS["prompt-finetune"].model_validate({**raw, "adversarial": adversarial})
        strategy = build_strategy(config, Context(LABELS, PROMPT, seed=0))
        return strategy, strategy.lm, toy(8)

    def sft(adversarial):
        config = GenerationLoraConfig(
            name="lora", backbone=str(tiny_llama_dir), epochs=1, batch_size=4, r=2, adversarial=adversarial
        )
        strategy = build_strategy(config, Context([], None, seed=0))
        return strategy, strategy.net, [Example(text=f"good movie {i}", target=f"fun {i}") for i in range(8)]

    fgm = {"method": "fgm", "epsilon": 0.5}
    for make in (prompted, sft):
        plain = calls_when_fit(make, None)
        assert plain > 0 and calls_when_fit(make, fgm) == 2 * plain
