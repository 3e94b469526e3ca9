"""The shared optimiser (training.optim.adamw): fused where torch has it, the same run as torch's default AdamW
to float rounding, an off switch, and the off switch not part of a cell's key."""

import pytest
import torch

from taskfit.config import validate_config
from taskfit.errors import TaskfitError
from taskfit.training.distributed import RunOptions
from taskfit.training.optim import adamw, fused_supported

from .test_training import head, train

# Fused AdamW evaluates the same update in one kernel per tensor: after a few steps on the tiny models the
# weights differ by float32 rounding only (observed at most 1e-9 on CPU); 1e-5 leaves room across platforms.
ATOL = 1e-5


def test_auto_picks_fused_on_cpu_and_off_keeps_torchs_default():
    p = [torch.nn.Parameter(torch.randn(4, 4))]
    assert fused_supported(p)  # torch >= 2.4 has CPU fused AdamW
    assert adamw(p, lr=1e-3).defaults["fused"] is True
    off = adamw(p, fused="off", lr=1e-3).defaults
    assert not off["fused"] and off["foreach"] is None  # exactly torch.optim.AdamW(params, lr=...)
    groups = [{"params": p, "lr": 1e-3}, {"params": [], "lr": 1e-2}]  # an empty group (frozen backbone)
    assert len(adamw(groups).param_groups) == 2


def test_on_refuses_parameters_without_a_fused_kernel():
    ints = [torch.zeros(3, dtype=torch.int64)]
    assert not fused_supported(ints)
    with pytest.raises(TaskfitError, match="fused_optimizer: on"):
        adamw(ints, fused="on")
    with pytest.raises(TaskfitError, match="auto, on, off"):
        adamw([torch.nn.Parameter(torch.zeros(2))], fused="yes")


def test_a_fused_head_finetune_run_matches_the_unfused_one(tiny_bert_dir):
    config = head(tiny_bert_dir, epochs=2)
    (fused_w, fused_log), (plain_w, plain_log) = (
        train(config, RunOptions(fused_optimizer=choice), dev=False) for choice in ("on", "off")
    )
    assert fused_w.keys() == plain_w.keys()
    for k in fused_w:
        torch.testing.assert_close(fused_w[k], plain_w[k], atol=ATOL, rtol=0, msg=k)
    for a, b in zip(fused_log, plain_log, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=ATOL)


def test_fused_optimizer_is_checked_and_not_part_of_the_cell_key(sentiment_csv, tiny_bert_dir):
    from taskfit.compare.plan import plan_cells

    raw = {
        "data": {"train": str(sentiment_csv), "shots": 2},
        "strategies": [{"name": "head-finetune", "backbone": str(tiny_bert_dir)}],
    }
    plain = validate_config(raw)
    assert plain.training.fused_optimizer == "auto"
    off = validate_config({**raw, "training": {"fused_optimizer": "off"}})
    assert plan_cells(off, "f")[0].key == plan_cells(plain, "f")[0].key
    with pytest.raises(TaskfitError):
        validate_config({**raw, "training": {"fused_optimizer": "always"}})


@pytest.mark.parametrize("pair", [False, True])
def test_token_ids_kept_per_example_pad_like_the_tokenizer(tiny_bert_dir, tiny_llama_dir, pair):
    """fit tokenises each example once and pads per batch: the batches equal the tokenizer's own padding
    (both sides, with and without text pairs, truncated at max_length)."""
    from taskfit.config import HeadFinetuneConfig
    from taskfit.data.readers import Example
    from taskfit.strategies import Context, build_strategy

    from .test_strategies import LABELS

    words = "good bad movie plot acting long short very much".split()
    examples = [
        Example(" ".join(words[: 1 + i % 9] * (1 + i // 9)), LABELS[i % 2], "a pair" if pair else None)
        for i in range(20)
    ]
    for backbone in (tiny_bert_dir, tiny_llama_dir):
        config = HeadFinetuneConfig(name="head-finetune", backbone=str(backbone), max_length=12)
        strategy = build_strategy(config, Context(LABELS))
        for side in ("right", "left"):
            strategy.tokenizer.padding_side = side
            plain = strategy._batch(examples)
            strategy._encoded = {}
            for batch in (examples[:7], examples, examples):  # partly cached, then all cached
                cached = strategy._batch(batch)
            strategy._encoded = None
            assert cached.keys() == plain.keys()
            for k in plain:
                assert torch.equal(cached[k], plain[k]), (backbone, side, k)


def test_contrastive_embeds_pretokenised_rows_like_texts(tiny_bert_dir):
    """contrastive tokenises its training texts once per fit: embedding those rows equals embedding the texts."""
    from taskfit.config import ContrastiveConfig
    from taskfit.strategies import Context, build_strategy

    from .test_strategies import LABELS, toy

    strategy = build_strategy(
        ContrastiveConfig(name="contrastive", backbone=str(tiny_bert_dir), max_length=8), Context(LABELS)
    )
    texts = [e.text + " more words" * (i % 4) for i, e in enumerate(toy(8))]
    enc = strategy.tokenizer(texts, truncation=True, max_length=8)
    rows = [{k: v[i] for k, v in enc.items()} for i in range(len(texts))]
    strategy.encoder.eval()
    with torch.no_grad():
        assert torch.equal(strategy._embed(texts), strategy._embed(rows=rows))
