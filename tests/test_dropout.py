"""Cheap dropout masks (training/dropout.py): the same distribution as torch's dropout, seeded, swapped in for
one training run only, and the attention of BERT-like models included."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from taskfit.config import validate_config
from taskfit.training import dropout as cheap


def test_masks_keep_at_the_rate_in_every_slice_of_a_draw():
    """Each 64-bit draw gives four 16-bit slices; all four must be uniform (``random_()`` alone leaves the sign
    bit 0, so the top slice would always keep: the reason for drawing from -2**63)."""
    torch.manual_seed(0)
    mask = cheap.keep_mask(torch.Size([4 * 250_000]), 0.1)
    assert mask.dtype == torch.bool
    per_slice = mask.view(-1, 4).float().mean(0)
    assert torch.allclose(per_slice, torch.full((4,), 0.9), atol=0.003), per_slice
    torch.manual_seed(0)
    assert torch.equal(cheap.keep_mask(torch.Size([4 * 250_000]), 0.1), mask)  # seeded by torch's generator
    assert cheap.keep_mask(torch.Size([3, 5, 7]), 0.5).shape == (3, 5, 7)  # not a multiple of four
    assert cheap.keep_mask(torch.Size([10_000]), 0.0).all()


def test_dropout_scales_what_it_keeps_and_its_gradient_uses_the_same_mask():
    torch.manual_seed(1)
    x = (torch.rand(64, 33) + 1.0).requires_grad_()  # no zeros in the input: a zero output means dropped
    y = cheap.cheap_dropout(x, 0.25)
    kept = y != 0
    assert 0.65 < kept.float().mean() < 0.85
    torch.testing.assert_close(y[kept], x[kept] / 0.75)
    y.sum().backward()
    torch.testing.assert_close(x.grad, kept.float() / 0.75)
    assert cheap.cheap_dropout(x, 0.0) is x
    assert not cheap.cheap_dropout(x, 1.0).any()


def _bert(attention_dropout: float = 0.5):
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=50,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        attention_probs_dropout_prob=attention_dropout,
        attn_implementation="sdpa",
    )
    return BertModel(config)


def _bernoulli_calls(fn) -> int:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(e.count for e in prof.key_averages() if e.key in ("aten::bernoulli_", "aten::bernoulli"))


def test_inside_the_block_no_mask_comes_from_bernoulli_and_everything_is_put_back():
    model = _bert().train()
    ids = torch.randint(5, 50, (4, 9))
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0  # padding: the attention gets a mask

    def step():
        model(input_ids=ids, attention_mask=mask).last_hidden_state.sum().backward()

    assert _bernoulli_calls(step) > 0  # the test can fail: torch's own dropout draws with bernoulli
    with cheap.cheap_dropout_masks(model) as swapped:
        assert swapped == sum(isinstance(m, nn.Dropout) for m in model.modules())
        assert model.config._attn_implementation == cheap.ATTENTION
        assert _bernoulli_calls(step) == 0
    assert model.config._attn_implementation == "sdpa"
    assert all(type(m) is nn.Dropout for m in model.modules() if isinstance(m, nn.Dropout))
    with cheap.cheap_dropout_masks(model, enabled=False) as swapped:
        assert swapped == 0 and _bernoulli_calls(step) > 0


def test_eval_mode_computes_exactly_what_it_did_without_the_swap():
    model = _bert().eval()
    ids = torch.randint(5, 50, (3, 7))
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    with torch.no_grad():
        before = model(input_ids=ids, attention_mask=mask).last_hidden_state
        with cheap.cheap_dropout_masks(model):
            inside = model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.equal(before, inside)


@pytest.mark.parametrize("mask_kind", ["bool", "additive", "none"])
def test_the_training_attention_path_is_sdpa_apart_from_the_mask(monkeypatch, mask_kind):
    """With dropout made the identity, the eager path taken while training equals SDPA without dropout."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    torch.manual_seed(2)
    q, k, v = (torch.randn(2, 3, 6, 8) for _ in range(3))
    keep = torch.ones(2, 1, 6, 6, dtype=torch.bool)
    keep[0, :, :, 4:] = False
    mask = {"bool": keep, "additive": (~keep).float() * torch.finfo(torch.float32).min, "none": None}[
        mask_kind
    ]
    module = nn.Module().train()
    module.is_causal = False
    monkeypatch.setattr(cheap, "cheap_dropout", lambda x, p: x)
    ours, _ = cheap._attention(module, q, k, v, mask, dropout=0.3, scaling=0.5)
    reference, _ = sdpa_attention_forward(module.eval(), q, k, v, mask, dropout=0.0, scaling=0.5)
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


def test_a_causal_attention_keeps_sdpa(monkeypatch):
    called = []
    monkeypatch.setattr(cheap, "cheap_dropout", lambda x, p: called.append(p) or x)
    module = nn.Module().train()
    module.is_causal = True
    q = torch.randn(1, 2, 4, 8)
    cheap._attention(module, q, q, q, None, dropout=0.1)
    assert called == []


def test_fast_dropout_is_part_of_the_cell_key_where_it_applies(sentiment_csv, tiny_bert_dir):
    from taskfit.compare.plan import plan_cells

    raw = {
        "data": {"train": str(sentiment_csv), "shots": 2},
        "strategies": [{"name": "head-finetune", "backbone": str(tiny_bert_dir)}],
        "device": "cpu",
    }
    on = validate_config(raw)
    assert on.training.fast_dropout == "auto"
    off = validate_config({**raw, "training": {"fast_dropout": "off"}})
    assert plan_cells(off, "f")[0].key != plan_cells(on, "f")[0].key
    assert cheap.uses_cheap_masks("auto", torch.device("cpu"))
    assert not cheap.uses_cheap_masks("auto", torch.device("cuda"))
    assert not cheap.uses_cheap_masks("off", torch.device("cpu"))
