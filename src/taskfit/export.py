"""Export a saved run as a model that serves without taskfit (``taskfit export RUN_DIR --merge [--onnx]``).

What a run becomes (``merge=True``):

* generation fine-tunes (full-finetune, lora): a plain transformers causal-LM folder (config, safetensors,
  tokenizer) that ``AutoModelForCausalLM.from_pretrained`` loads; LoRA is folded in with peft's
  ``merge_and_unload``. ``taskfit_prompt.json`` holds the prompt template and decoding settings it was
  trained and evaluated with.
* encoder classifiers (head-finetune/linear probe, bitfit, lora, ia3, contrastive): the encoder as a plain
  transformers folder (``AutoModel.from_pretrained``), the linear head as ``head.safetensors`` and
  ``taskfit_head.json`` (pooling, labels, ...). The README.md written beside them rebuilds the classifier
  in a dozen lines of transformers + torch. ``onnx=True`` adds ``model.onnx``: token ids -> logits and
  probabilities, dynamic batch and sequence axes.

``merge=False`` keeps a peft adapter as an adapter (``adapter/``, loaded with ``peft.PeftModel.from_pretrained``
over the base backbone); that is also the export of prompt/prefix tuning, which cannot be merged. Houlsby
adapters exist only as taskfit modules, so their one export is ONNX (``merge=False, onnx=True``).

Every export is checked before it is published: it is reloaded from the written files and must reproduce
the run's own outputs within ``atol`` (and so must the ONNX model under onnxruntime). It is built in a
hidden sibling folder and renamed into place, so a failed export leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from taskfit.data.readers import Example
from taskfit.errors import TaskfitError
from taskfit.strategies.base import STRATEGY_FILE, BackboneCache, read_strategy_file
from taskfit.strategies.corrected import label_shift, temperature
from taskfit.strategies.saved import find_model_dir
from taskfit.strategies.tuning import ADAPTER_DIR
from taskfit.tasks import get_task

HEAD_FILE = "head.safetensors"
HEAD_META = "taskfit_head.json"
PROMPT_META = "taskfit_prompt.json"
ONNX_FILE = "model.onnx"
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Short and long, so that parity runs over padded rows too; a run's own test inputs are added when present.
SAMPLE_TEXTS = (
    "good",
    "This was a wonderful film and I loved every minute of it.",
    "Terrible plot, dull actors: a boring waste of an evening.",
    "Who wrote the story, and where does it take place?",
)
PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}


def export_form(task: str, name: str) -> str | None:
    """How a saved run holds its trained weights (``StrategyEntry.export`` in the registry: full, peft,
    virtual, modules), which decides what it can be exported as; None: nothing a plain model holds."""
    from taskfit.registry import REGISTRY

    entry = next((e for e in REGISTRY.entries(task) if e.name == name), None)
    return entry.export if entry is not None else None


def trains_nothing(task: str, name: str) -> bool:
    """A prompted strategy (zero-shot, in-context): its registry entry declares that it fits no weights."""
    from taskfit.registry import REGISTRY

    entry = next((e for e in REGISTRY.entries(task) if e.name == name), None)
    return entry is not None and not entry.trains_weights


def export_run(
    run_dir: str | Path,
    output: str | Path,
    merge: bool = True,
    onnx: bool = False,
    atol: float = 1e-4,
    samples: Sequence[str] | None = None,
) -> dict:
    """Write a saved run (a grid cell folder, or its ``model/``) to ``output`` as a deployable model.

    ``samples``: texts for the parity checks (default: a few fixed strings plus the run's test inputs).
    Returns {"output", "kind" ("causal-lm" | "encoder-classifier"), "strategy", "merged" (the weights are a
    standalone transformers model: adapter folded in, or a run that trained full weights), "onnx" (path or
    None), "onnx_max_abs_diff", "parity_max_abs_diff" (export reloaded from disk vs the run: logits for
    causal LMs, label probabilities for classifiers)}.
    """
    model_dir = find_model_dir(
        run_dir, "; give a grid cell folder (e.g. runs/NAME/lora/minilm/k8/seed-0) or a grid"
    )
    saved = read_strategy_file(model_dir)
    if saved.get("members"):  # strategies.averaged: several models, none of them alone is this run
        raise TaskfitError(
            f"{model_dir} averages {len(saved['members'])} models ({', '.join(saved.get('member_names') or [])}) "
            f"and export writes one; export a member instead, e.g. taskfit export {model_dir / saved['members'][0]}"
            " (or refit with final_members: 1 for a single final model)"
        )
    task, name = saved.get("task", "classification"), saved["strategy"]["name"]
    backbone = saved["strategy"].get("backbone", "?")
    form = exportable_form(task, name, backbone, merge, onnx, model_dir)
    output = Path(output)
    check_output(output)
    texts = list(samples) if samples else sample_texts(model_dir)

    from taskfit.strategies import load_strategy

    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.parent / f".{output.name}.{uuid.uuid4().hex[:8]}.export-tmp"  # same filesystem: rename works
    tmp.mkdir()
    try:
        # CPU: an export is a one-off; ONNX tracing and parity are simplest there. No remote code, ever.
        strategy = load_strategy(model_dir, BackboneCache(trust_remote_code=False, device="cpu"))
        with torch.no_grad():
            if get_task(task).exporter == "causal-lm":
                result = export_causal_lm(strategy, tmp, form, merge, texts, atol)
            else:
                result = export_classifier(strategy, saved, tmp, form, merge, onnx, texts, atol)
        pickled = [p.name for p in tmp.rglob("*") if p.suffix in PICKLE_SUFFIXES]
        if pickled:  # save_pretrained writes safetensors in transformers 5 and peft; guard the promise anyway
            raise TaskfitError(f"export wrote pickle-format files {pickled}; refusing to publish it")
        publish(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    onnx_path = output / ONNX_FILE if result.get("onnx_max_abs_diff") is not None else None
    return {
        "output": str(output),
        "strategy": name,
        **result,
        "onnx": str(onnx_path) if onnx_path else None,
    }


# A strategy that trains weights yet has no export form, and why (a task's own refusals, e.g. ner's taggers
# or relation's marker head, are its Task.check_export's)
WHY_NOT_EXPORTED = {
    (
        "classification",
        "prompt-finetune",
    ): "it scores label words with a prompt and verbalizer: the classifier "
    "is the fine-tuned causal LM together with its template, which no plain model carries",
}


def exportable_form(task: str, name: str, backbone: str, merge: bool, onnx: bool, where: Path) -> str:
    """Refuse what cannot be exported before anything loads, saying why and what works instead."""
    serve = f"or serve the run itself with taskfit (taskfit.strategies.load_strategy('{where}'))"
    form = export_form(task, name)
    if form is None and trains_nothing(task, name):
        raise TaskfitError(
            f"{name} trains nothing, so there are no weights to export: the model is the backbone "
            f"'{backbone}' itself, and the prompt is in {where / STRATEGY_FILE}"
        )
    get_task(task).check_export(name, form, onnx, serve)  # the task's own refusals (span heads, onnx LMs)
    if form is None:
        reason = WHY_NOT_EXPORTED.get((task, name), "its registry entry declares no export form")
        raise TaskfitError(
            f"export covers generation fine-tunes and encoder classifiers, not {task} strategy '{name}' "
            f"({reason}); {serve}"
        )
    if merge and form == "virtual":
        what = (
            "key/value prefixes prepended in every attention layer"
            if name == "prefix-tuning"
            else "virtual-token embeddings prepended to every input"
        )
        raise TaskfitError(
            f"{name} cannot be merged into the model's weights: it learns {what}, not a change to any "
            f"weight, so no plain transformers model reproduces it. Export it without merge (the peft "
            f"adapter folder, loaded with peft.PeftModel.from_pretrained over the base backbone "
            f"'{backbone}'), {serve}"
        )
    if form == "modules" and (merge or not onnx):
        why = (
            "cannot be merged into the model's weights: Houlsby adapters add new bottleneck modules "
            "(down-projection, GELU, up-projection) after projections, and a non-linear module does not "
            "fold into the existing weights, so no plain transformers model reproduces it"
            if merge
            else "exists only as taskfit modules, which neither transformers nor peft load"
        )
        raise TaskfitError(
            f"{name} {why}. Export it as ONNX without merge (merge=False, onnx=True; the graph keeps the "
            f"adapters), {serve}"
        )
    return form


def check_output(output: Path) -> None:
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise TaskfitError(
            f"{output} already exists and is not an empty folder; export into a new or empty folder "
            "(nothing was overwritten)"
        )


def publish(tmp: Path, output: Path) -> None:
    """Rename the finished export into place: readers see all of it or none of it.

    Some writers create private (0600) files; an export is meant to be copied and served by others, so
    every file gets the permissions the umask gives a new file (read from the folder mkdir just made)."""
    folder_mode = tmp.stat().st_mode & 0o777
    for path in tmp.rglob("*"):
        path.chmod(folder_mode if path.is_dir() else folder_mode & 0o666)
    try:
        os.replace(tmp, output)  # replaces an empty folder; fails if something appeared there meanwhile
    except OSError as exc:
        raise TaskfitError(f"could not move the export into {output}: {exc}") from exc


def sample_texts(model_dir: Path) -> list[str]:
    """Fixed strings plus the first few test inputs the run predicted (real task text, when saved)."""
    texts = list(SAMPLE_TEXTS)
    predictions = model_dir.parent / "predictions.jsonl"
    if model_dir.name == "model" and predictions.exists():
        with predictions.open(encoding="utf-8") as f:
            for line, _ in zip(f, range(4)):
                row = json.loads(line)
                text = row.get("text", row.get("input"))
                if isinstance(text, str) and text:
                    texts.append(text)
    return texts


def write_json(path: Path, payload: dict) -> None:
    """Plain writes inside the export folder: the folder as a whole is published atomically."""
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def base_path(backbone: str) -> str:
    """Where the run's base backbone loads from (packaged backbones: taskfit's local copy, which is what
    an adapter was trained over; e.g. smollm2's is dequantised from GGUF and differs from the hub's)."""
    from taskfit.models.backbones import resolve

    return resolve(backbone)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max())


def check_parity(what: str, diff: float, atol: float) -> None:
    if not diff <= atol:  # also catches NaN
        raise TaskfitError(
            f"{what} differ from the run's own by {diff:.3g} (max abs), above atol={atol:g}; nothing was "
            "exported"
        )


# ---- generation: causal LM -------------------------------------------------------------------------------


def lm_logits(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Logits of the real (unpadded) positions; a soft prompt's virtual positions come first and are cut."""
    logits = model(**batch).logits[:, -batch["input_ids"].shape[1] :]
    return logits[batch["attention_mask"].bool()]


