"""Causal-LM scoring of label words at a prompt's answer slot.

Written by hand because no library scores verbalizers this way with a shared KV-cached prefix:
OpenPrompt recomputes the prefix per example, and ``transformers`` pipelines have no such scorer.

For each prompt p and word w (tokens w1..wn):  log P(w | p) = sum_i log P(w_i | p, w_<i).
Single-token words cost nothing beyond one forward pass over p; a multi-token word adds one row
``p + w1..w(n-1)`` to the batch. A shared prefix (e.g. in-context demonstrations) is encoded once and
its KV cache is reused for every batch.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass
class WordScores:
    logprob_sum: torch.Tensor  # (N, W): summed log-probability of each word's tokens
    n_tokens: torch.Tensor  # (W,): tokens per word, for length normalisation


def _cache_kwarg(module: torch.nn.Module) -> str:
    # transformers renamed `past_key_values` to `cache` during 5.x; accept both.
    params = inspect.signature(module.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def _output_cache(output):
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


def _base_and_head(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The decoder stack (hidden states after its final norm) and the LM head.

    Running the head only on the positions we score avoids a (batch, length, vocab) logits tensor.
    """
    base = getattr(model, model.base_model_prefix)
    return base, model.get_output_embeddings()


def _head_logprobs(head: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """log_softmax of the LM head at these positions, in fp32 even under a bf16 autocast: label words a few
    hundredths of a nat apart must not be rounded together (the head is one small product per position)."""
    with torch.autocast(hidden.device.type, enabled=False):
        return torch.log_softmax(head(hidden.float()).float(), dim=-1).cpu()


def encode_prefix(model: torch.nn.Module, input_ids: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per-layer (keys, values) of a shared prefix, batch size 1."""
    base, _ = _base_and_head(model)
    ids = torch.tensor([input_ids], dtype=torch.long, device=model.device)
    out = base(input_ids=ids, use_cache=True)
    cache = _output_cache(out)
    return [(layer.keys, layer.values) for layer in cache.layers]


def _expanded_cache(model: torch.nn.Module, prefix_kv, batch: int):
    from transformers import DynamicCache

    # expand() makes views; the cache concatenates new keys onto them, so the prefix is never mutated.
    data = [(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in prefix_kv]
    return DynamicCache(data, config=model.config)


def split_at_prefix(tokenizer, prefix: str, prompts: list[str]) -> tuple[list[int], list[list[int]]]:
    """Token ids of ``prefix`` and of each prompt, such that prefix_ids + prompt_ids[i] equals the
    tokenization of ``prefix + prompts[i]``.

    Tokenizing the two parts separately is not the same: byte-level BPE splits "\n\nReview" as
    "\n" "\nReview"-style pieces differently from a lone "\n\n". Cached and uncached scoring must agree,
    so the prefix is cut out of the joint tokenization, at the last token boundary inside the prefix
    that every prompt's joint tokenization shares.
    """
    joint = [tokenizer(prefix + p)["input_ids"] for p in prompts]
    if not getattr(tokenizer, "is_fast", False):  # no offsets: tokenize the parts separately
        return tokenizer(prefix)["input_ids"], [
            tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts
        ]
    offsets = tokenizer(prefix + prompts[0], return_offsets_mapping=True)["offset_mapping"]
    n = sum(1 for start, end in offsets if end <= len(prefix) and not (start == end == len(prefix)))
    while n > 0 and any(ids[:n] != joint[0][:n] for ids in joint):
        n -= 1  # a prompt whose joint tokenization merges across an earlier boundary (rare)
    return joint[0][:n], [ids[n:] for ids in joint]


def score_words(
    model: torch.nn.Module,
    tokenizer,
    prompts: list[str],
    words: list[str],
    shared_prefix: str | None = None,
    reuse_prefix_cache: bool = True,
    batch_size: int = 16,
    on_batch: Callable[[int], None] | None = None,
    grad: bool = False,
) -> WordScores:
    """Log-probability of every word after every ``shared_prefix + prompt``.

    ``grad=True`` keeps the graph (prompt-based fine-tuning trains through these scores); the caller then
    sets the model's train/eval mode. Otherwise the model is put in eval mode and no graph is built.
    """
    if not grad:
        model.eval()
    with torch.set_grad_enabled(grad):
        return _score_words(
            model, tokenizer, prompts, words, shared_prefix, reuse_prefix_cache, batch_size, on_batch
        )


def _score_words(model, tokenizer, prompts, words, shared_prefix, reuse_prefix_cache, batch_size, on_batch):
    word_ids = [tokenizer(w, add_special_tokens=False)["input_ids"] for w in words]
    for w, ids in zip(words, word_ids):
        if not ids:
            raise ValueError(f"verbalizer word {w!r} tokenizes to nothing")
    prefix_kv = None
    prefix_len = 0
    if shared_prefix and reuse_prefix_cache:
        prefix_ids, prompt_ids = split_at_prefix(tokenizer, shared_prefix, prompts)
        prefix_kv = encode_prefix(model, prefix_ids)
        prefix_len = len(prefix_ids)
    else:
        texts = [(shared_prefix or "") + p for p in prompts]
        prompt_ids = [tokenizer(t)["input_ids"] for t in texts]

    # One row per prompt (gives every word's first token), plus one per (prompt, multi-token word).
    rows: list[tuple[int, int, list[int]]] = []  # (prompt index, word index or -1, token ids)
    for i, ids in enumerate(prompt_ids):
        rows.append((i, -1, ids))
        for j, wids in enumerate(word_ids):
            if len(wids) > 1:
                rows.append((i, j, ids + wids[:-1]))
    order = sorted(range(len(rows)), key=lambda r: len(rows[r][2]))  # similar lengths batch together

    base, head = _base_and_head(model)
    cache_key = _cache_kwarg(base)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    first_ids = torch.tensor([w[0] for w in word_ids])
    scores = torch.zeros(len(prompts), len(words))
    for start in range(0, len(order), batch_size):
        batch_rows = [rows[r] for r in order[start : start + batch_size]]
        width = max(len(r[2]) for r in batch_rows)
        ids = torch.full((len(batch_rows), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch_rows), prefix_len + width), dtype=torch.long)
        mask[:, :prefix_len] = 1
        for b, (_, _, toks) in enumerate(batch_rows):  # right padding: real tokens never see the pads
            ids[b, : len(toks)] = torch.tensor(toks)
            mask[b, prefix_len : prefix_len + len(toks)] = 1
        kwargs = {"input_ids": ids.to(model.device), "attention_mask": mask.to(model.device)}
        if prefix_kv is not None:
            kwargs[cache_key] = _expanded_cache(model, prefix_kv, len(batch_rows))
        hidden = base(**kwargs).last_hidden_state  # (B, T, H)
        firsts = [(b, i) for b, (i, j, _) in enumerate(batch_rows) if j < 0]
        if firsts:  # every word's first token, read at each prompt's last position, in one head call
            rows_b = torch.tensor([b for b, _ in firsts])
            last = torch.tensor([len(prompt_ids[i]) - 1 for _, i in firsts])
            logp = _head_logprobs(head, hidden[rows_b, last])  # (R, V)
            scores[[i for _, i in firsts]] += logp[:, first_ids]
        for b, (i, j, _) in enumerate(batch_rows):
            if j >= 0:
                plen, wids = len(prompt_ids[i]), word_ids[j]
                positions = torch.arange(plen, plen + len(wids) - 1)  # predict tokens 2..n
                logp = _head_logprobs(head, hidden[b, positions])  # (n-1, V)
                scores[i, j] += logp[torch.arange(len(wids) - 1), torch.tensor(wids[1:])].sum()
        if on_batch:
            on_batch(sum(j < 0 for _, j, _ in batch_rows))  # prompts done: the progress total is texts
    return WordScores(scores, torch.tensor([len(w) for w in word_ids], dtype=torch.float))


@torch.no_grad()
def next_token_logprobs(
    model: torch.nn.Module, tokenizer, prompts: list[str], batch_size: int = 16
) -> torch.Tensor:
    """(N, V) log-probabilities of the token that follows each prompt (for label-word search)."""
    model.eval()
    base, head = _base_and_head(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    out = []
    for start in range(0, len(prompts), batch_size):
        ids = [tokenizer(p)["input_ids"] for p in prompts[start : start + batch_size]]
        width = max(len(x) for x in ids)
        batch = torch.full((len(ids), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for b, x in enumerate(ids):  # right padding; read each row at its own last token
            batch[b, : len(x)] = torch.tensor(x)
            mask[b, : len(x)] = 1
        hidden = base(
            input_ids=batch.to(model.device), attention_mask=mask.to(model.device)
        ).last_hidden_state
        last = hidden[torch.arange(len(ids)), torch.tensor([len(x) - 1 for x in ids])]  # (B, H)
        out.append(_head_logprobs(head, last))
    return torch.cat(out)


def label_scores(
    word_scores: WordScores, word_labels: list[int], n_labels: int, normalise: bool = False
) -> torch.Tensor:
    """Combine word scores into label scores: log sum_w P(w) over each label's words.

    ``normalise`` divides each word's log-probability by its token count first (so long words are not
    penalised for their length).
    """
    s = word_scores.logprob_sum
    if normalise:
        s = s / word_scores.n_tokens
    out = torch.full((s.shape[0], n_labels), float("-inf"))
    for label in range(n_labels):
        cols = [w for w, lab in enumerate(word_labels) if lab == label]
        out[:, label] = torch.logsumexp(s[:, cols], dim=1)
    return out


def verbalizer_scores(
    model, tokenizer, prompts: list[str], verbalizer, n_labels: int, mean: bool = False, **kwargs
):
    """(N, C) label log-scores of a verbalizer at each prompt's answer slot: ``score_words`` over its words
    (``kwargs``: shared_prefix, batch_size, on_batch, grad, ...) combined per label by ``label_scores``."""
    ws = score_words(model, tokenizer, prompts, list(verbalizer.words), **kwargs)
    return label_scores(ws, list(verbalizer.word_labels), n_labels, mean)


def label_scorer(model, tokenizer, verbalizer, n_labels: int, config, **kwargs):
    """``score(prompts, on_batch=None) -> (N, C)`` with a prompting strategy's settings (its ``scoring`` and
    ``batch_size``); ``kwargs`` go to ``score_words`` (shared_prefix, reuse_prefix_cache)."""

    def score(prompts: list[str], on_batch=None):
        return verbalizer_scores(
            model,
            tokenizer,
            prompts,
            verbalizer,
            n_labels,
            config.scoring == "mean",
            batch_size=config.batch_size,
            on_batch=on_batch,
            **kwargs,
        )

    return score
