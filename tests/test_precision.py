"""training.mixed_precision: auto resolves by the hardware; a cell computes everything in its precision,
training steps inside its autocast see the updated weights, the LM head scores in fp32, and a saved run is
served in the precision it was evaluated in."""

import pytest
import torch

from taskfit.config import validate_config
from taskfit.training import precision
from taskfit.training.distributed import RunOptions, make_accelerator
from taskfit.training.precision import autocast, resolve_precision

from .test_lm_scoring import tiny_lm  # noqa: F401 (fixture)
from .test_training import head, train


@pytest.fixture
def amx(monkeypatch):
    """Pretend the CPU has (True) or lacks (False) AMX tiles."""

    def set_amx(value: bool) -> None:
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: value, raising=False)

    return set_amx


def test_auto_is_bf16_only_where_the_cpu_multiplies_bf16_natively(amx):
    amx(True)
    assert resolve_precision("auto", torch.device("cpu")) == "bf16"
    amx(False)
    assert resolve_precision("auto", torch.device("cpu")) == "no"
    assert resolve_precision("fp16", torch.device("cpu")) == "fp16"  # asked for: as given
    assert resolve_precision("no", torch.device("cpu")) == "no"


def test_cell_keys_record_the_resolved_precision(amx, sentiment_csv, tiny_bert_dir):
    """auto on a machine without native bf16 keeps the keys of fp32 grids (finished cells are reused); with
    it, auto is bf16 and its cells are bf16's."""
    from taskfit.compare.cell import CellSpec
    from taskfit.compare.plan import plan_cells

    raw = {
        "data": {"train": str(sentiment_csv), "shots": 2},
        "strategies": [{"name": "head-finetune", "backbone": str(tiny_bert_dir)}],
        "device": "cpu",
    }

    def key(mixed_precision):
        return plan_cells(validate_config({**raw, "training": {"mixed_precision": mixed_precision}}), "f")[0]

    amx(False)
    assert key("auto").key == key("no").key != key("bf16").key
    amx(True)
    cell = key("auto")
    assert cell.key == key("bf16").key
    config = validate_config(raw)
    assert CellSpec.build(cell, config, threads=1).training.mixed_precision == "bf16"


def test_a_step_inside_the_cells_autocast_sees_the_updated_weights():
    """autocast caches its bf16 copies of the weights until its outermost context exits; a cell's whole run
    is inside one, so with the cache on, the second forward here would use the weights before the update."""
    layer = torch.nn.Linear(8, 8)
    x = torch.randn(4, 8)
    with autocast("bf16", "cpu"):
        before = layer(x).float()
        with torch.no_grad():
            layer.weight.add_(1.0)  # what an optimiser step does
        after = layer(x).float()
        accelerator = make_accelerator(RunOptions(mixed_precision="bf16"), torch.device("cpu"))
        with accelerator.autocast():  # accelerate's own context, nested, must not cache either
            first = layer(x).float()
        with torch.no_grad():
            layer.weight.add_(1.0)
        with accelerator.autocast():
            second = layer(x).float()
    expected = x.sum(-1, keepdim=True)  # the change a +1 on every weight makes
    assert after.dtype == torch.float32 and layer(x).dtype == torch.float32  # outside: fp32 again
    assert torch.allclose(after - before, expected, atol=0.1)
    assert torch.allclose(second - first, expected, atol=0.1)


def test_training_inside_the_cells_autocast_learns_like_fp32(tiny_bert_dir):
    """The same run in bf16 autocast ends near the fp32 one (the updates are fp32) and every epoch's loss
    moves (no stale weights)."""
    with autocast("bf16", "cpu"):
        weights, log = train(head(tiny_bert_dir, epochs=3), RunOptions(mixed_precision="bf16"), dev=False)
    ref_weights, ref_log = train(head(tiny_bert_dir, epochs=3), RunOptions(), dev=False)
    assert all(v.dtype == ref_weights[k].dtype for k, v in weights.items())
    losses = [r["train_loss"] for r in log]
    assert len(set(losses)) == 3
    for got, want in zip(losses, [r["train_loss"] for r in ref_log]):
        assert got == pytest.approx(want, rel=0.05)


def test_label_word_scores_under_bf16_are_fp32_and_close(tiny_lm):  # noqa: F811
    from taskfit.models.lm_scoring import score_words

    model, tok = tiny_lm.model, tiny_lm.tokenizer
    prompts = ["the movie was", "a very dull and boring plot, it is"]
    words = [" good", " wonderful superb"]
    plain = score_words(model, tok, prompts, words).logprob_sum
    with autocast("bf16", "cpu"):
        low = score_words(model, tok, prompts, words).logprob_sum
    assert low.dtype == torch.float32
    assert torch.allclose(low, plain, atol=0.1)


def test_a_saved_run_records_and_is_served_in_its_precision(tmp_path, tiny_bert_dir):
    from taskfit.serving.predictor import Predictor
    from taskfit.strategies import Context, build_strategy

    from .test_strategies import LABELS, toy

    for setting, saved in (("bf16", "bf16"), ("no", "no")):
        ctx = Context(LABELS, None, seed=0, run=RunOptions(mixed_precision=setting))
        strategy = build_strategy(head(tiny_bert_dir, epochs=1), ctx)
        strategy.fit(toy(8), [])
        strategy.save(tmp_path / setting)
        predictor = Predictor.load(tmp_path / setting, device="cpu")
        assert predictor.precision == saved
        seen = []
        forward = predictor.strategy.model.forward

        def spy(*args, _seen=seen, _forward=forward, **kwargs):
            _seen.append(torch.is_autocast_enabled("cpu"))
            return _forward(*args, **kwargs)

        predictor.strategy.model.forward = spy
        rows = predictor.predict(toy(3))
        assert len(rows) == 3 and set(seen) == {setting == "bf16"}


