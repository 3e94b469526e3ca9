"""Data augmentation of the K-shot training sample (``augment:`` on a strategy): EDA word operations (Wei & Zou
2019), character operations that also suit Chinese, and paraphrases written by a chat LM.

Only the training examples a cell sampled are augmented, never dev or test, and every copy keeps its source's
label. The copies are deterministic per (seed, example) and are written to the cell folder (augmented.jsonl:
text, label, op, source). A copy equal to any original text, or to another copy of the same source, is dropped.

The word and character operations are written by hand: the EDA reference code is a script, not a library, and
nlpaug would bring its own downloads for the same four lines each. Synonyms come from WordNet through nltk; its
data is a separate download that no PyPI package ships, so without it the synonym operation is skipped with
one message and the others run.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import random
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from taskfit.config import CHAR_OPS, WORD_OPS, AugmentConfig, ParaphraseConfig
from taskfit.data.readers import Example
from taskfit.errors import TaskfitError

AUGMENTED_FILE = "augmented.jsonl"
PARAPHRASE_CACHE = "paraphrases.jsonl"
WORDNET_MISSING = (
    "augment: the 'synonym' operation needs nltk's WordNet data, which is not installed here (no PyPI package "
    "ships it). Install it with `python -m nltk.downloader wordnet` (needs the network), or copy an nltk_data "
    "folder holding corpora/wordnet to a path in NLTK_DATA. Running the other operations without it."
)


@functools.cache
def wordnet():
    """nltk's WordNet reader if its data is installed, else None (looked up once per process)."""
    try:
        from nltk.corpus import wordnet as wn

        wn.synsets("good")  # the lazy loader finds (or fails to find) the data here
    except (ImportError, LookupError, OSError):
        return None
    return wn


def usable_ops(config: AugmentConfig) -> tuple[list[str], list[str]]:
    """The operations that can run here, and notes on those that cannot (said once per process)."""
    ops, notes = list(config.ops), []
    if "synonym" in ops and wordnet() is None:
        ops.remove("synonym")
        notes.append(WORDNET_MISSING)
        if not ops:
            raise TaskfitError(
                WORDNET_MISSING.replace("Running the other operations without it.", "")
                + "Or add other operations to augment.ops, e.g. [swap, delete, insert]."
            )
    return ops, notes


# ---------------------------------------------------------------------------------------------------
# The operations: (text, rng, rate) -> new text (possibly unchanged; unchanged copies are dropped).


def _count(n: int, rate: float) -> int:
    return max(1, round(rate * n))


def swap_words(text: str, rng: random.Random, rate: float) -> str:
    words = text.split()
    if len(words) < 2:
        return text
    for _ in range(_count(len(words), rate)):
        i, j = rng.sample(range(len(words)), 2)
        words[i], words[j] = words[j], words[i]
    return " ".join(words)


def delete_words(text: str, rng: random.Random, rate: float) -> str:
    words = text.split()
    if len(words) < 2:
        return text
    drop = set(rng.sample(range(len(words)), min(_count(len(words), rate), len(words) - 1)))
    return " ".join(w for i, w in enumerate(words) if i not in drop)


def insert_words(text: str, rng: random.Random, rate: float) -> str:
    """Random insertion of words of the same text (EDA inserts synonyms; this needs no WordNet)."""
    words = text.split()
    if len(words) < 2:
        return text
    for _ in range(_count(len(words), rate)):
        words.insert(rng.randrange(len(words) + 1), rng.choice(words))
    return " ".join(words)


def replace_synonyms(text: str, rng: random.Random, rate: float) -> str:
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    wn = wordnet()
    words = text.split()
    candidates = [i for i, w in enumerate(words) if w.isalpha() and w.lower() not in ENGLISH_STOP_WORDS]
    rng.shuffle(candidates)
    replaced = 0
    for i in candidates:
        if replaced >= _count(len(words), rate):
            break
        word = words[i].lower()
        synonyms = sorted(
            {
                lemma.name().replace("_", " ")
                for synset in wn.synsets(word)
                for lemma in synset.lemmas()
                if lemma.name().lower() != word
            }
        )
        if synonyms:
            words[i] = rng.choice(synonyms)
            replaced += 1
    return " ".join(words)


def _char_positions(text: str) -> list[int]:
    return [i for i, c in enumerate(text) if not c.isspace()]


