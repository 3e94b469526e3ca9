import pytest
import torch

from taskfit.config import STRATEGY_CONFIGS
from taskfit.errors import TaskfitError
from taskfit.strategies import Context, build_strategy, load_strategy

from .test_strategies import LABELS, toy


def make(tiny_bert_dir, name, **kw):
    cfg = STRATEGY_CONFIGS[name].model_validate(
        {"name": name, "backbone": str(tiny_bert_dir), "epochs": 2, "batch_size": 4, **kw}
    )
    return build_strategy(cfg, Context(LABELS, None, seed=0))


def expected_trainable(name: str, param_name: str) -> bool:
    if param_name.startswith("head."):
        return True
    return {
        "lora": "lora_" in param_name,
        "ia3": "ia3_" in param_name,
        "prompt-tuning": "prompt_encoder" in param_name,
        "prefix-tuning": "prompt_encoder" in param_name,
        "bitfit": param_name.endswith(".bias"),
        "adapter": ".adapter." in param_name or "LayerNorm" in param_name,
    }[name]


@pytest.mark.parametrize("name", ["lora", "ia3", "prompt-tuning", "prefix-tuning", "bitfit", "adapter"])
def test_trains_only_what_it_should_and_reloads_identically(name, tiny_bert_dir, tmp_path):
    s = make(tiny_bert_dir, name)
    named = dict(s.model.named_parameters())
    wrong = [n for n, p in named.items() if p.requires_grad != expected_trainable(name, n)]
    assert not wrong, wrong[:5]
    trainable, total = s.trainable_parameters()
    assert trainable == sum(p.numel() for n, p in named.items() if expected_trainable(name, n))
    assert 0 < trainable < total / 2
    before = {n: p.detach().clone() for n, p in named.items()}
    s.fit(toy(8), toy(4, offset=50))
    after = dict(s.model.named_parameters())
    for n, p in after.items():
        if not expected_trainable(name, n):
            assert torch.equal(p, before[n]), f"frozen {n} changed"
    assert any(
        not torch.equal(after[n], before[n]) for n in after if expected_trainable(name, n) and "head" not in n
    )
    test = toy(6, offset=100)
    preds = s.predict(test)
    s.save(tmp_path / "m")
    saved_bytes = sum(f.stat().st_size for f in (tmp_path / "m").rglob("*.safetensors"))
    assert saved_bytes < 4 * total / 2  # only what trained (fp32), far less than the whole model
    again = load_strategy(tmp_path / "m")
    assert torch.allclose(again.predict(test).probs, preds.probs, atol=1e-6)


def test_lora_adapter_interoperates_with_plain_peft(tiny_bert_dir, tmp_path):
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModel, AutoTokenizer

    s = make(tiny_bert_dir, "lora", epochs=3)
    s.fit(toy(8), [])
    s.save(tmp_path / "m")
    tok = AutoTokenizer.from_pretrained(tiny_bert_dir)
    enc = tok(["good movie", "awful plot"], padding=True, return_tensors="pt")

    # taskfit -> plain peft: same hidden states as taskfit's own encoder
    plain = PeftModel.from_pretrained(
        AutoModel.from_pretrained(tiny_bert_dir), str(tmp_path / "m" / "adapter")
    ).eval()
    s.model.eval()
    with torch.no_grad():
        ours = s.model.encoder(**enc).last_hidden_state
        theirs = plain(**enc).last_hidden_state
    assert torch.allclose(ours, theirs, atol=1e-6)

    # plain peft -> taskfit: an adapter made by peft replaces ours and taskfit loads it
    torch.manual_seed(3)
    made = get_peft_model(
        AutoModel.from_pretrained(tiny_bert_dir), LoraConfig(r=4, target_modules=["query", "value"])
    )
    for n, p in made.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.5)  # B starts at zero; make the adapter do something
    made.save_pretrained(str(tmp_path / "m" / "adapter"))
    loaded = load_strategy(tmp_path / "m")
    made.eval()
    with torch.no_grad():
        assert torch.allclose(
            loaded.model.encoder(**enc).last_hidden_state, made(**enc).last_hidden_state, atol=1e-6
        )
        assert not torch.allclose(made(**enc).last_hidden_state, ours, atol=1e-3)


