"""taskfit export on tiny random models: merged exports reproduce the run exactly through plain transformers
(and ONNX through onnxruntime), what cannot be merged says why, and an export never overwrites or half-writes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from taskfit.compare.engine import run_experiment
from taskfit.config import validate_config
from taskfit.data.readers import Example
from taskfit.errors import TaskfitError
from taskfit.export import export_run
from taskfit.registry import REGISTRY
from taskfit.strategies import load_strategy
from tests.test_generation import gen_config

TEXTS = ["good", "great fun movie loved it", "boring dull plot and awful actors", "the film was not bad"]


def train(csv: Path, out: Path, strategies: list[dict], **extra) -> dict[str, Path]:
    """Run a small grid; return each strategy's cell folder."""
    config = validate_config(
        {
            "name": "x",
            "data": {"train": str(csv), "shots": 8},
            "strategies": strategies,
            "seeds": [0],
            **extra,
        }
    )
    run_experiment(config, out, isolate=False)
    return {s["name"]: next((out / s["name"]).glob("*/k*/seed-0")) for s in strategies}


def perturb_lora(cell: Path) -> None:
    """LoRA's B starts at zero and a 2-epoch toy run hardly moves it: make the adapter matter, so that an
    export that dropped it (or merged it wrongly) could not pass."""
    path = cell / "model" / "adapter" / "adapter_model.safetensors"
    state = load_file(str(path))
    generator = torch.Generator().manual_seed(0)
    for name, value in state.items():
        if "lora_B" in name:
            state[name] = torch.randn(value.shape, generator=generator) * 0.5
    save_file(state, str(path))


def readme_classify(folder: Path):
    """The README's python snippet, run as written (only the folder filled in): what a user would copy."""
    readme = (folder / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    namespace: dict = {}
    exec(code.replace('folder = "."', f"folder = {str(folder)!r}"), namespace)
    return namespace["classify"]


def test_merged_lora_classifier_rebuilds_from_its_readme(tiny_bert_dir, sentiment_csv, tmp_path):
    from transformers import AutoModel

    cell = train(
        sentiment_csv, tmp_path / "out", [{"name": "lora", "backbone": str(tiny_bert_dir), "epochs": 2}]
    )["lora"]
    perturb_lora(cell)
    result = export_run(cell / "model", tmp_path / "export")  # the model/ folder itself is accepted too
    out = tmp_path / "export"
    assert result["output"] == str(out) and result["kind"] == "encoder-classifier" and result["merged"]
    assert result["onnx"] is None and result["onnx_max_abs_diff"] is None
    assert result["parity_max_abs_diff"] < 1e-5
    assert {"config.json", "model.safetensors", "head.safetensors", "taskfit_head.json", "README.md"} <= {
        p.name for p in out.iterdir()
    }
    assert not list(out.rglob("adapter_config.json")) and not list(out.rglob("*.bin"))
    meta = json.loads((out / "taskfit_head.json").read_text())
    assert meta["labels"] == ["negative", "positive"] and meta["pooling"] == "mean" and not meta["normalize"]

    # a plain BertModel with the LoRA update folded into its weights
    merged, base = AutoModel.from_pretrained(out), AutoModel.from_pretrained(tiny_bert_dir)
    assert type(merged).__name__ == "BertModel" and not any("lora" in n for n in merged.state_dict())
    query = "encoder.layer.0.attention.self.query.weight"
    assert (merged.state_dict()[query] - base.state_dict()[query]).abs().max() > 1e-2

    expected = load_strategy(cell / "model").predict([Example(text=t) for t in TEXTS]).probs
    got = readme_classify(out)(TEXTS)
    assert got.shape == (len(TEXTS), 2)
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)
    assert (expected - expected.mean(0)).abs().max() > 1e-3  # the texts are told apart: not a vacuous check


def test_merged_generation_lora_matches_the_peft_run(tiny_llama_dir, pairs_csv, tmp_path):
    from transformers import AutoModelForCausalLM

    config = gen_config(pairs_csv, tiny_llama_dir, [{"name": "lora", "lr": 2e-2, "epochs": 1}])
    run_experiment(config, tmp_path / "out", isolate=False)
    cell = next((tmp_path / "out" / "lora").glob("*/k48/seed-0"))
    perturb_lora(cell)
    result = export_run(cell, tmp_path / "export")
    out = tmp_path / "export"
    assert result["kind"] == "causal-lm" and result["merged"] and result["parity_max_abs_diff"] < 1e-5
    assert json.loads((out / "taskfit_prompt.json").read_text())["template"] == "{text}\n{answer}"

    run = load_strategy(cell / "model")
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(merged).__name__ == "LlamaForCausalLM" and not any("lora" in n for n in merged.state_dict())
    prompts = [run.model.renderer.prompt_ids(Example(text=t)) for t in TEXTS]
    greedy = {"max_new_tokens": 8, "do_sample": False, "pad_token_id": 0}
    with torch.no_grad():
        for ids in prompts:
            ids = torch.tensor([ids])
            assert torch.allclose(merged(ids).logits, run.net(input_ids=ids).logits, atol=1e-5, rtol=0)
            tokens = merged.generate(ids, **greedy)
            assert tokens.shape[1] > ids.shape[1]
            assert torch.equal(tokens, run.net.generate(input_ids=ids, **greedy))
        # the adapter changed the model: the same prompt scores differently under the untouched backbone
        base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
        assert (base(ids).logits - merged(ids).logits).abs().max() > 1e-2