def swap_chars(text: str, rng: random.Random, rate: float) -> str:
    """Swap characters with their next non-space neighbour: a typo in English, a local reordering in Chinese."""
    chars, positions = list(text), _char_positions(text)
    if len(positions) < 2:
        return text
    for _ in range(_count(len(positions), rate)):
        k = rng.randrange(len(positions) - 1)
        i, j = positions[k], positions[k + 1]
        chars[i], chars[j] = chars[j], chars[i]
    return "".join(chars)


def delete_chars(text: str, rng: random.Random, rate: float) -> str:
    positions = _char_positions(text)
    if len(positions) < 2:
        return text
    drop = set(rng.sample(positions, min(_count(len(positions), rate), len(positions) - 1)))
    return "".join(c for i, c in enumerate(text) if i not in drop)


def insert_chars(text: str, rng: random.Random, rate: float) -> str:
    """Insert characters drawn from the same text (Chinese stays Chinese, no foreign alphabet appears)."""
    positions = _char_positions(text)
    if not positions:
        return text
    chars = list(text)
    for _ in range(_count(len(positions), rate)):
        chars.insert(rng.randrange(len(chars) + 1), text[rng.choice(positions)])
    return "".join(chars)


OPERATIONS: dict[str, Callable[[str, random.Random, float], str]] = {
    "swap": swap_words,
    "delete": delete_words,
    "insert": insert_words,
    "synonym": replace_synonyms,
    "char_swap": swap_chars,
    "char_delete": delete_chars,
    "char_insert": insert_chars,
}
assert {*WORD_OPS, *CHAR_OPS} == set(OPERATIONS)  # every configurable operation but paraphrase


# ---------------------------------------------------------------------------------------------------


def augment_examples(
    train: Sequence[Example],
    config: AugmentConfig,
    seed: int,
    paraphraser: Callable[[list[str], list[int]], list[str | None]] | None = None,
    say: Callable[[str], None] = lambda text: print(text, file=sys.stderr, flush=True),
) -> tuple[list[Example], list[dict]]:
    """The training examples followed by their augmented copies, and one record per copy kept.

    Copy c of example i draws its operation and edits from ``Random((seed, i, c))`` alone, so it does not
    depend on the other examples. ``paraphraser(texts, copy_indices)`` returns a paraphrase (or None when
    rejected) per request; it is only called when ``paraphrase`` is among the operations."""
    ops, notes = usable_ops(config)
    for note in notes:
        say(note)
    seed = config.seed if config.seed is not None else seed
    originals = {e.text for e in train}
    planned: list[tuple[int, int, str, str | None]] = []  # (source, copy, op, text or None = paraphrase)
    for i, example in enumerate(train):
        for c in range(config.per_example):
            rng = random.Random(f"{seed}:{i}:{c}")
            op = rng.choice(ops)
            text = None if op == "paraphrase" else OPERATIONS[op](example.text, rng, config.rate)
            planned.append((i, c, op, text))
    asked = [(i, c) for i, c, op, _ in planned if op == "paraphrase"]
    if asked:
        if paraphraser is None:
            raise TaskfitError("augment: 'paraphrase' needs a paraphrasing model and none was given")
        written = iter(paraphraser([train[i].text for i, _ in asked], [c for _, c in asked]))
        planned = [(i, c, op, next(written) if op == "paraphrase" else t) for i, c, op, t in planned]
    copies, records, seen = [], [], {i: set() for i in range(len(train))}
    for i, c, op, text in planned:
        text = (text or "").strip()
        if not text or text in originals or text in seen[i]:
            continue
        seen[i].add(text)
        copies.append(dataclasses.replace(train[i], text=text, source=f"augmented:{op}:{train[i].source}"))
        records.append(
            {
                "text": text,
                "label": train[i].label,
                "op": op,
                "source": i,
                "copy": c,
                "source_text": train[i].text,
            }
        )
    return [*train, *copies], records


# ---------------------------------------------------------------------------------------------------
# Paraphrasing with a chat LM (smollm2 by default), cached in the cell folder.


