"""Generation (task: generation) on tiny random models: loss masking, packing, rendering, decoding, the
strategies end to end, and their config and data errors."""

from __future__ import annotations

import json
import math
import random

import pytest
import torch

from taskfit.compare.engine import run_experiment
from taskfit.config import DecodingConfig, validate_config
from taskfit.data.readers import Columns, Example, read_examples
from taskfit.errors import TaskfitError
from taskfit.models.generation import (
    IGNORE,
    Renderer,
    cut_at_stop,
    generate,
    pack,
    packed_batch,
    padded_batch,
    target_nll,
)
from taskfit.strategies import load_strategy
from tests.conftest import WORDS, write_csv

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    return model, AutoTokenizer.from_pretrained(tiny_llama_dir)


def test_only_target_tokens_contribute_to_the_loss(tiny):
    model, tokenizer = tiny
    renderer = Renderer.build(tokenizer, "Q: {text}\nA: {answer}", mode="off")
    example = Example(text="good movie", target="great fun")
    enc = renderer.encode(example, max_length=64)
    prompt_ids = tokenizer("Q: good movie\nA: ")["input_ids"]
    target_ids = tokenizer("great fun", add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    assert enc.input_ids == prompt_ids + target_ids
    assert enc.labels == [IGNORE] * len(prompt_ids) + target_ids

    nll, count = target_nll(model, padded_batch([enc], tokenizer.pad_token_id))
    # By hand: the log-probability of each target token given everything before it, from the logits.
    with torch.no_grad():
        logprobs = torch.log_softmax(model(torch.tensor([enc.input_ids])).logits[0], dim=-1)
    expected = -sum(
        logprobs[len(prompt_ids) + j - 1, t].item() for j, t in enumerate(target_ids)
    )  # position p predicts token p + 1
    assert count == len(target_ids)
    assert nll.item() == pytest.approx(expected, rel=1e-5)

    # Changing the prompt's own tokens' labels cannot matter: they are masked. Changing a target token does.
    with torch.no_grad():
        same = target_nll(model, padded_batch([enc], tokenizer.pad_token_id))[0]
    assert float(same) == pytest.approx(float(nll))
    # and transformers' own loss over the same labels is the per-token mean of ours
    with torch.no_grad():
        hf = model(torch.tensor([enc.input_ids]), labels=torch.tensor([enc.labels])).loss
    assert float(hf) == pytest.approx(expected / len(target_ids), rel=1e-5)


def test_padding_does_not_change_an_examples_loss(tiny):
    model, tokenizer = tiny
    renderer = Renderer.build(tokenizer, "{text}\n{answer}", mode="off")
    short = renderer.encode(Example(text="good", target="fun"))
    long = renderer.encode(Example(text="the movie was very good and the plot", target="loved it"))
    alone = float(target_nll(model, padded_batch([short], tokenizer.pad_token_id))[0])
    batched, _ = target_nll(model, padded_batch([short, long], tokenizer.pad_token_id))
    alone_long = float(target_nll(model, padded_batch([long], tokenizer.pad_token_id))[0])
    assert float(batched) == pytest.approx(alone + alone_long, rel=1e-5)


def test_packed_rows_keep_examples_apart(tiny):
    model, tokenizer = tiny
    renderer = Renderer.build(tokenizer, "{text}\n{answer}", mode="off")
    examples = [
        Example(text=" ".join(random.Random(i).choices(WORDS, k=2 + i)), target=WORDS[i]) for i in range(6)
    ]
    encoded = [renderer.encode(e) for e in examples]
    rows = pack(encoded, max_length=40)
    assert sorted(len(e) for row in rows for e in row) == sorted(len(e) for e in encoded)
    assert all(sum(len(e) for e in row) <= 40 for row in rows) and len(rows) < len(encoded)
    packed, count = target_nll(model, packed_batch(rows, tokenizer.pad_token_id))
    separate = [target_nll(model, padded_batch([e], tokenizer.pad_token_id)) for e in encoded]
    assert count == sum(n for _, n in separate)
    # no cross-contamination: the packed sum equals the examples' losses computed one at a time
    assert float(packed) == pytest.approx(sum(float(v) for v, _ in separate), rel=1e-4)


def test_chat_template_rendering_masks_the_prompt_and_keeps_the_end_of_turn(tiny_llama_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    tokenizer.chat_template = CHATML
    renderer = Renderer.build(tokenizer, "{text}{answer}")
    assert renderer.chat  # auto: the tokenizer has a chat template
    demo = Example(text="hi", target="hello")
    example = Example(text="how are you", target="fine", history=(("system", "be brief"),))
    prompt = renderer.prompt_text(example, [demo])
    assert prompt == (
        "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
        "<|im_start|>assistant\nhello<|im_end|>\n<|im_start|>user\nhow are you<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert renderer.target_text(example, [demo]) == "fine<|im_end|>\n"
    assert not Renderer.build(tokenizer, "{text}{answer}", mode="off").chat
    tokenizer.chat_template = None
    with pytest.raises(TaskfitError, match="no chat template"):
        Renderer.build(tokenizer, "{text}{answer}", mode="on")


def test_decoding_methods_and_stop_strings(tiny):
    model, tokenizer = tiny
    renderer = Renderer.build(tokenizer, "{text}\n{answer}", mode="off")
    prompts = [renderer.prompt_ids(Example(text=t)) for t in ("good movie", "the plot was very dull and")]
    stop = renderer.stop_token_ids()
    greedy, n = generate(model, tokenizer, prompts, DecodingConfig(max_new_tokens=6), stop)
    # batched left-padded greedy output equals one-at-a-time output
    alone = [generate(model, tokenizer, [p], DecodingConfig(max_new_tokens=6), stop)[0][0] for p in prompts]
    assert greedy == alone and 0 < n <= 12
    beam, _ = generate(
        model, tokenizer, prompts, DecodingConfig(method="beam", num_beams=3, max_new_tokens=6), stop
    )
    sampled_a, _ = generate(
        model, tokenizer, prompts, DecodingConfig(method="sample", max_new_tokens=6), stop, seed=1
    )
    sampled_b, _ = generate(
        model, tokenizer, prompts, DecodingConfig(method="sample", max_new_tokens=6), stop, seed=1
    )
    assert len(beam) == 2 and sampled_a == sampled_b  # seeded sampling repeats
    assert cut_at_stop("a reply\nUser: more", ["\nUser:", "###"]) == "a reply"
    assert cut_at_stop("no stop here", ["###"]) == "no stop here"


def gen_config(csv, backbone, strategies, **extra):
    return validate_config(
        {
            "name": "gen",
            "task": "generation",
            "data": {"train": str(csv), "shots": 48, "test_limit": 12},
            "prompt": {"template": "{text}\n{answer}"},
            "strategies": [
                {"backbone": str(backbone), "decoding": {"max_new_tokens": 6}, **s} for s in strategies
            ],
            "seeds": [0],
            **extra,
        }
    )


def test_generation_strategies_end_to_end(pairs_csv, tiny_llama_dir, tmp_path):
    config = gen_config(
        pairs_csv,
        tiny_llama_dir,
        [
            {"name": "zero-shot"},
            {"name": "in-context", "demos": 2},
            {"name": "full-finetune", "lr": 3e-3, "epochs": 4, "batching": "packed"},
            {"name": "lora", "lr": 2e-2, "epochs": 4},
            {"name": "prompt-tuning", "epochs": 2, "num_virtual_tokens": 4},
        ],
    )
    summary = run_experiment(config, tmp_path / "out", isolate=False)
    rows = {s["strategy"]: s for s in summary["strategies"]}
    assert set(rows) == {"zero-shot", "in-context", "full-finetune", "lora", "prompt-tuning"}
    assert all(s["runs"] == 1 and not s["failed"] for s in rows.values())
    before = rows["zero-shot"]["perplexity_mean"]
    # training on the task lowers the targets' perplexity below the untouched model's
    assert rows["full-finetune"]["perplexity_mean"] < 0.8 * before
    assert rows["lora"]["perplexity_mean"] < before
    assert rows["zero-shot"]["trainable_params"] == 0 and 0 < rows["prompt-tuning"]["trainable_params"] < 1000
    for s in rows.values():
        assert 0 <= s["chrf_mean"] <= 100 and 0 <= s["rougeL_mean"] <= 100
    (cell,) = (tmp_path / "out" / "lora").glob("*/k48/seed-0")
    metrics = json.loads((cell / "metrics.json").read_text())
    assert {"bleu", "chrf", "rouge1", "rouge2", "rougeL", "exact_match", "perplexity"} <= set(metrics)
    log = [json.loads(line) for line in (cell / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["epoch"] == 0 and "dev_loss" in log[0]  # the untouched model is epoch 0
    report = (tmp_path / "out" / "report.md").read_text()
    assert "| chrF | ROUGE-L | BLEU | perplexity |" in report
    assert "Before vs after" in report and "Samples: the untouched model beside the tuned ones" in report

    # a saved run reloads and decodes the same (greedy) outputs
    predictions = [json.loads(line) for line in (cell / "predictions.jsonl").read_text().splitlines()]
    reloaded = load_strategy(cell / "model")
    again = reloaded.predict([Example(text=p["input"], target=p["target"]) for p in predictions])
    assert again.texts == [p["generated"] for p in predictions]


def test_one_seed_generation_rows_are_ranked_without_a_made_up_test():
    from taskfit.compare.summary import METRICS, Group, recommend
    from taskfit.config import BudgetConfig

    def group(name, shots, chrf, trainable):
        g = Group(name, "bb", name, shots, metric=METRICS["generation"])
        g.ok.append(
            {
                "seed": 0,
                "metrics": {"chrf": chrf, "rougeL": chrf, "perplexity": 10.0},
                "trainable_params": trainable,
                "fit_seconds": 1.0,
                "predict_examples_per_s": 10.0,
            }
        )
        return g

    text = "\n".join(
        recommend(
            [group("full", "64", 60.0, 1000), group("lora", "64", 55.0, 10), group("zero-shot", "0", 3.0, 0)],
            BudgetConfig(),
            None,
            100,
        )
    )
    assert "Best by chrF at K=64 training pairs" in text and "**full (bb)** chrF 60.0" in text
    assert "With one seed there is no estimate of the seed-to-seed variance" in text
    assert "Not distinguishable" not in text and "clearly behind it" not in text
    assert "Cheapest within noise of the best" in text and "zero-shot" not in text.split("Cheapest")[1]

    # open-ended dialogue: rank by the references' perplexity, lower first
    from taskfit.compare.summary import metric_for

    by_ppl = metric_for("generation", "perplexity")
    rows = [group("full", "64", 60.0, 1000), group("zero-shot", "0", 3.0, 0)]
    rows[0].ok[0]["metrics"]["perplexity"], rows[1].ok[0]["metrics"]["perplexity"] = 30.0, 70.0
    for g in rows:
        g.metric = by_ppl
    ranked = "\n".join(recommend(rows[::-1], BudgetConfig(), None, 100))
    assert "Best by perplexity at K=64 training pairs" in ranked and "**full (bb)** perplexity 30.0" in ranked


def test_generation_configs_are_checked_per_task(pairs_csv, tiny_llama_dir):
    base = {"task": "generation", "data": {"train": str(pairs_csv)}}
    with pytest.raises(TaskfitError, match=r"task: 'generaton' is not a task.*Did you mean 'generation'"):
        validate_config({**base, "task": "generaton", "strategies": [{"name": "lora", "batching": "packed"}]})
    with pytest.raises(TaskfitError, match=r"metric: 'acuracy' is not a generation metric.*perplexity"):
        validate_config({**base, "metric": "acuracy", "strategies": [{"name": "lora"}]})
    assert (
        validate_config({**base, "metric": "perplexity", "strategies": [{"name": "lora"}]}).metric
        == "perplexity"
    )
    with pytest.raises(TaskfitError, match=r"strategies.0.name: expected one strategy name"):
        validate_config({**base, "strategies": [{"name": ["lora"]}]})
    with pytest.raises(
        TaskfitError, match=r"'head-finetune' is a classification strategy: set task: classification"
    ):
        validate_config({**base, "strategies": [{"name": "head-finetune"}]})
    with pytest.raises(TaskfitError, match=r"unknown config key 'strategies.0.head_lr'"):
        validate_config({**base, "strategies": [{"name": "lora", "head_lr": 1e-3}]})
    with pytest.raises(
        TaskfitError, match=r"strategies.0.decoding.top_p: Input should be less than or equal to 1"
    ):
        validate_config({**base, "strategies": [{"name": "zero-shot", "decoding": {"top_p": 2}}]})
    lora = validate_config({**base, "strategies": [{"name": "lora"}]}).strategies[0]
    assert lora.lr == 1e-3 and lora.batching == "length-grouped"  # the generation lora, not the classifier
    classification = validate_config({"data": {"train": str(pairs_csv)}, "strategies": [{"name": "lora"}]})
    assert classification.strategies[0].head_lr == 2e-3
    with pytest.raises(TaskfitError, match="strategies.0: batching: packed.*use batching: length-grouped"):
        validate_config({**base, "strategies": [{"name": "prompt-tuning", "batching": "packed"}]})


def test_chat_format_data_and_its_errors(tmp_path):
    good = tmp_path / "chat.jsonl"
    good.write_text(
        json.dumps(
            {
                "messages": [
                    {"role": "system", "content": "be brief"},
                    {"role": "user", "content": "hi"},
                    {"role": "assistant", "content": "hello"},
                ]
            }
        )
        + "\n",
        encoding="utf-8",
    )
    (example,) = read_examples(str(good), Columns(label=None, messages="messages"))
    assert (example.text, example.target, example.history) == ("hi", "hello", (("system", "be brief"),))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "again"}]})
        + "\n",
        encoding="utf-8",
    )
    with pytest.raises(
        TaskfitError, match=r"bad.jsonl:1: column 'messages': the last message must be the assistant"
    ):
        read_examples(str(bad), Columns(label=None, messages="messages"))
    missing = write_csv(tmp_path / "pairs.csv", [{"text": "hi", "reply": "hello"}])
    with pytest.raises(TaskfitError, match=r"pairs.csv:2: column 'target' not found.*Did you mean"):
        read_examples(str(missing), Columns(label=None, target="target"))