def test_onnx_matches_the_run_for_head_finetune_and_lora(tiny_bert_dir, sentiment_csv, tmp_path):
    import onnxruntime

    strategies = [{"name": n, "backbone": str(tiny_bert_dir), "epochs": 2} for n in ("head-finetune", "lora")]
    cells = train(sentiment_csv, tmp_path / "out", strategies)
    perturb_lora(cells["lora"])
    for name, cell in cells.items():
        result = export_run(cell, tmp_path / name, onnx=True)
        assert result["onnx"] == str(tmp_path / name / "model.onnx")
        assert result["onnx_max_abs_diff"] < 1e-4 and result["parity_max_abs_diff"] < 1e-5

        # and independently, at batch sizes other than the ones export traced and checked (dynamic axes)
        session = onnxruntime.InferenceSession(result["onnx"], providers=["CPUExecutionProvider"])
        run = load_strategy(cell / "model")
        for texts in (TEXTS[:1], TEXTS * 2):
            enc = run.tokenizer(texts, padding=True, return_tensors="np")
            probs = session.run(["probabilities"], {i.name: enc[i.name] for i in session.get_inputs()})[0]
            expected = run.predict([Example(text=t) for t in texts]).probs
            assert (torch.from_numpy(probs) - expected).abs().max() < 1e-4, name


def test_what_cannot_be_merged_says_why_and_the_alternatives_work(tiny_bert_dir, sentiment_csv, tmp_path):
    strategies = [
        {"name": n, "backbone": str(tiny_bert_dir), "epochs": 1} for n in ("prompt-tuning", "adapter")
    ]
    cells = train(sentiment_csv, tmp_path / "out", strategies)
    with pytest.raises(
        TaskfitError,
        match=r"prompt-tuning cannot be merged.*virtual-token.*without merge.*"
        r"PeftModel\.from_pretrained.*serve the run",
    ):
        export_run(cells["prompt-tuning"], tmp_path / "pt")
    with pytest.raises(TaskfitError, match=r"adapter cannot be merged.*Houlsby.*non-linear.*onnx=True"):
        export_run(cells["adapter"], tmp_path / "ad")
    with pytest.raises(TaskfitError, match=r"adapter exists only as taskfit modules"):
        export_run(cells["adapter"], tmp_path / "ad", merge=False)
    assert not (tmp_path / "pt").exists() and not (tmp_path / "ad").exists()

    # the offered alternatives: the peft adapter folder, and ONNX with the adapters in the graph
    texts = [Example(text=t) for t in TEXTS]
    result = export_run(cells["prompt-tuning"], tmp_path / "pt", merge=False)
    assert not result["merged"] and (tmp_path / "pt" / "adapter" / "adapter_config.json").exists()
    expected = load_strategy(cells["prompt-tuning"] / "model").predict(texts).probs
    assert torch.allclose(readme_classify(tmp_path / "pt")(TEXTS), expected, atol=1e-5, rtol=0)
    result = export_run(cells["adapter"], tmp_path / "ad", merge=False, onnx=True)
    assert result["onnx_max_abs_diff"] < 1e-4 and not (tmp_path / "ad" / "model.safetensors").exists()


def test_generation_prompt_tuning_is_refused_with_the_way_out(tiny_llama_dir, pairs_csv, tmp_path):
    config = gen_config(
        pairs_csv, tiny_llama_dir, [{"name": "prompt-tuning", "epochs": 1, "num_virtual_tokens": 4}]
    )
    run_experiment(config, tmp_path / "out", isolate=False)
    cell = next((tmp_path / "out" / "prompt-tuning").glob("*/k48/seed-0"))
    with pytest.raises(
        TaskfitError, match=r"cannot be merged.*virtual-token.*peft\.PeftModel\.from_pretrained"
    ):
        export_run(cell, tmp_path / "export")
    with pytest.raises(TaskfitError, match=r"onnx export covers encoder classifiers"):
        export_run(cell, tmp_path / "export", merge=False, onnx=True)
    result = export_run(cell, tmp_path / "export", merge=False)
    assert result["kind"] == "causal-lm" and not result["merged"] and result["parity_max_abs_diff"] < 1e-5


