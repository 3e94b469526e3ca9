"""Word tags <-> sub-word tokens, through the fast tokenizer's character offsets.

Naive code pads a tag list to max_length beside the token ids, so tags drift off their words as soon as a word
becomes several pieces. Here every token is mapped to the words whose characters it covers (offset_mapping),
which works the same for WordPiece, for byte-level BPE (one Chinese character = several tokens, all with that
character's offsets) and for a token spanning two characters. The sentence is tokenised as the one string
the user wrote, not word by word (is_split_into_words would insert spaces for byte-level BPE).

A word's tag goes on its first token (``position="first"``, for encoders) or its last token (``"last"``, for
causal LMs: with byte-level BPE a Chinese character is 2-3 tokens, and its first token has not yet seen the
whole character; the last one has); the word's other tokens get -100 (ignored by the loss), or with
``label_all`` the inside form of the tag. When a token also starts a later word (a token over '１２'), that
later word has no token of its own: it reads its tag off the shared token, as a continuation. A sentence
longer than the model's window is cut into windows overlapping by ``stride`` tokens; each word is
predicted from the window where it has the most context on both sides.

Written by hand: transformers' word_ids() is per pre-tokenised word and has no notion of character-level
words inside one BPE token, nor of merging overlapping windows back into one sentence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

IGNORE = -100


@dataclass
class Window:
    input_ids: list[int]
    labels: list[int]  # tag id on each word's first token, IGNORE elsewhere (and on special tokens)
    first_of: dict[int, int]  # position in input_ids -> the word it is the first token of
    context: dict[int, int] = field(default_factory=dict)  # word -> tokens of context on its nearer side


@dataclass
class Encoded:
    windows: list[Window]
    n_words: int
    shared: list[int]  # words whose first token also starts an earlier word (no token of their own)
    word_token: list[int | None]  # word -> global index of its first token (None: the word has no token)


def special_frame(tokenizer) -> tuple[list[int], list[int]]:
    """The ids the tokenizer puts before and after one sequence ([CLS] .. [SEP]; a BOS or nothing for LMs)."""
    enc = tokenizer("a", return_special_tokens_mask=True)
    ids, mask = enc["input_ids"], enc["special_tokens_mask"]
    body = [i for i, m in enumerate(mask) if not m]
    if not body:
        return [], []
    return ids[: body[0]], ids[body[-1] + 1 :]


def encode_words(
    tokenizer,
    text: str,
    spans: list[tuple[int, int]] | tuple,
    tag_ids: list[int] | None,
    max_length: int,
    stride: int = 32,
    label_all: bool = False,
    inside_id: dict[int, int] | None = None,
    frame: tuple[list[int], list[int]] | None = None,
    position: str = "first",
) -> Encoded:
    """Token windows of ``text`` (words at character ``spans``) with labels from ``tag_ids`` (None: no labels).

    ``inside_id`` maps a tag id to its continuation's id (B-X -> I-X) for ``label_all``. ``position``: which of
    a word's tokens carries its label and its prediction, "first" or "last" (``first_of``/``word_token`` then
    name that token)."""
    if position not in ("first", "last"):
        raise ValueError(f"position must be 'first' or 'last', got {position!r}")
    prefix, suffix = frame if frame is not None else special_frame(tokenizer)
    room = max_length - len(prefix) - len(suffix)
    if room < 2:
        raise ValueError(f"max_length {max_length} leaves no room for tokens besides the special ones")
    stride = min(stride, room // 2)  # each window must move forward
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    word_of_char = [-1] * (len(text) + 1)
    for w, (s, e) in enumerate(spans):
        for c in range(s, e):
            word_of_char[c] = w
    word_token: list[int | None] = [None] * len(spans)
    token_words: list[list[int]] = [[] for _ in ids]  # words each token is the labelled token of
    continues: list[int | None] = [None] * len(ids)  # the word a token continues (label_all)
    touched_by = [
        list(dict.fromkeys(word_of_char[c] for c in range(s, e) if word_of_char[c] >= 0)) for s, e in offsets
    ]
    for t, touched in enumerate(touched_by):
        for w in touched:
            if word_token[w] is None or position == "last":
                word_token[w] = t
    for w, t in enumerate(word_token):
        if t is not None:
            token_words[t].append(w)  # in word order: the earliest word owns a shared token
    for t, touched in enumerate(touched_by):
        if touched and not token_words[t]:
            continues[t] = touched[0]
    shared = [w for t in range(len(ids)) for w in token_words[t][1:]]
    labels = [IGNORE] * len(ids)
    if tag_ids is not None:
        for t in range(len(ids)):
            if token_words[t]:
                labels[t] = tag_ids[token_words[t][0]]
            elif label_all and continues[t] is not None and inside_id is not None:
                tag = tag_ids[continues[t]]
                labels[t] = inside_id.get(tag, tag)
    windows = []
    starts = list(range(0, max(len(ids) - stride, 1), room - stride)) if len(ids) > room else [0]
    for a in starts:
        b = min(a + room, len(ids))
        first_of, context = {}, {}
        for t in range(a, b):
            for w in token_words[t][:1]:
                first_of[len(prefix) + t - a] = w
                left = t - a if a > 0 else 10**9  # the sentence's own start is no cut
                right = b - 1 - t if b < len(ids) else 10**9
                context[w] = min(left, right)
        windows.append(
            Window(
                input_ids=prefix + ids[a:b] + suffix,
                labels=[IGNORE] * len(prefix) + labels[a:b] + [IGNORE] * len(suffix),
                first_of=first_of,
                context=context,
            )
        )
        if b == len(ids):
            break
    return Encoded(windows, len(spans), shared, word_token)


def merge_predictions(encoded: Encoded, window_predictions: list[list[int]], outside: int = 0) -> list[int]:
    """Per-window predicted tag ids (one per input position) -> one tag id per word. A word read off a shared
    token gets ``outside`` unless the caller fixes it up (see ``continuation``)."""
    best: dict[int, tuple[int, int]] = {}  # word -> (context, tag)
    for window, predicted in zip(encoded.windows, window_predictions):
        for pos, w in window.first_of.items():
            ctx = window.context[w]
            if w not in best or ctx > best[w][0]:
                best[w] = (ctx, predicted[pos])
    tags = [best[w][1] if w in best else outside for w in range(encoded.n_words)]
    return tags


def continuation(tags: list[str], encoded: Encoded) -> list[str]:
    """Words sharing their first token with an earlier word continue that word's entity (or stay O)."""
    tags = list(tags)
    owner = {}
    for w, t in enumerate(encoded.word_token):
        if t is not None:
            owner.setdefault(t, w)
    for w in encoded.shared:
        head = owner[encoded.word_token[w]]  # type: ignore[index]
        kind = tags[head].partition("-")[2]
        tags[w] = f"I-{kind}" if kind else "O"
    return tags
