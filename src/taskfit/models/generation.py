"""Causal-LM generation pieces every generation strategy shares: rendering an input (template or the
tokenizer's chat template), target-only loss, packing, perplexity and batched decoding.

Written by hand where transformers has no equivalent for a plain torch loop: prompt/target masking with
separately tokenised parts (so the boundary is exact), greedy packing with a block-diagonal attention mask,
and cutting outputs at stop strings (``generate`` stops there but keeps the string).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from taskfit.config import DecodingConfig
from taskfit.data.readers import Example
from taskfit.prompts import Template

IGNORE = -100  # label of a token that is not trained on (PyTorch's cross_entropy ignore_index)
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>")


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]  # IGNORE on the prompt; the target's ids (and its end marker) elsewhere

    def __len__(self) -> int:
        return len(self.input_ids)


class Renderer:
    """Turns an example (and optional demonstrations) into prompt text and target text.

    Chat mode: earlier turns, demonstrations as user/assistant turns, then the filled template as the user
    turn; the target is what the chat template puts after the generation prompt (reply + end-of-turn).
    Plain mode: demonstrations as filled templates joined by ``separator``, then the template up to its
    ``{answer}`` slot; the target is the answer, the template's tail and the end-of-sequence token.
    """

    def __init__(self, tokenizer, template: Template, chat: bool, separator: str = "\n\n") -> None:
        self.tokenizer, self.template, self.chat, self.separator = tokenizer, template, chat, separator

    @classmethod
    def build(cls, tokenizer, template: str, mode: str = "auto", separator: str = "\n\n") -> Renderer:
        has_chat = bool(getattr(tokenizer, "chat_template", None))
        if mode == "on" and not has_chat:
            from taskfit.errors import TaskfitError

            raise TaskfitError(
                "chat_template: on, but this backbone's tokenizer has no chat template; use auto or off"
            )
        return cls(tokenizer, Template.parse(template), has_chat and mode != "off", separator)

    def _user(self, example: Example) -> str:
        return self.template.prompt(example).rstrip()

    def messages(self, example: Example, demos: Sequence[Example] = ()) -> list[dict]:
        turns = [{"role": r, "content": c} for r, c in example.history]
        for d in demos:
            turns += [{"role": "user", "content": self._user(d)}, {"role": "assistant", "content": d.target}]
        return turns + [{"role": "user", "content": self._user(example)}]

    def prompt_text(self, example: Example, demos: Sequence[Example] = ()) -> str:
        if self.chat:
            return self.tokenizer.apply_chat_template(
                self.messages(example, demos), tokenize=False, add_generation_prompt=True
            )
        history = "".join(f"{role}: {content}\n" for role, content in example.history)
        shown = [self.template.with_answer(d, d.target or "") for d in demos]
        return self.separator.join([*shown, history + self.template.prompt(example)])

    def target_text(self, example: Example, demos: Sequence[Example] = ()) -> str:
        target = example.target or ""
        if self.chat:
            prompt = self.prompt_text(example, demos)
            full = self.tokenizer.apply_chat_template(
                [*self.messages(example, demos), {"role": "assistant", "content": target}], tokenize=False
            )
            if full.startswith(prompt):
                return full[len(prompt) :]
            return target + (self.tokenizer.eos_token or "")
        tail = self.template.with_answer(example, target)[len(self.template.prompt(example)) :]
        return tail

    def prompt_ids(
        self, example: Example, demos: Sequence[Example] = (), max_length: int = 10**9
    ) -> list[int]:
        ids = self.tokenizer(self.prompt_text(example, demos), add_special_tokens=not self.chat)["input_ids"]
        return keep_end(ids, max_length, self.tokenizer.bos_token_id)

    def encode(self, example: Example, demos: Sequence[Example] = (), max_length: int = 256) -> Encoded:
        """Prompt and target tokenised separately and concatenated, so the mask boundary is exact."""
        target = self.tokenizer(self.target_text(example, demos), add_special_tokens=False)["input_ids"]
        if not self.chat and self.tokenizer.eos_token_id is not None:
            target = target + [self.tokenizer.eos_token_id]
        prompt = self.prompt_ids(example, demos)  # tokenised once, cut below
        # the target keeps all the room the prompt leaves, and at least half when both are long
        target = target[: max(max_length // 2, max_length - len(prompt), 1)]
        prompt = keep_end(prompt, max(1, max_length - len(target)), self.tokenizer.bos_token_id)
        labels = [IGNORE] * len(prompt) + target
        labels[0] = IGNORE  # the first token is never predicted (matters when examples are packed)
        return Encoded(prompt + target, labels)

    def stop_token_ids(self) -> list[int]:
        """End-of-sequence and end-of-turn ids: generation stops at any of them."""
        ids = {self.tokenizer.eos_token_id}
        vocab = self.tokenizer.get_vocab()
        ids |= {vocab[t] for t in END_OF_TURN if t in vocab}
        return sorted(i for i in ids if i is not None)


def keep_end(ids: list[int], max_length: int, bos_id: int | None) -> list[int]:
    """The last ``max_length`` ids: a too-long prompt loses its start, never the input at its end; a leading
    start-of-sequence token is kept (models expect it)."""
    if len(ids) <= max_length:
        return ids
    if bos_id is not None and ids and ids[0] == bos_id and max_length > 1:
        return [bos_id] + ids[len(ids) - max_length + 1 :]
    return ids[len(ids) - max_length :]


def padded_batch(items: Sequence[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded (B, T) input_ids / attention_mask / labels."""
    width = max(len(e) for e in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    for row, e in enumerate(items):
        ids[row, : len(e)] = torch.tensor(e.input_ids)
        labels[row, : len(e)] = torch.tensor(e.labels)
        mask[row, : len(e)] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def pack(items: Sequence[Encoded], max_length: int) -> list[list[Encoded]]:
    """Greedy first-fit packing into rows of at most ``max_length`` tokens (longest first)."""
    rows: list[list[Encoded]] = []
    room: list[int] = []
    for e in sorted(items, key=len, reverse=True):
        for i, free in enumerate(room):
            if len(e) <= free:
                rows[i].append(e)
                room[i] -= len(e)
                break
        else:
            rows.append([e])
            room.append(max_length - len(e))
    return rows


def packed_batch(
    rows: Sequence[Sequence[Encoded]], pad_id: int, dtype=torch.float32
) -> dict[str, torch.Tensor]:
    """Several examples per row; a block-diagonal causal mask (B, 1, T, T) and positions restarting at 0
    for each example, so no token attends across an example boundary."""
    width = max(sum(len(e) for e in row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    segment = torch.full((len(rows), width), -1, dtype=torch.long)  # -1: padding
    for r, row in enumerate(rows):
        start = 0
        for s, e in enumerate(row):
            end = start + len(e)
            ids[r, start:end] = torch.tensor(e.input_ids)
            labels[r, start:end] = torch.tensor(e.labels)
            positions[r, start:end] = torch.arange(len(e))
            segment[r, start:end] = s
            start = end
    causal = torch.tril(torch.ones(width, width, dtype=torch.bool))
    allowed = (segment[:, :, None] == segment[:, None, :]) & causal & (segment[:, :, None] >= 0)
    allowed |= torch.eye(width, dtype=torch.bool)  # padding rows attend to themselves: no all-masked softmax
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
    return {"input_ids": ids, "attention_mask": mask[:, None], "position_ids": positions, "labels": labels}


def target_nll(model, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Summed next-token negative log-likelihood over the target tokens, and their count.

    Computed here rather than by the model's own ``labels=`` loss, which averages per batch: perplexity
    needs the sum, and a soft prompt (peft prompt tuning) prepends positions the labels do not have."""
    labels = batch["labels"]
    inputs = {k: v.to(model.device) for k, v in batch.items() if k != "labels"}
    logits = model(**inputs).logits[:, -labels.shape[1] :]  # (B, T, V): drop virtual-token positions
    shifted = logits[:, :-1].float().reshape(-1, logits.shape[-1])
    targets = labels[:, 1:].reshape(-1).to(logits.device)
    nll = torch.nn.functional.cross_entropy(shifted, targets, ignore_index=IGNORE, reduction="sum")
    return nll, int((targets != IGNORE).sum())


@torch.no_grad()
def perplexity(
    model,
    encoded: Sequence[Encoded],
    pad_id: int,
    batch_size: int = 8,
    advance: Callable[[int], None] = lambda n: None,
) -> dict[str, float]:
    """exp(mean NLL per target token) over ``encoded``; also the mean loss and token count."""
    total, count = 0.0, 0
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))  # similar lengths: less padding
    for start in range(0, len(order), batch_size):
        chunk = [encoded[i] for i in order[start : start + batch_size]]
        nll, n = target_nll(model, padded_batch(chunk, pad_id))
        total, count = total + float(nll), count + n
        advance(len(chunk))
    loss = total / max(count, 1)
    return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "target_tokens": count}


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=len(text))
    return text[:cut]


def uses_soft_prompt(model) -> bool:
    """peft prompt learning (a soft prompt before the input)."""
    config = getattr(model, "active_peft_config", None)
    return bool(getattr(config, "is_prompt_learning", False))


def generation_kwargs(decoding: DecodingConfig, stop_ids: list[int], pad_id: int, model=None) -> dict:
    """``generate`` arguments for ``decoding``. With a peft soft prompt the KV cache is off: with transformers
    5.24 + peft 0.21, cached decoding after the virtual tokens produces garbage (greedy text diverges from a
    step-by-step argmax after one token; checked on smollm2), so each step re-reads the whole sequence."""
    kwargs: dict = {
        "max_new_tokens": decoding.max_new_tokens,
        "eos_token_id": stop_ids,
        "pad_token_id": pad_id,
        "repetition_penalty": decoding.repetition_penalty,
        "do_sample": decoding.method == "sample",
        "num_beams": decoding.num_beams if decoding.method == "beam" else 1,
    }
    if decoding.method == "sample":
        kwargs.update(temperature=decoding.temperature, top_p=decoding.top_p, top_k=0)
    else:  # some checkpoints ship sampling defaults that would warn under greedy/beam decoding
        kwargs.update(temperature=None, top_p=None, top_k=None)
    if model is not None and uses_soft_prompt(model):
        kwargs["use_cache"] = False
    return kwargs


@torch.no_grad()
def generate(
    model,
    tokenizer,
    prompts: Sequence[list[int]],
    decoding: DecodingConfig,
    stop_ids: list[int],
    seed: int = 0,
    advance: Callable[[int], None] = lambda n: None,
    per_item: list | None = None,
) -> tuple[list[str], int]:
    """Decode every prompt (token ids); returns the texts in input order and the number of new tokens.

    Prompts are sorted by length and left-padded in batches of ``decoding.batch_size``. ``per_item``, when
    given, is filled with (new tokens, finish reason: "stop" or "length") per prompt, in input order."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stop_ids[0]
    kwargs = generation_kwargs(decoding, stop_ids, pad_id, model)
    if decoding.stop:
        kwargs.update(stop_strings=list(decoding.stop), tokenizer=tokenizer)
    torch.manual_seed(seed)  # sampling
    outputs: list[str] = [""] * len(prompts)
    details: list[tuple[int, str]] = [(0, "length")] * len(prompts)
    new_tokens = 0
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    if uses_soft_prompt(model):  # peft drops position ids, so left padding would shift positions: no padding
        by_length: dict[int, list[int]] = {}
        for i in order:
            by_length.setdefault(len(prompts[i]), []).append(i)
        groups = [
            g[j : j + decoding.batch_size]
            for g in by_length.values()
            for j in range(0, len(g), decoding.batch_size)
        ]
    else:
        groups = [order[j : j + decoding.batch_size] for j in range(0, len(order), decoding.batch_size)]
    device = model.device
    for idx in groups:
        width = max(len(prompts[i]) for i in idx)
        ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for row, i in enumerate(idx):  # left padding: every prompt ends where generation starts
            ids[row, width - len(prompts[i]) :] = torch.tensor(prompts[i])
            mask[row, width - len(prompts[i]) :] = 1
        with warnings.catch_warnings():  # peft's soft prompt ignores the position ids generate passes: fine
            warnings.filterwarnings("ignore", message="Position ids are not supported")
            out = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device), **kwargs)
        for row, i in enumerate(idx):
            generated = out[row, width:].tolist()
            ended = [k for k, t in enumerate(generated) if t in stop_ids]
            generated = generated[: ended[0]] if ended else generated
            while generated and generated[-1] == pad_id:  # a row that stopped early waits in padding
                generated.pop()
            count = len(generated) + (1 if ended else 0)
            new_tokens += count
            text = tokenizer.decode(generated, skip_special_tokens=True)
            outputs[i] = cut_at_stop(text, decoding.stop).strip()
            stopped = ended or len(outputs[i]) < len(text.strip())
            details[i] = (count, "stop" if stopped else "length")
        advance(len(idx))
    if per_item is not None:
        per_item[:] = details
    return outputs, new_tokens