def test_movie_dialog_is_split_by_input_without_leaks():
    pytest.importorskip("taskfit.assets")
    from taskfit.data.catalog import load_builtin, normalise

    try:
        ds = load_builtin("movie-dialog")
    except TaskfitError as exc:  # the packaged data is not installed
        pytest.skip(str(exc))
    assert ds.card.task == "generation" and len(ds.train) > 40_000
    train_inputs = {normalise(e.text) for e in ds.train}
    assert not train_inputs & {normalise(e.text) for e in ds.test}
    assert all(e.target for e in ds.test[:100])
    assert math.isclose(len(ds.test) / (len(ds.train) + len(ds.dev) + len(ds.test)), 0.1, abs_tol=0.01)


def test_soft_prompt_generation_matches_step_by_step_decoding(tiny_llama_dir):
    """peft prompt tuning: cached decoding after the virtual tokens and left padding (peft drops position ids)
    both used to change the text; generate must equal a plain argmax loop over the whole sequence."""
    from peft import PromptTuningConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    lm = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    net = get_peft_model(lm, PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=4)).eval()
    renderer = Renderer.build(tokenizer, "{text}\n{answer}", mode="off")
    prompts = [
        renderer.prompt_ids(Example(text=t)) for t in ("good movie", "the plot was very dull and boring")
    ]
    texts, _ = generate(net, tokenizer, prompts, DecodingConfig(max_new_tokens=5, batch_size=2), [10**6])

    def stepwise(ids: list[int]) -> str:
        cur = torch.tensor([ids])
        with torch.no_grad():
            for _ in range(5):
                nxt = (
                    net(input_ids=cur, attention_mask=torch.ones_like(cur))
                    .logits[:, -1]
                    .argmax(-1, keepdim=True)
                )
                cur = torch.cat([cur, nxt], 1)
        return tokenizer.decode(cur[0, len(ids) :].tolist(), skip_special_tokens=True).strip()

    assert texts == [stepwise(p) for p in prompts]
