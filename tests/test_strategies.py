import pytest
import torch

from taskfit.config import HeadFinetuneConfig, InContextConfig, PromptConfig, ZeroShotConfig
from taskfit.data.readers import Example
from taskfit.errors import TaskfitError
from taskfit.strategies import BackboneCache, Context, build_strategy, load_strategy

PROMPT = PromptConfig(
    template="Review: {text}\nSentiment:{answer}",
    verbalizer={"positive": [" positive"], "negative": [" negative", " very bad"]},
)
LABELS = ["negative", "positive"]


def toy(n, offset=0):
    pos, neg = ["good great fun", "loved wonderful superb"], ["bad awful boring", "hated terrible dull"]
    return [
        Example(f"{(pos if i % 2 else neg)[(i // 2) % 2]} movie {i + offset}", LABELS[i % 2])
        for i in range(n)
    ]


def test_zero_shot_causal_lm_save_load_identical(tiny_llama_dir, tmp_path):
    ctx = Context(LABELS, PROMPT, seed=0, backbones=BackboneCache())
    s = build_strategy(ZeroShotConfig(name="zero-shot", backbone=str(tiny_llama_dir)), ctx)
    s.fit([], [])
    preds = s.predict(toy(6))
    assert preds.probs.shape == (6, 2) and torch.allclose(preds.probs.sum(-1), torch.ones(6))
    assert s.trainable_parameters()[0] == 0
    s.save(tmp_path / "m")
    again = load_strategy(tmp_path / "m").predict(toy(6))
    assert torch.equal(again.probs, preds.probs)


def test_zero_shot_encoder_uses_label_descriptions(tiny_bert_dir):
    prompt = PromptConfig(
        template="{text}{answer}", label_descriptions={"positive": "good great", "negative": "bad awful"}
    )
    ctx = Context(LABELS, prompt, backbones=BackboneCache())
    s = build_strategy(ZeroShotConfig(name="zero-shot", backbone=str(tiny_bert_dir)), ctx)
    # the description text itself must be nearest to its own label
    preds = s.predict([Example("good great", "positive"), Example("bad awful", "negative")])
    assert preds.labels == ["positive", "negative"]


def test_in_context_balanced_prefix_and_reload(tiny_llama_dir, tmp_path):
    ctx = Context(LABELS, PROMPT, seed=1, backbones=BackboneCache())
    cfg = InContextConfig(name="in-context", backbone=str(tiny_llama_dir), demos_per_class=2)
    s = build_strategy(cfg, ctx)
    s.fit(toy(20), [])
    assert sorted(e.label for e in s.pool) == ["negative", "negative", "positive", "positive"]
    prefix = s.shared_prefix()
    assert prefix.count("Sentiment: positive\n\n") == 2 and prefix.count("Sentiment: negative\n\n") == 2
    preds = s.predict(toy(5, offset=100))
    no_cache = build_strategy(cfg.model_copy(update={"reuse_prefix_cache": False}), ctx)
    no_cache.pool = s.pool
    assert torch.allclose(no_cache.predict(toy(5, offset=100)).probs, preds.probs, atol=1e-4)
    s.save(tmp_path / "m")
    assert torch.equal(load_strategy(tmp_path / "m").predict(toy(5, offset=100)).probs, preds.probs)


def test_in_context_similar_selection(tiny_llama_dir, tiny_bert_dir):
    ctx = Context(LABELS, PROMPT, seed=0, backbones=BackboneCache())
    cfg = InContextConfig(
        name="in-context", backbone=str(tiny_llama_dir), selection="similar", embedder=str(tiny_bert_dir)
    )
    s = build_strategy(cfg, ctx)
    s.fit(toy(10), [])
    assert len(s.predict(toy(3, offset=50)).labels) == 3


def test_in_context_rejects_encoder(tiny_bert_dir):
    with pytest.raises(TaskfitError, match="needs a causal LM"):
        build_strategy(
            InContextConfig(name="in-context", backbone=str(tiny_bert_dir)), Context(LABELS, PROMPT)
        )


def _hf(tiny_bert_dir, **kw):
    return HeadFinetuneConfig(
        **{
            "name": "head-finetune",
            "backbone": str(tiny_bert_dir),
            "epochs": 4,
            "batch_size": 4,
            "lr": 1e-3,
            **kw,
        }
    )


def test_head_finetune_learns_and_reloads_identically(tiny_bert_dir, tmp_path):
    ctx = Context(LABELS, None, seed=0)
    s = build_strategy(_hf(tiny_bert_dir, epochs=15, head_lr=1e-2), ctx)
    s.fit(toy(24), toy(8, offset=200))
    test = toy(12, offset=300)
    preds = s.predict(test)
    acc = sum(p == e.label for p, e in zip(preds.labels, test)) / len(test)
    assert acc >= 0.9  # the toy task is separable by its words
    losses = [r["train_loss"] for r in s.log if "train_loss" in r]
    assert losses[-1] < losses[0]
    s.save(tmp_path / "m")
    assert (tmp_path / "m" / "model.safetensors").exists()
    assert torch.equal(load_strategy(tmp_path / "m").predict(test).probs, preds.probs)


def test_head_finetune_freezing_keeps_weights_bit_identical(tiny_bert_dir):
    s = build_strategy(
        _hf(tiny_bert_dir, freeze_embeddings=True, freeze_layers=1, epochs=1), Context(LABELS, None)
    )
    enc = s.model.encoder
    frozen = {
        n: p.detach().clone()
        for n, p in enc.named_parameters()
        if n.startswith(("embeddings.", "encoder.layer.0."))
    }
    moving = {n: p.detach().clone() for n, p in enc.named_parameters() if n.startswith("encoder.layer.1.")}
    trainable, total = s.trainable_parameters()
    assert trainable == sum(
        p.numel()
        for n, p in s.model.named_parameters()
        if not n.startswith(("encoder.embeddings.", "encoder.encoder.layer.0."))
    )
    assert 0 < trainable < total
    s.fit(toy(8), [])
    params = dict(enc.named_parameters())
    assert all(torch.equal(params[n], v) for n, v in frozen.items())
    assert any(not torch.equal(params[n], v) for n, v in moving.items())


def test_head_finetune_same_seed_same_result(tiny_bert_dir):
    def run():
        s = build_strategy(_hf(tiny_bert_dir, epochs=2), Context(LABELS, None, seed=7))
        s.fit(toy(8), toy(4, offset=9))
        return s.predict(toy(4, offset=20)).probs

    assert torch.equal(run(), run())


def test_head_finetune_freeze_too_many_layers(tiny_bert_dir):
    with pytest.raises(TaskfitError, match="only 2 layers"):
        build_strategy(_hf(tiny_bert_dir, freeze_layers=5), Context(LABELS, None))
