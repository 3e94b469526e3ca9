"""Fitting a causal-LM prompt into a token budget (``max_length``).

A prompt is fixed text (the template around each text, the demonstrations' answers, the separators, the
answer slot such as "\\nSentiment:") plus the texts filled into it. When it is longer than the budget, texts
are cut, never the fixed text:

1. the demonstrations' texts first, longest first: every demonstration text is capped at one common length,
   the largest that fits (water-filling). Short demonstrations stay whole, long ones keep their beginning and
   lose equally, so no single demonstration vanishes while another keeps 300 words, and the ones that fitted
   are exactly what the LM saw before;
2. only when the demonstrations are down to no text at all, the input's texts (again longest first).

A cut keeps the first tokens of a text and adds nothing: an ellipsis marker would cost tokens and is itself a
string the LM could imitate; the template's own text after the input already closes it.

When the whole prompt fits, it is returned untouched (the same string as without a budget), so results only
change for prompts longer than ``max_length``.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field

from taskfit.data.readers import Example
from taskfit.errors import TaskfitError

# the largest budget a causal-LM prompting strategy uses by default (the backbone's context when smaller)
DEFAULT_CAUSAL_MAX_LENGTH = 1024
DEFAULT_ENCODER_MAX_LENGTH = 256  # what encoder zero-shot always embedded at


def fit_lengths(lengths: list[int], room: int) -> list[int]:
    """Caps (one per text) such that sum(min(length, cap)) <= room, cutting the longest texts first: every
    text is capped at the largest common length that fits. Pure: token counts in, token counts out."""
    if sum(lengths) <= room:
        return list(lengths)
    if room <= 0:
        return [0] * len(lengths)
    remaining, left = room, len(lengths)
    for length in sorted(lengths):  # shortest first: a text under the common cap keeps all its tokens
        if length > remaining // left:
            break
        remaining, left = remaining - length, left - 1
    cap = remaining // left  # the `left` longest texts share what remains
    extra = remaining - cap * left  # fewer than `left` tokens: one more for the first capped texts
    caps = []
    for n in lengths:
        if n > cap:
            caps.append(cap + (1 if extra > 0 else 0))
            extra -= 1
        else:
            caps.append(n)
    return caps


@dataclass(frozen=True)
class Filled:
    """A filled template as fixed pieces around its cuttable texts: ``fixed[0] texts[0] fixed[1] ...
    texts[-1] fixed[-1]`` (``len(fixed) == len(texts) + 1``)."""

    fixed: tuple[str, ...]
    texts: tuple[str, ...]

    def render(self, texts: tuple[str, ...] | None = None) -> str:
        texts = self.texts if texts is None else texts
        return "".join(f + t for f, t in zip(self.fixed, (*texts, "")))


def fill(fmt: str, example: Example) -> Filled:
    """``fmt`` (a template part: ``{text}``/``{text_pair}`` fields, ``{{``/``}}`` escapes) filled with
    ``example`` as a ``Filled``; the same string as ``Template`` renders, in pieces."""
    fixed, texts, literal = [], [], ""
    for text, name, _, _ in string.Formatter().parse(fmt):
        literal += text
        if name is None:
            continue
        if name == "text_pair" and example.text_pair is None:
            raise TaskfitError(
                f"{example.source}: the template uses {{text_pair}} but this example has none "
                "(set data.columns.text_pair)"
            )
        fixed.append(literal)
        texts.append(example.text if name == "text" else example.text_pair)
        literal = ""
    fixed.append(literal)
    return Filled(tuple(fixed), tuple(texts))


def join(parts: list[Filled]) -> Filled:
    """Several filled parts one after the other, as one."""
    fixed, texts = [""], []
    for part in parts:
        fixed[-1] += part.fixed[0]
        fixed.extend(part.fixed[1:])
        texts.extend(part.texts)
    return Filled(tuple(fixed), tuple(texts))


def demonstrations(template, verbalizer, demos: list[Example], separator: str = "\n\n") -> Filled:
    """What ``render_demonstrations`` renders, in pieces: each demonstration's texts can be cut, its answer
    word and the template around it cannot."""
    parts = []
    for d in demos:
        answer = Filled((verbalizer.first_word(d.label),), ())
        parts += [fill(template.before_answer, d), answer, fill(template.after_answer, d)]
        parts.append(Filled((separator,), ()))
    return join(parts)


def query(template, example: Example) -> Filled:
    """The input's template up to the answer slot (``Template.prompt``), in pieces."""
    return fill(template.before_answer, example)


