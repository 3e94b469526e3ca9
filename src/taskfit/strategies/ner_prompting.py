"""Generative NER (task: ner): a causal LM is asked for the entities, zero-shot or after K demonstrations.

The answer format is one ``TYPE: text`` line per entity, or ``none``. Each entity text is looked up in the
sentence left to right without overlap (the same string twice means two mentions), which gives character
offsets, then word tags, so the scores are the same seqeval figures as for the taggers. What the model writes
that cannot be read (a line without a known type, a text not in the sentence) is counted in the metrics,
never fatal. Decoding is the generation task's (greedy, a max_new_tokens bound, stop strings).
"""

from __future__ import annotations

import random
import re
from pathlib import Path

from taskfit.config import DecodingConfig, NerInContextConfig, NerPromptingConfig
from taskfit.data.ner import Entity, NerExample, tag_spans
from taskfit.data.readers import Example
from taskfit.errors import TaskfitError
from taskfit.models.backbones import detect_kind
from taskfit.models.generation import Renderer, generate
from taskfit.strategies.base import (
    Context,
    count_parameters,
    read_demonstrations,
    save_demonstrations,
    write_strategy_file,
)
from taskfit.strategies.ner import NerPredictions, as_sentence

TEMPLATE = "{text}\nEntities:\n{answer}"
NONE = "none"
_LINE = re.compile(r"^\s*(?:[-*•]\s*)?([^:：]{1,30}?)\s*[:：]\s*(.+?)\s*$")


def answer_text(example: NerExample, names: dict[str, str]) -> str:
    """The answer a demonstration shows: its gold entities as lines, in order."""
    lines = [
        f"{names.get(kind, kind)}: {example.text[example.spans[a][0] : example.spans[b][1]]}"
        for kind, a, b in tag_spans(example.tags)
    ]
    return "\n".join(lines) or NONE


def parse_answer(answer: str, text: str, types: dict[str, str]) -> tuple[list[Entity], dict[str, int]]:
    """'TYPE: text' lines -> entities with offsets into ``text``; ``types`` maps lower-cased names to types.

    Returns the entities and counts: lines, unparseable (no known type), not_found (text not in the
    sentence, or all its occurrences taken)."""
    counts = {"lines": 0, "unparseable": 0, "not_found": 0}
    entities: list[Entity] = []
    taken: list[tuple[int, int]] = []
    cursor = 0
    for raw in answer.splitlines():
        line = raw.strip()
        if not line or line.lower().rstrip(".") == NONE:
            continue
        counts["lines"] += 1
        match = _LINE.match(line)
        kind = types.get(match.group(1).strip().lower()) if match else None
        if kind is None:
            counts["unparseable"] += 1
            continue
        mention = match.group(2).strip().strip("\"'“”「」")  # type: ignore[union-attr]
        span = _find(text, mention, cursor, taken)
        if span is None:
            counts["not_found"] += 1
            continue
        taken.append(span)
        cursor = span[1]
        entities.append(Entity(kind, span[0], span[1], text[span[0] : span[1]]))
    return sorted(entities, key=lambda e: e.start), counts


def _find(text: str, mention: str, cursor: int, taken: list[tuple[int, int]]) -> tuple[int, int] | None:
    """The first free occurrence at or after ``cursor``, else the first free one before it."""
    if not mention:
        return None
    for start_from in (cursor, 0):
        start = text.find(mention, start_from)
        while start >= 0:
            end = start + len(mention)
            if all(end <= a or start >= b for a, b in taken):
                return start, end
            start = text.find(mention, start + 1)
    return None


def entities_to_tags(sentence: NerExample, entities: list[Entity]) -> list[str]:
    """Character spans -> BIO word tags: the words inside the span (or, if none is, those it overlaps)."""
    tags = ["O"] * len(sentence.spans)
    for ent in entities:
        inside = [i for i, (a, b) in enumerate(sentence.spans) if a >= ent.start and b <= ent.end]
        inside = inside or [i for i, (a, b) in enumerate(sentence.spans) if a < ent.end and b > ent.start]
        inside = [i for i in inside if tags[i] == "O"]
        for j, i in enumerate(inside):
            tags[i] = f"{'B' if j == 0 else 'I'}-{ent.type}"
    return tags