_ANSWER_LABEL = re.compile(
    r"^(?:here is |here's )?(?:the |a )?(?:rewrite|rewritten|rewording|reworded|paraphrased?)"
    r"(?: (?:text|version|sentence))?\s*:\s*",
    re.IGNORECASE,
)
_ABOUT_THE_TEXT = re.compile(
    r"\b(?:original text|rewritten (?:text|version)|reworded (?:text|version)|paraphrased (?:text|version))\b",
    re.IGNORECASE,
)


def clean_paraphrase(output: str, original: str, config: ParaphraseConfig) -> str | None:
    """The rewritten text, or None: empty, identical, far too long or short, talking about the text instead of
    rewriting it, or stuck repeating itself. (Seen from smollm2 on mr: "Rewrite: ...", "The original text is a
    reworded version of ...", one phrase over and over.)"""
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):  # "Here is the rewritten text:"
        lines = lines[1:]
    text = " ".join(lines).strip().strip('"“”').strip()
    text = _ANSWER_LABEL.sub("", text).strip().strip('"“”').strip()  # "Rewrite: ..." on one line
    if not text or text.casefold() == original.strip().casefold():
        return None
    if _ABOUT_THE_TEXT.search(text) and not _ABOUT_THE_TEXT.search(original):
        return None
    words = re.findall(r"\w+", text.casefold())
    if len(words) >= 8 and len(set(words)) < 0.4 * len(words):
        return None
    if not len(original) / config.max_length_ratio <= len(text) <= len(original) * config.max_length_ratio:
        return None
    return text


def llm_paraphraser(
    config: ParaphraseConfig, seed: int, backbones, cache_file: Path | None = None
) -> Callable[[list[str], list[int]], list[str | None]]:
    """A paraphraser for ``augment_examples`` that decodes with the shared batched ``generate`` and keeps its
    outputs (accepted or not) in ``cache_file``, keyed by text, copy and settings: a rerun of the cell loads
    nothing."""
    settings = hashlib.sha256(
        json.dumps([config.model_dump(mode="json"), seed], sort_keys=True).encode()
    ).hexdigest()[:12]

    def run(texts: list[str], copies: list[int]) -> list[str | None]:
        from taskfit.config import DecodingConfig
        from taskfit.io import write_jsonl_atomic
        from taskfit.models.generation import Renderer, generate
        from taskfit.prompts import Template

        if config.temperature == 0:  # greedy: every copy of a text would be the same paraphrase
            copies = [0] * len(copies)
        cached = _read_cache(cache_file, settings)
        todo = sorted({(t, c) for t, c in zip(texts, copies) if (t, c) not in cached})
        if todo:
            backbone = backbones.get(config.backbone, "causal-lm")
            tokenizer = backbone.tokenizer
            renderer = Renderer(tokenizer, Template.parse("{text}{answer}"), chat=True)
            prompts = [
                tokenizer.apply_chat_template(
                    [{"role": "user", "content": f"{config.instruction}\n\nText: {t}"}],
                    tokenize=False,
                    add_generation_prompt=True,
                )
                for t, _ in todo
            ]
            ids = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
            decoding = DecodingConfig(
                method="sample" if config.temperature > 0 else "greedy",
                temperature=config.temperature or 0.7,
                max_new_tokens=config.max_new_tokens,
                batch_size=config.batch_size,
            )
            details: list = []
            # one seeded sampling stream over a sorted request list: copies of a text differ, reruns agree
            outputs, _ = generate(
                backbone.model, tokenizer, ids, decoding, renderer.stop_token_ids(), seed, per_item=details
            )
            for (t, c), out, (_, finish) in zip(todo, outputs, details):
                cached[(t, c)] = {
                    "raw": out,
                    "paraphrase": clean_paraphrase(out, t, config) if finish == "stop" else None,
                }
            if cache_file is not None:
                rows = [
                    {"settings": settings, "text": t, "copy": c, **value} for (t, c), value in cached.items()
                ]
                write_jsonl_atomic(cache_file, rows)
        return [cached[(t, c)]["paraphrase"] for t, c in zip(texts, copies)]

    return run


def _read_cache(path: Path | None, settings: str) -> dict[tuple[str, int], dict]:
    if path is None or not path.exists():
        return {}
    cached = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a damaged cache only costs regeneration
            continue
        if row.get("settings") == settings:
            cached[(row["text"], row["copy"])] = {"raw": row.get("raw"), "paraphrase": row.get("paraphrase")}
    return cached