NO_DEMONSTRATIONS = Filled(("",), ())


@dataclass(frozen=True)
class Fitted:
    prefix: str  # the demonstrations, rendered (shared prefix of the prompt)
    prompt: str  # the input's filled template up to the answer slot
    cut: int  # texts shortened (demonstration texts and input texts)
    inputs_cut: int  # of which the input's own texts
    demos_cut: tuple[int, ...] = ()  # which demonstration texts (indices into ``Filled.texts``) were cut


class TokenBudget:
    """Fits prompts into ``max_length`` tokens of ``tokenizer`` (``reserve``: tokens kept free after the
    prompt, e.g. a multi-token label word's first tokens, which are fed with it)."""

    def __init__(self, tokenizer, max_length: int, reserve: int = 0) -> None:
        self.tokenizer, self.max_length, self.reserve = tokenizer, max_length, reserve
        # text -> (token ids, each token's end offset): a shared demonstration is tokenized once, not per query
        self._tokens: dict[str, tuple[list[int], list[int] | None]] = {}
        self.special = len(tokenizer("")["input_ids"])  # e.g. a BOS token the tokenizer adds

    def _tokenize(self, text: str) -> tuple[list[int], list[int] | None]:
        if text not in self._tokens:
            if getattr(self.tokenizer, "is_fast", False):
                enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
                self._tokens[text] = (enc["input_ids"], [end for _, end in enc["offset_mapping"]])
            else:
                self._tokens[text] = (self.tokenizer(text, add_special_tokens=False)["input_ids"], None)
        return self._tokens[text]

    def count(self, text: str) -> int:
        return len(self._tokenize(text)[0])

    def total(self, text: str) -> int:
        """Tokens the LM reads for ``text`` (joint tokenization, special tokens included)."""
        return len(self.tokenizer(text)["input_ids"])

    def head(self, text: str, n: int) -> str:
        """The first ``n`` tokens of ``text``, as text (cut at a token boundary, nothing added)."""
        ids, ends = self._tokenize(text)
        if n >= len(ids):
            return text
        if n <= 0:
            return ""
        if ends is not None:
            return text[: ends[n - 1]]
        # a slow tokenizer has no offsets: decode, dropping a character split across the cut
        return self.tokenizer.decode(ids[:n]).rstrip("\ufffd")

    def fit(self, demos: Filled, query: Filled) -> Fitted:
        """``demos`` (the rendered demonstrations, separators included) and ``query`` (the input's template
        up to the answer slot) cut to the budget: demonstration texts first, then the input's."""
        prefix, prompt = demos.render(), query.render()
        limit = self.max_length - self.reserve
        if self.total(prefix + prompt) <= limit:
            return Fitted(prefix, prompt, 0, 0)
        fixed = self.special + sum(self.count(f) for f in (*demos.fixed, *query.fixed))
        if fixed > limit:
            raise TaskfitError(
                f"max_length {self.max_length} is too small for this prompt: its template, the demonstrations' "
                f"answers and the answer slot alone take {fixed + self.reserve} tokens (with every text cut "
                f"to nothing). Set max_length to at least {fixed + self.reserve + 1}, or use fewer "
                "demonstrations or a shorter template"
            )
        demo_lengths = [self.count(t) for t in demos.texts]
        query_lengths = [self.count(t) for t in query.texts]
        # The parts' token counts are an estimate of the joined prompt's (a space before a text is its own
        # token alone but merges with the text's first word when joined): shrink the room while the joined
        # prompt is over the budget, give it back while it is under, and keep the largest fit.
        room, best = limit - fixed, None
        for _ in range(8):
            demo_caps = fit_lengths(demo_lengths, room - sum(query_lengths))
            query_caps = fit_lengths(query_lengths, room - sum(demo_caps))
            demo_texts = tuple(self.head(t, c) for t, c in zip(demos.texts, demo_caps))
            query_texts = tuple(self.head(t, c) for t, c in zip(query.texts, query_caps))
            prefix, prompt = demos.render(demo_texts), query.render(query_texts)
            over = self.total(prefix + prompt) - limit
            if over <= 0:
                best = (demo_caps, query_caps, prefix, prompt)
            if over == 0 or (over < 0 and query_caps == query_lengths and demo_caps == demo_lengths):
                break
            if over > 0 and best is not None:
                break  # giving room back overshot: the last fit is the largest
            room -= over
        if best is None:
            raise TaskfitError(
                f"max_length {self.max_length}: could not fit the prompt (the tokenizer splits the joined "
                "text differently from its pieces); raise max_length by a few tokens"
            )
        demo_caps, query_caps, prefix, prompt = best
        inputs_cut = sum(c < n for c, n in zip(query_caps, query_lengths))
        demos_cut = tuple(i for i, (c, n) in enumerate(zip(demo_caps, demo_lengths)) if c < n)
        return Fitted(prefix, prompt, inputs_cut + len(demos_cut), inputs_cut, demos_cut)