def export_causal_lm(strategy, tmp: Path, form: str, merge: bool, texts: list[str], atol: float) -> dict:
    from transformers import AutoModelForCausalLM

    tokenizer = strategy.model.tokenizer
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    batch = {k: enc[k] for k in ("input_ids", "attention_mask")}
    reference = lm_logits(strategy.net, batch)  # before merging: merge_and_unload changes the model in place
    standalone = form == "full" or merge
    if standalone:
        lm = strategy.peft_model.merge_and_unload() if strategy.peft_model is not None else strategy.lm
        lm.save_pretrained(tmp)
        reloaded = AutoModelForCausalLM.from_pretrained(
            tmp, dtype=torch.float32, trust_remote_code=False, use_safetensors=True
        )
    else:
        from peft import PeftModel

        strategy.peft_model.save_pretrained(tmp / ADAPTER_DIR)
        base = AutoModelForCausalLM.from_pretrained(
            base_path(strategy.config.backbone),
            dtype=torch.float32,
            trust_remote_code=False,
            use_safetensors=True,
        )
        reloaded = PeftModel.from_pretrained(base, str(tmp / ADAPTER_DIR))
    tokenizer.save_pretrained(tmp)
    diff = max_diff(lm_logits(reloaded.eval(), batch), reference)
    check_parity("the exported model's logits", diff, atol)

    c, prompt = strategy.config, strategy.ctx.prompt
    meta = {
        "strategy": c.name,
        "backbone": c.backbone,
        "template": prompt.template if prompt else "{text}{answer}",
        "chat_template": strategy.model.renderer.chat,
        "max_length": c.max_length,
        "stop_token_ids": strategy.model.renderer.stop_token_ids(),
        "decoding": c.decoding.model_dump(mode="json"),
    }
    write_json(tmp / PROMPT_META, meta)
    (tmp / "README.md").write_text(causal_lm_readme(meta, standalone), encoding="utf-8")
    return {"kind": "causal-lm", "merged": standalone, "parity_max_abs_diff": diff, "onnx_max_abs_diff": None}