def test_precision_module_names_every_setting_the_config_accepts():
    from taskfit.config.experiment import TrainingConfig

    assert set(TrainingConfig.model_fields["mixed_precision"].annotation.__args__) == set(
        precision.PRECISIONS
    )


def test_the_fork_server_preloads_the_model_libraries_and_skips_a_missing_one(monkeypatch):
    """Each cell's process is forked from a server that imported these once (compare/preload.py); a library
    that cannot be imported is left to the cell that needs it, not a failure of the server."""
    import sys

    from taskfit.compare import preload

    loaded = preload.preload()
    assert {"transformers.models.bert.modeling_bert", "peft", "accelerate"} <= set(loaded)
    assert all(name in sys.modules for name in loaded)
    monkeypatch.setattr(preload, "MODULES", ("taskfit_no_such_module", "peft"))
    assert preload.preload() == ["peft"]


def test_frozen_linear_weights_are_cast_once_and_the_run_is_unchanged(tiny_bert_dir, monkeypatch):
    """LoRA's frozen base weights hold their bf16 copies inside each step (made once, not by autocast at every
    call): the trained weights and the log are identical to per-call casting, and fp32 outside the step."""
    import contextlib

    from taskfit.config import LoraStrategyConfig
    from taskfit.training import loop

    from .test_training import assert_same_run

    def config():
        return LoraStrategyConfig(
            name="lora", backbone=str(tiny_bert_dir), epochs=2, batch_size=4, patience=9
        )

    made = []

    def recording(model, device_type):
        made.append(precision.frozen_linear_casts(model, device_type))
        return made[-1]

    monkeypatch.setattr(loop, "frozen_linear_casts", recording)
    with autocast("bf16", "cpu"):  # with a dev set: each epoch's evaluation runs between the steps
        once = train(config(), RunOptions(mixed_precision="bf16"))
    assert made and made[0] is not contextlib.nullcontext
    monkeypatch.setattr(loop, "frozen_linear_casts", lambda model, device_type: contextlib.nullcontext)
    with autocast("bf16", "cpu"):
        per_call = train(config(), RunOptions(mixed_precision="bf16"))
    assert_same_run(once, per_call)
    assert all(v.dtype == torch.float32 for v in once[0].values())


def test_frozen_linear_casts_leave_shared_and_trainable_weights_and_restore_the_rest():
    from torch import nn

    embed, tied, frozen, trained = nn.Embedding(5, 4), nn.Linear(4, 5), nn.Linear(4, 4), nn.Linear(4, 4)
    tied.weight = embed.weight  # an LM head tied to the embeddings
    untied = nn.Linear(4, 5)  # an LM head of its own: label words are scored with it in fp32

    class LM(nn.ModuleList):
        def get_output_embeddings(self):
            return untied

    model = LM([embed, tied, frozen, trained, untied])
    for p in [*embed.parameters(), *tied.parameters(), *frozen.parameters(), *untied.parameters()]:
        p.requires_grad_(False)
    assert precision.frozen_linear_casts(model, "cpu") is not None  # outside autocast: a no-op context
    with precision.frozen_linear_casts(model, "cpu")():
        assert frozen.weight.dtype == torch.float32
    original = frozen.weight.detach().clone()
    storage = frozen.weight.data_ptr()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        step = precision.frozen_linear_casts(model, "cpu")
        with step():
            assert frozen.weight.dtype == torch.bfloat16 and torch.equal(
                frozen.weight.float(), original.bfloat16().float()
            )
            assert (
                tied.weight.dtype == embed.weight.dtype == torch.float32
                and trained.weight.dtype == torch.float32
                and untied.weight.dtype == torch.float32
            )
        assert frozen.weight.data_ptr() == storage and frozen.weight.dtype == torch.float32


def test_prompt_finetune_with_an_untied_lm_head_trains_under_bf16(tiny_llama_dir):
    """The tests' tiny Llama has an LM head of its own (untied), frozen under LoRA; label words are scored
    with it in fp32, autocast off, inside the training step: it must keep its fp32 weight there."""
    from taskfit.config import STRATEGY_CONFIGS
    from taskfit.strategies import Context, build_strategy

    from .test_strategies import LABELS, PROMPT, toy

    cfg = STRATEGY_CONFIGS["prompt-finetune"].model_validate(
        {
            "name": "prompt-finetune",
            "backbone": str(tiny_llama_dir),
            "tuning": "lora",
            "epochs": 2,
            "batch_size": 4,
        }
    )
    with autocast("bf16", "cpu"):
        strategy = build_strategy(
            cfg, Context(LABELS, PROMPT, seed=0, run=RunOptions(mixed_precision="bf16"))
        )
        assert not strategy.lm.get_output_embeddings().weight.requires_grad
        strategy.fit(toy(8), [])
    losses = [r["train_loss"] for r in strategy.log if "train_loss" in r]
    assert len(losses) == 2 and all(loss == loss for loss in losses)  # ran, and no NaN