@dataclass
class Tally:
    """What one predict call cut: inputs (by position) and demonstration texts (each counted once, however
    many prompts it was cut in)."""

    max_length: int
    prompts_cut: int = 0
    seen: set[int] = field(default_factory=set)  # inputs (an order ensemble fits each once per order)
    inputs: set[int] = field(default_factory=set)
    demos: set[str] = field(default_factory=set)

    def add(self, index: int, fitted: Fitted, demos: Filled = NO_DEMONSTRATIONS) -> None:
        self.seen.add(index)
        self.prompts_cut += fitted.cut > 0
        if fitted.inputs_cut:
            self.inputs.add(index)
        self.demos.update(demos.texts[i] for i in fitted.demos_cut)

    def summary(self) -> dict:
        return {
            "max_length": self.max_length,
            "texts_truncated": len(self.inputs) + len(self.demos),
            "inputs_truncated": len(self.inputs),
            "demonstrations_truncated": len(self.demos),
            "prompts_truncated": self.prompts_cut,
            "inputs": len(self.seen),
        }


def trained_context(model) -> int | None:
    """The number of positions the backbone was trained on, when its config says."""
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "n_ctx", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def causal_max_length(config_value: int | None, model) -> int:
    """A causal-LM prompting strategy's budget: its ``max_length``, else DEFAULT_CAUSAL_MAX_LENGTH or the
    backbone's trained context if smaller."""
    if config_value is not None:
        return config_value
    context = trained_context(model)
    return min(DEFAULT_CAUSAL_MAX_LENGTH, context) if context else DEFAULT_CAUSAL_MAX_LENGTH


def count_over(tokenizer, texts: list[str], max_length: int) -> int:
    """How many of ``texts`` are longer than ``max_length`` tokens (special tokens included): those an
    encoder truncates."""
    # tokenizing one token past the limit is enough to tell, and never warns about over-long inputs
    return sum(
        len(tokenizer(t, truncation=True, max_length=max_length + 1)["input_ids"]) > max_length for t in texts
    )


def prompt_budget(model, tokenizer, max_length: int | None, verbalizer=None) -> TokenBudget:
    """The budget of a causal-LM prompting strategy: ``max_length`` (or its default) less the longest label
    word's tokens but its last, which ``score_words`` feeds after the prompt."""
    words = verbalizer.words if verbalizer is not None else ()
    reserve = max((len(tokenizer(w, add_special_tokens=False)["input_ids"]) - 1 for w in words), default=0)
    return TokenBudget(tokenizer, causal_max_length(max_length, model), max(reserve, 0))