class NerPrompting:
    """zero-shot (instruction only) and in-context (``demos`` tagged training sentences before each input)."""

    scheme = "bio"

    def __init__(self, config: NerPromptingConfig, ctx: Context, demos=()) -> None:
        if detect_kind(config.backbone, ctx.backbones.trust_remote_code) != "causal-lm":
            raise TaskfitError(
                f"{config.run_id}: generative NER needs a causal LM backbone (e.g. smollm2); "
                f"'{config.backbone}' is an encoder (use head-finetune or lora for it)"
            )
        self.config, self.ctx, self.log = config, ctx, []
        backbone = ctx.backbones.get(config.backbone, "causal-lm")
        self.lm, self.tokenizer = backbone.model, backbone.tokenizer
        self.renderer = Renderer.build(self.tokenizer, TEMPLATE, config.chat_template)
        self.pool: list[NerExample] = list(demos)
        self.names = {t: config.type_names.get(t, t) for t in ctx.labels}
        self.types = {**{t.lower(): t for t in ctx.labels}, **{n.lower(): t for t, n in self.names.items()}}
        self.counts = {"answers": 0, "unparseable_answers": 0, "lines": 0, "unparseable": 0, "not_found": 0}

    def instruction(self) -> str:
        if self.config.instruction:
            return self.config.instruction
        kinds = ", ".join(self.names[t] for t in self.ctx.labels)
        return (
            f"List the named entities in the sentence, one per line as TYPE: text, where TYPE is one of "
            f"{kinds}. Copy each entity's text exactly as it appears. Answer {NONE} if there are none."
        )

    def _as_prompt(self, sentence: NerExample, target: str | None = None, query: bool = False) -> Example:
        """The instruction comes once, as a system turn before the demonstrations (chat templates) or as
        the first line (plain): repeating it in every demonstration would triple a prompt's length."""
        history = (("system", self.instruction()),) if query else ()
        return Example(text=f"Sentence: {sentence.text}", target=target, history=history)

    def demos_for(self, sentence: NerExample) -> list[Example]:
        c = self.config
        if not isinstance(c, NerInContextConfig) or not self.pool:
            return []
        candidates = [d for d in self.pool if d.text != sentence.text]
        if c.selection == "first":
            chosen = candidates[: c.demos]
        else:
            chosen = random.Random(f"{self.ctx.seed}/{sentence.text}").sample(
                candidates, min(c.demos, len(candidates))
            )
        return [self._as_prompt(d, answer_text(d, self.names)) for d in chosen]

    def fit(self, train: list, dev: list) -> None:
        if isinstance(self.config, NerInContextConfig):
            if not train:
                raise TaskfitError(
                    f"{self.config.run_id}: in-context needs tagged training sentences to show"
                )
            self.pool = list(train)

    def predict(self, examples: list) -> NerPredictions:
        c = self.config
        sentences = [as_sentence(e) for e in examples]
        prompts = [
            self.renderer.prompt_ids(self._as_prompt(s, query=True), self.demos_for(s), c.max_length)
            for s in sentences
        ]
        decoding = DecodingConfig(
            method="greedy", max_new_tokens=c.max_new_tokens, stop=["\n\n"], batch_size=c.batch_size
        )
        texts, _ = generate(
            self.lm,
            self.tokenizer,
            prompts,
            decoding,
            self.renderer.stop_token_ids(),
            self.ctx.seed,
            self.ctx.advance(f"{c.run_id} generate", len(prompts)),
        )
        out = NerPredictions()
        for s, answer in zip(sentences, texts):
            entities, counts = parse_answer(answer, s.text, self.types)
            self.counts["answers"] += 1
            for k, v in counts.items():
                self.counts[k] += v
            if counts["lines"] and counts["unparseable"] == counts["lines"]:
                self.counts["unparseable_answers"] += 1
            out.append({"tags": entities_to_tags(s, entities), "entities": entities, "answer": answer})
        return out

    def trainable_parameters(self) -> tuple[int, int]:
        return 0, count_parameters(self.lm)[1]

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        save_demonstrations(directory, self.pool)
        write_strategy_file(directory, self.config, self.ctx, {"task": "ner"})

    @classmethod
    def load(cls, directory: Path, config, ctx: Context, saved: dict) -> NerPrompting:
        def sentence(d: dict) -> NerExample:
            return NerExample(
                **{
                    **d,
                    "history": (),
                    "tokens": tuple(d["tokens"]),
                    "spans": tuple(map(tuple, d["spans"])),
                    "tags": tuple(d["tags"]),
                }
            )

        pool = read_demonstrations(directory, sentence)
        return cls(config, ctx, pool)


class NerFewShot(NerPrompting):
    """in-context: zero-shot plus tagged training sentences as demonstrations."""