def test_an_export_never_overwrites_or_half_writes(tiny_bert_dir, sentiment_csv, tmp_path):
    cell = train(
        sentiment_csv,
        tmp_path / "out",
        [{"name": "head-finetune", "backbone": str(tiny_bert_dir), "epochs": 1}],
    )["head-finetune"]
    taken = tmp_path / "exports" / "taken"
    taken.mkdir(parents=True)
    (taken / "keep.txt").write_text("mine")
    with pytest.raises(
        TaskfitError, match=rf"{re.escape(str(taken))} already exists and is not an empty folder"
    ):
        export_run(cell, taken)
    assert [p.name for p in taken.iterdir()] == ["keep.txt"] and (taken / "keep.txt").read_text() == "mine"

    # a failed parity check (atol below any difference) publishes nothing and cleans up its temp folder
    with pytest.raises(TaskfitError, match=r"probabilities differ from the run's own by .* above atol=-1"):
        export_run(cell, tmp_path / "exports" / "failed", atol=-1.0)
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == ["taken"]

    empty = tmp_path / "exports" / "empty"
    empty.mkdir()
    assert export_run(cell, empty)["parity_max_abs_diff"] < 1e-5  # an empty folder is fine to fill
    assert (empty / "model.safetensors").exists()
    with pytest.raises(TaskfitError, match=r"is not a saved run"):
        export_run(tmp_path / "exports", tmp_path / "x")


# why each strategy that trains weights yet has no export form is refused (issue 32: every one was said to
# "score label words with a prompt", taggers and span heads included)
NO_EXPORT_REASONS = {
    "classification": "scores label words",
    "ner": "tag per word",
    "relation": "entity markers",
    "extractive-qa": "start/end span head",
}


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param(e, id=f"{e.task}/{e.name}")
        for e in REGISTRY.entries()
        if e.trains_weights and e.export is None
    ],
)
def test_a_refused_export_gives_the_strategys_own_reason(entry, tmp_path):
    from taskfit.export import exportable_form

    with pytest.raises(TaskfitError) as refused:
        exportable_form(entry.task, entry.name, "minilm", True, False, tmp_path)
    message = str(refused.value)
    assert NO_EXPORT_REASONS[entry.task] in message, message
    wrong = [reason for task, reason in NO_EXPORT_REASONS.items() if task != entry.task and reason in message]
    assert not wrong, message


def test_a_corrected_model_exports_with_its_offsets_in_the_head_and_an_average_is_refused(
    tiny_bert_dir, sentiment_csv, tmp_path
):
    """A decision correction (issue 36) shifts the head's bias: the export answers the run's corrected labels."""
    from taskfit.strategies.corrected import CORRECTION_KEY

    cell = train(
        sentiment_csv,
        tmp_path / "out",
        [
            {"name": "head-finetune", "backbone": str(tiny_bert_dir), "epochs": 1},
            {"name": "contrastive", "backbone": str(tiny_bert_dir), "num_iterations": 1, "epochs": 1},
        ],
    )
    for name in ("head-finetune", "contrastive"):
        model = cell[name] / "model"
        saved = json.loads((model / "strategy.json").read_text())
        saved[CORRECTION_KEY] = {
            "applied": ["shares", "decision"],
            "metric": "macro_f1",
            "temperature": 2.0,
            "shares": {"negative": 0.4, "positive": -0.4},
            "decision": {"negative": 1.5, "positive": -1.5},
        }
        (model / "strategy.json").write_text(json.dumps(saved))
        result = export_run(model, tmp_path / f"export-{name}")
        assert result["parity_max_abs_diff"] < 1e-5  # against the corrected run's scores
        expected = load_strategy(model).predict([Example(text=t) for t in TEXTS])
        got = readme_classify(tmp_path / f"export-{name}")(TEXTS)
        assert torch.allclose(got, expected.probs, atol=1e-5, rtol=0)
        assert expected.labels.count("negative") >= 3  # the +1.9 shift answers the rare label: not vacuous
    averaged = tmp_path / "avg"
    averaged.mkdir()
    (averaged / "strategy.json").write_text(
        json.dumps(
            {
                "members": ["members/0", "members/1"],
                "member_names": ["a", "b"],
                "labels": ["x"],
                "strategy": {"name": "ensemble"},
            }
        )
    )
    with pytest.raises(TaskfitError, match="averages 2 models .*export a member instead"):
        export_run(averaged, tmp_path / "export-avg")