def causal_lm_readme(meta: dict, standalone: bool) -> str:
    imports = "from transformers import AutoModelForCausalLM, AutoTokenizer"
    load = "model = AutoModelForCausalLM.from_pretrained(folder)"
    if not standalone:
        imports = "from peft import PeftModel\n" + imports
        load = (
            f"base = AutoModelForCausalLM.from_pretrained({base_path(meta['backbone'])!r})  # trained over this base\n"
            f'model = PeftModel.from_pretrained(base, f"{{folder}}/{ADAPTER_DIR}")'
        )
    prompt = (
        "Render the input through the tokenizer's chat template (`apply_chat_template(messages, "
        "add_generation_prompt=True)`), the input filled into the template as the user turn."
        if meta["chat_template"]
        else "Fill the template up to `{answer}` with the input; generation continues from there."
    )
    return f"""# {meta["strategy"]} on {meta["backbone"]}, exported by taskfit

```python
{imports}

folder = "."  # this folder
tokenizer = AutoTokenizer.from_pretrained(folder)
{load}
```

Prompt template: `{meta["template"]!r}`. {prompt} Decoding settings of the run and the ids generation
stops at: `{PROMPT_META}`.
"""


# ---- classification: encoder + pooling + linear head ----------------------------------------------------


class ExportedClassifier(nn.Module):
    """The README's rebuild as a module: encoder -> pooling (-> L2 normalisation) -> linear head.

    The parity check runs this on the reloaded files, so the recipe users copy is the one that is tested."""

    def __init__(self, encoder: nn.Module, head: nn.Linear, pooling: str, normalize: bool) -> None:
        super().__init__()
        self.encoder, self.head, self.pooling, self.normalize = encoder, head, pooling, normalize

    def forward(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        hidden = hidden[:, hidden.shape[1] - attention_mask.shape[1] :]  # drop prompt tuning's virtual tokens
        if self.pooling == "mean":
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        elif self.pooling == "last":  # the last real token, with either padding side
            positions = torch.arange(attention_mask.shape[1], device=hidden.device)
            pooled = hidden[
                torch.arange(hidden.shape[0], device=hidden.device), (attention_mask * positions).argmax(1)
            ]
        else:  # cls
            pooled = hidden[:, 0]
        if self.normalize:
            pooled = nn.functional.normalize(pooled, dim=-1)
        return self.head(pooled)


class WithProbabilities(nn.Module):
    """What the ONNX graph computes: logits and their softmax, the probabilities ``predict`` reports."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier

    def forward(self, input_ids, attention_mask, token_type_ids=None) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.classifier(input_ids, attention_mask, token_type_ids)
        return logits, torch.softmax(logits.float(), dim=-1)


class ShiftedLogits(nn.Module):
    """A classifier whose logits are divided by a temperature and get a per-label shift (a run's correction)."""

    def __init__(self, classifier: nn.Module, shift: torch.Tensor, temperature: float = 1.0) -> None:
        super().__init__()
        self.classifier, self.temperature = classifier, temperature
        self.register_buffer("shift", shift.float())

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return self.classifier(*args, **kwargs) / self.temperature + self.shift


def classifier_parts(strategy) -> tuple[nn.Module, dict[str, torch.Tensor], str, bool]:
    """(encoder, head state as weight/bias, pooling, normalize) of a head-style or contrastive strategy."""
    from taskfit.strategies.contrastive import Contrastive

    # strategies.corrected: offsets on the log-probabilities
    correction = getattr(strategy, "correction", None)
    strategy = getattr(strategy, "inner", strategy)
    if isinstance(strategy, Contrastive):  # logistic regression on L2-normalised mean-pooled states
        parts = strategy.encoder, {"weight": strategy.coef, "bias": strategy.intercept}, "mean", True
    else:
        head = {k: v.detach() for k, v in strategy.model.head.state_dict().items()}
        parts = strategy.model.encoder, head, strategy.model.pooling, False
    if correction:
        # softmax(log softmax(logits) + offsets) = softmax(logits + offsets): the label decision is a shift
        # of the head's bias, so the exported classifier answers the run's corrected labels
        # logits / T (+ shares + decision when the decision applies): what the run's scores are
        scale = 1.0 / temperature(correction)
        shift = label_shift(correction, list(strategy.ctx.labels))
        weight, bias = parts[1]["weight"], parts[1]["bias"]
        parts[1]["weight"] = weight * scale
        parts[1]["bias"] = bias * scale + (shift.to(bias.dtype) if shift is not None else 0)
    return parts


def model_inputs(strategy, form: str) -> list[str]:
    """The tensors the run feeds its encoder: the tokenizer's, less token types under virtual tokens (peft
    ignores them there, as the strategy's own batches do)."""
    keys = [k for k in MODEL_INPUTS if k in strategy.tokenizer("a")]
    return [k for k in keys if not (form == "virtual" and k == "token_type_ids")]


def export_classifier(
    strategy, saved: dict, tmp: Path, form: str, merge: bool, onnx: bool, texts: list[str], atol: float
) -> dict:
    from safetensors.torch import save_file
    from transformers import AutoModel

    c = strategy.config
    reference = strategy.predict([Example(text=t) for t in texts]).probs  # before merging (in place)
    encoder, head_state, pooling, normalize = classifier_parts(strategy)
    inputs = model_inputs(strategy, form)
    enc = strategy.tokenizer(
        texts, padding=True, truncation=True, max_length=c.max_length, return_tensors="pt"
    )
    batch = {k: enc[k] for k in inputs}
    standalone = form == "full" or merge
    meta = {
        "strategy": c.name,
        "backbone": c.backbone,
        "labels": list(saved["labels"]),
        "pooling": pooling,
        "normalize": normalize,
        "max_length": c.max_length,
        "inputs": inputs,
        "encoder": "." if standalone else ADAPTER_DIR,
    }
    if form == "modules":  # Houlsby adapters: ONNX is the export (exportable_form allowed only that)
        classifier, parity = strategy.model.eval(), None
        correction = getattr(strategy, "correction", None) or {}
        if correction.get("applied"):  # the correction, applied to the logits the ONNX graph returns
            shift = label_shift(correction, list(saved["labels"]))
            shift = shift if shift is not None else torch.zeros(len(saved["labels"]))
            classifier = ShiftedLogits(classifier, shift, temperature(correction)).eval()
    else:
        head = nn.Linear(*reversed(head_state["weight"].shape))
        head.load_state_dict(head_state)
        if standalone:
            plain = encoder.merge_and_unload() if form == "peft" else encoder
            plain.save_pretrained(tmp)
            reloaded = AutoModel.from_pretrained(
                tmp, dtype=torch.float32, trust_remote_code=False, use_safetensors=True
            )
        else:
            from peft import PeftModel

            encoder.save_pretrained(tmp / ADAPTER_DIR)
            base = AutoModel.from_pretrained(
                base_path(c.backbone), dtype=torch.float32, trust_remote_code=False, use_safetensors=True
            )
            reloaded = PeftModel.from_pretrained(base, str(tmp / ADAPTER_DIR))
        save_file({k: v.contiguous().cpu() for k, v in head_state.items()}, str(tmp / HEAD_FILE))
        classifier = ExportedClassifier(reloaded.eval(), head, pooling, normalize).eval()
        parity = max_diff(torch.softmax(classifier(**batch).float(), dim=-1), reference)
        check_parity("the exported classifier's probabilities", parity, atol)
    strategy.tokenizer.save_pretrained(tmp)
    write_json(tmp / HEAD_META, meta)
    onnx_diff = export_onnx(classifier, batch, reference, tmp / ONNX_FILE, atol) if onnx else None
    (tmp / "README.md").write_text(classifier_readme(meta, form, onnx), encoding="utf-8")
    return {
        "kind": "encoder-classifier",
        "merged": standalone and form != "modules",
        "parity_max_abs_diff": parity,
        "onnx_max_abs_diff": onnx_diff,
    }


def export_onnx(
    classifier: nn.Module, batch: dict[str, torch.Tensor], reference: torch.Tensor, path: Path, atol: float
) -> float:
    """torch.onnx's dynamo exporter (the supported one in torch 2.x), then onnxruntime on the sample batch.

    The example input is two rows of the batch, so the parity batch has another shape than the traced one:
    a dimension that was baked in instead of kept dynamic fails the check instead of a user's request."""
    try:
        import onnxruntime
    except ImportError as exc:
        raise TaskfitError(
            f"onnx export needs onnx, onnxscript and onnxruntime: pip install 'taskfit[export]' ({exc})"
        ) from exc

    names = list(batch)
    # torch.export specialises a size-1 dimension to a constant: trace on 2 rows (the first one twice if need be)
    rows = [0, 1] if len(batch[names[0]]) > 1 else [0, 0]
    example = tuple(batch[k][rows, : max(2, batch[k].shape[1] - 1)] for k in names)
    batch_dim, seq_dim = torch.export.Dim("batch"), torch.export.Dim("sequence")
    wrapper = WithProbabilities(classifier).eval()
    big = sum(p.numel() * p.element_size() for p in wrapper.parameters()) > 1.8 * 2**30  # protobuf's 2 GB cap
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's deprecation and axis-renaming chatter
            torch.onnx.export(
                wrapper,
                example,
                str(path),
                input_names=names,
                output_names=["logits", "probabilities"],
                dynamic_shapes={k: {0: batch_dim, 1: seq_dim} for k in names},
                dynamo=True,
                external_data=big,
                verbose=False,
            )
    except Exception as exc:  # torch.export names the unsupported construct; keep that, add what failed
        raise TaskfitError(f"onnx export of the classifier failed: {type(exc).__name__}: {exc}") from exc
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # a parity check, not a benchmark: stay off the other cores
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {i.name: batch[i.name].numpy() for i in session.get_inputs()}
    probabilities = session.run(["probabilities"], feed)[0]
    diff = max_diff(torch.from_numpy(probabilities), reference)
    check_parity("the ONNX model's probabilities (onnxruntime)", diff, atol)
    return diff


def classifier_readme(meta: dict, form: str, onnx: bool) -> str:
    """How to use the export without taskfit; the python block is executed by the tests."""
    imports = "from transformers import AutoModel, AutoTokenizer"
    load = "encoder = AutoModel.from_pretrained(folder).eval()"
    if meta["encoder"] != ".":
        imports = "from peft import PeftModel\n" + imports
        load = (
            f"base = AutoModel.from_pretrained({base_path(meta['backbone'])!r})  # trained over this base\n"
            f'encoder = PeftModel.from_pretrained(base, f"{{folder}}/{meta["encoder"]}").eval()'
        )
    torch_part = f"""
```python
import json, torch
from safetensors.torch import load_file
{imports}

folder = "."  # this folder
meta = json.load(open(f"{{folder}}/{HEAD_META}"))
tokenizer = AutoTokenizer.from_pretrained(folder)
{load}
head = torch.nn.Linear(encoder.config.hidden_size, len(meta["labels"]))
head.load_state_dict(load_file(f"{{folder}}/{HEAD_FILE}"))

@torch.no_grad()
def classify(texts):  # -> (N, labels) probabilities, columns in meta["labels"] order
    enc = tokenizer(texts, padding=True, truncation=True, max_length=meta["max_length"], return_tensors="pt")
    mask = enc["attention_mask"]
    hidden = encoder(**{{k: enc[k] for k in meta["inputs"]}}).last_hidden_state
    hidden = hidden[:, hidden.shape[1] - mask.shape[1] :]  # prompt tuning's virtual tokens come first
    if meta["pooling"] == "mean":
        weights = mask[..., None].to(hidden.dtype)
        pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
    elif meta["pooling"] == "last":
        pooled = hidden[torch.arange(len(hidden)), (mask * torch.arange(mask.shape[1])).argmax(1)]
    else:  # cls
        pooled = hidden[:, 0]
    if meta["normalize"]:
        pooled = torch.nn.functional.normalize(pooled, dim=-1)
    return torch.softmax(head(pooled), dim=-1)
```
"""
    onnx_part = f"""
```python
import onnxruntime
from transformers import AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained(".")
session = onnxruntime.InferenceSession("{ONNX_FILE}", providers=["CPUExecutionProvider"])
enc = tokenizer(["some text"], padding=True, truncation=True, max_length={meta["max_length"]}, return_tensors="np")
probabilities = session.run(["probabilities"], {{i.name: enc[i.name] for i in session.get_inputs()}})[0]
```
"""
    return (
        f"# {meta['strategy']} classifier on {meta['backbone']}, exported by taskfit\n\n"
        f"Labels: {', '.join(meta['labels'])}. Pooling: {meta['pooling']}"
        + (" then L2 normalisation" if meta["normalize"] else "")
        + f"; inputs truncated to {meta['max_length']} tokens. For text pairs, call "
        "`tokenizer(texts, pairs, ...)`.\n"
        + ("" if form == "modules" else torch_part)
        + (onnx_part if onnx else "")
    )