@pytest.mark.parametrize("name", ["prompt-tuning", "prefix-tuning"])
def test_soft_prompts_load_with_plain_peft(name, tiny_bert_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModel, AutoTokenizer

    s = make(tiny_bert_dir, name, num_virtual_tokens=4)
    s.fit(toy(8), [])
    s.save(tmp_path / "m")
    enc = AutoTokenizer.from_pretrained(tiny_bert_dir)(
        ["good movie", "awful plot"], padding=True, return_tensors="pt"
    )
    enc.pop("token_type_ids")
    plain = PeftModel.from_pretrained(
        AutoModel.from_pretrained(tiny_bert_dir), str(tmp_path / "m" / "adapter")
    ).eval()
    s.model.eval()
    base = AutoModel.from_pretrained(tiny_bert_dir).eval()
    with torch.no_grad():
        ours, theirs = s.model.encoder(**enc).last_hidden_state, plain(**enc).last_hidden_state
        assert torch.allclose(ours, theirs, atol=1e-6)
        width = enc["input_ids"].shape[1]
        assert not torch.allclose(
            ours[:, -width:], base(**enc).last_hidden_state, atol=1e-4
        )  # prompts matter


def test_unmatched_target_module_is_an_error_listing_candidates(tiny_bert_dir):
    with pytest.raises(TaskfitError) as err:
        make(tiny_bert_dir, "lora", target_modules=["q_proj"])
    msg = str(err.value)
    assert "'q_proj' matches no linear module" in msg and "query" in msg and "Candidates:" in msg


def test_lora_all_linear_and_adapter_size(tiny_bert_dir):
    s = make(tiny_bert_dir, "lora", target_modules="all-linear")
    assert any("intermediate.dense.lora_A" in n for n, _ in s.model.named_parameters())
    a = make(tiny_bert_dir, "adapter", reduction_factor=8)
    downs = [m for n, m in a.model.named_modules() if n.endswith("adapter.down")]
    assert len(downs) == 4 and downs[0].out_features == 4  # 2 layers x (attention, ffn); 32 / 8


def test_linear_probe_trains_only_the_head(tiny_bert_dir):
    s = make(tiny_bert_dir, "head-finetune", freeze_encoder=True)
    assert s.trainable_parameters()[0] == 32 * 2 + 2


def test_contrastive_pairs_and_training(tiny_bert_dir, tmp_path):
    from taskfit.strategies.contrastive import make_pairs

    train = toy(8)
    pairs = make_pairs(train, iterations=3, seed=0)
    assert len(pairs) == 2 * 8 * 3
    for i, j, target in pairs:
        assert (train[i].label == train[j].label) == (target == 1.0)

    s = make(tiny_bert_dir, "contrastive", epochs=3, lr=1e-3, num_iterations=4)
    s.fit(toy(16), [])
    test = toy(12, offset=300)
    preds = s.predict(test)
    assert sum(p == e.label for p, e in zip(preds.labels, test)) / len(test) >= 0.9
    losses = [r["train_loss"] for r in s.log if "train_loss" in r]
    assert losses[-1] < losses[0]
    s.save(tmp_path / "m")
    assert torch.allclose(load_strategy(tmp_path / "m").predict(test).probs, preds.probs, atol=1e-6)


@pytest.mark.parametrize("tuning", ["lora", "full"])
def test_prompt_finetune_learns_through_the_verbalizer(tuning, tiny_llama_dir, tmp_path):
    from .test_strategies import PROMPT

    cfg = STRATEGY_CONFIGS["prompt-finetune"].model_validate(
        {
            "name": "prompt-finetune",
            "backbone": str(tiny_llama_dir),
            "tuning": tuning,
            "epochs": 12,
            "lr": 3e-2 if tuning == "lora" else 3e-3,
            "batch_size": 4,
            "demos_per_class": 1 if tuning == "lora" else 0,
        }
    )
    s = build_strategy(cfg, Context(LABELS, PROMPT, seed=0))
    trainable, total = s.trainable_parameters()
    if tuning == "lora":
        assert 0 < trainable < total / 5
        assert all(("lora_" in n) == p.requires_grad for n, p in s.lm.named_parameters())
    else:
        assert trainable == total
    frozen = {n: p.detach().clone() for n, p in s.lm.named_parameters() if not p.requires_grad}
    train = toy(16)
    s.fit(train, [])
    losses = [r["train_loss"] for r in s.log if "train_loss" in r]
    # a random tiny LM with a frozen output layer can move label scores by well under a nat with LoRA on
    # attention alone, so the bar is a clear decrease, not convergence
    assert losses[-1] < losses[0] - 0.2
    assert all(torch.equal(p, frozen[n]) for n, p in s.lm.named_parameters() if n in frozen)
    test = toy(6, offset=100)
    preds = s.predict(test)
    s.save(tmp_path / "m")
    if tuning == "lora":
        assert (tmp_path / "m" / "adapter" / "adapter_model.safetensors").exists()
        assert len(s.demos) == 2
    again = load_strategy(tmp_path / "m")
    assert torch.allclose(again.predict(test).probs, preds.probs, atol=1e-5)


def test_prompt_finetune_rejects_an_encoder(tiny_bert_dir):
    from .test_strategies import PROMPT

    cfg = STRATEGY_CONFIGS["prompt-finetune"].model_validate(
        {"name": "prompt-finetune", "backbone": str(tiny_bert_dir)}
    )
    with pytest.raises(TaskfitError, match="needs a causal LM backbone"):
        build_strategy(cfg, Context(LABELS, PROMPT))


@pytest.mark.parametrize("name", ["head-finetune", "lora", "ia3", "prompt-tuning"])
def test_a_causal_lm_becomes_a_classifier_on_its_last_token(name, tiny_llama_dir, tmp_path):
    s = make(tiny_llama_dir, name)
    assert s.model.pooling == "last"
    test = toy(6, offset=100)
    s.fit(toy(8), toy(4, offset=50))
    preds = s.predict(test)
    s.save(tmp_path / "m")
    assert torch.allclose(load_strategy(tmp_path / "m").predict(test).probs, preds.probs, atol=1e-6)


def test_last_token_pooling_ignores_padding_on_either_side(tiny_llama_dir):
    s = make(tiny_llama_dir, "head-finetune")
    s.model.eval()
    tok = s.tokenizer
    texts = ["good movie", "awful boring plot that was not fun"]
    with torch.no_grad():
        alone = [
            s.model(**{k: v for k, v in tok([t], return_tensors="pt").items() if k != "token_type_ids"})
            for t in texts
        ]
        for side in ("right", "left"):
            tok.padding_side = side
            batch = {
                k: v
                for k, v in tok(texts, padding=True, return_tensors="pt").items()
                if k != "token_type_ids"
            }
            together = s.model(**batch)
            assert torch.allclose(together[1], alone[1][0], atol=1e-5)  # the unpadded text: same either way
            if side == "right":  # (left padding also shifts the short text's positions, so it differs there)
                assert torch.allclose(together[0], alone[0][0], atol=1e-5)
