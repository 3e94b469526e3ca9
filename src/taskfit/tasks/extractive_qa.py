"""task: extractive-qa. Question + context -> the answer span of the context, scored with SQuAD EM and F1.

The model is an encoder with a start/end linear head, as ``AutoModelForQuestionAnswering``. A context longer
than ``max_length`` is split into windows that overlap by ``doc_stride`` tokens (the tokenizer's
``return_overflowing_tokens`` and ``offset_mapping``); the answer is the best-scoring span over all windows
(``n_best`` start and end candidates per window, at most ``max_answer_length`` tokens), returned as character
offsets into the original context. This is the recipe of transformers' ``run_qa.py`` / the QA pipeline.

The model and the strategies (head-finetune, lora) are in ``taskfit.strategies.extractive_qa``.

Data: SQuAD v1.1 JSON (``data[].paragraphs[].qas[]`` with ``answers[].answer_start``) or JSONL rows
``{"question", "context", "answers": {"text": [...], "answer_start": [...]}}`` (optionally ``"id"``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from taskfit.data.readers import Example, _decode_lines, jsonl_objects
from taskfit.errors import TaskfitError
from taskfit.evaluation.squad import squad_metrics


@dataclass(frozen=True)
class QAExample(Example):
    """``text`` is the question, ``text_pair`` the context; ``answers`` are (text, character start) pairs."""

    answers: tuple[tuple[str, int], ...] = ()
    qid: str = ""

    def key_fields(self) -> list:
        """What a cell's data fingerprint adds for this example (an edited answer makes its cells stale)."""
        return [self.qid, [list(a) for a in self.answers]]


@dataclass
class Answer:
    text: str
    start: int  # character offsets into the context, end exclusive: context[start:end] == text
    end: int
    score: float  # start probability x end probability within the answer's window


# ---------------------------------------------------------------------------------------------------
# Reading


def _checked_answers(context: str, texts, starts, where: str) -> tuple[tuple[str, int], ...]:
    if not isinstance(texts, list) or not isinstance(starts, list) or len(texts) != len(starts):
        raise TaskfitError(f"{where}: answers need as many 'text' as 'answer_start' entries (two lists)")
    answers = []
    for text, start in zip(texts, starts):
        if not isinstance(text, str) or not text or not isinstance(start, int):
            raise TaskfitError(f"{where}: an answer needs a non-empty text and an integer answer_start")
        found = context[start : start + len(text)]
        if found != text:
            elsewhere = context.find(text)
            hint = (
                f"; the text occurs at character {elsewhere}"
                if elsewhere >= 0
                else "; it is not in the context"
            )
            raise TaskfitError(
                f"{where}: answer {text!r} does not match the context at answer_start {start} "
                f"(the context has {found!r} there){hint}"
            )
        answers.append((text, start))
    return tuple(answers)


def read_squad(path: Path, document: dict) -> list[QAExample]:
    """SQuAD v1.1: every problem names the file and the question id."""
    if not isinstance(document.get("data"), list):
        raise TaskfitError(f"{path}: expected SQuAD v1.1 JSON with a top-level 'data' list")
    examples = []
    for a, article in enumerate(document["data"]):
        for p, paragraph in enumerate(article.get("paragraphs") or []):
            context = paragraph.get("context")
            if not isinstance(context, str) or not context.strip():
                raise TaskfitError(f"{path}: data[{a}].paragraphs[{p}]: missing or empty 'context'")
            for q, qa in enumerate(paragraph.get("qas") or []):
                qid = str(qa.get("id", f"data[{a}].paragraphs[{p}].qas[{q}]"))
                where = f"{path}: question id {qid!r}"
                question = qa.get("question")
                if not isinstance(question, str) or not question.strip():
                    raise TaskfitError(f"{where}: missing or empty 'question'")
                raw = qa.get("answers")
                if not isinstance(raw, list) or not raw:
                    raise TaskfitError(f"{where}: no 'answers' (SQuAD v1.1 questions have at least one)")
                if not all(isinstance(x, dict) for x in raw):
                    raise TaskfitError(f"{where}: each answer must be {{text, answer_start}}")
                answers = _checked_answers(
                    context, [x.get("text") for x in raw], [x.get("answer_start") for x in raw], where
                )
                examples.append(
                    QAExample(
                        text=question.strip(),
                        text_pair=context,
                        source=f"{path} (question id {qid})",
                        answers=answers,
                        qid=qid,
                    )
                )
    return examples


def qa_from_row(row: dict, source: str, need_answers: bool = True) -> QAExample:
    for key in ("question", "context"):
        if not isinstance(row.get(key), str) or not row[key].strip():
            raise TaskfitError(f"{source}: missing or empty '{key}'; keys found: {', '.join(row)}")
    answers: tuple[tuple[str, int], ...] = ()
    raw = row.get("answers")
    if raw is not None or need_answers:
        if not isinstance(raw, dict):
            raise TaskfitError(
                f'{source}: expected \'answers\': {{"text": [...], "answer_start": [...]}}, got {json.dumps(raw)[:80]}'
            )
        answers = _checked_answers(row["context"], raw.get("text"), raw.get("answer_start"), source)
        if need_answers and not answers:
            raise TaskfitError(f"{source}: no answers")
    qid = str(row.get("id", source))
    return QAExample(
        text=row["question"].strip(), text_pair=row["context"], source=source, answers=answers, qid=qid
    )


def read_qa(path: str | Path) -> list[QAExample]:
    """SQuAD v1.1 JSON (a document with 'data') or JSONL (one question per line)."""
    path = Path(path)
    lines = _decode_lines(path)
    whole = "\n".join(lines)
    document = None
    if whole.lstrip().startswith("{"):
        try:
            document = json.loads(whole)
        except json.JSONDecodeError:
            document = None  # JSONL: several objects
    if isinstance(document, dict) and "data" in document:
        examples = read_squad(path, document)
    else:
        expected = "SQuAD v1.1 JSON or one {question, context, answers} object per line"
        examples = [
            qa_from_row(row, f"{path}:{number}") for number, row in jsonl_objects(lines, path, expected)
        ]
    if not examples:
        raise TaskfitError(f"{path}: no questions found")
    return examples


def as_question(example: Example) -> QAExample:
    if isinstance(example, QAExample):
        return example
    if not example.text_pair:
        raise TaskfitError(
            f"{example.source}: an extractive-qa input needs a question (text) and a context (text_pair)"
        )
    return QAExample(text=example.text.strip(), text_pair=example.text_pair, source=example.source)


# ---------------------------------------------------------------------------------------------------
# Windows


@dataclass
class Window:
    example: int  # index of its question
    input_ids: list[int]
    token_type_ids: list[int] | None
    offsets: list[tuple[int, int] | None]  # character span in the context per token; None outside it
    start: int = 0  # training target: answer tokens, or 0/0 (the first token) when the answer is not inside
    end: int = 0


def make_windows(tokenizer, examples: list[QAExample], max_length: int, stride: int) -> list[Window]:
    """Each context in windows of ``max_length`` tokens (question included) overlapping by ``stride``."""
    if not getattr(tokenizer, "is_fast", False):
        raise TaskfitError("extractive-qa needs a fast tokenizer (offset mappings); this backbone has none")
    special = tokenizer.num_special_tokens_to_add(pair=True)
    lengths = tokenizer([e.text for e in examples], add_special_tokens=False)["input_ids"]
    for e, ids in zip(examples, lengths):  # the tokenizer's own error here says only "too short"
        if max_length - special - len(ids) <= stride:
            raise TaskfitError(
                f"{e.source}: the question is {len(ids)} tokens, which leaves its context no more than "
                f"doc_stride={stride} tokens of a max_length={max_length} window; raise max_length (at least "
                f"{len(ids) + special + stride + 1}) or lower doc_stride"
            )
    side_first = tokenizer.padding_side == "right"  # question first, context second (right padding)
    enc = tokenizer(
        [e.text for e in examples],
        [e.text_pair for e in examples],
        truncation="only_second" if side_first else "only_first",
        max_length=max_length,
        stride=stride,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
    )
    context_id = 1 if side_first else 0
    windows = []
    for i, ids in enumerate(enc["input_ids"]):
        seq = enc.sequence_ids(i)
        offsets = [tuple(o) if s == context_id else None for o, s in zip(enc["offset_mapping"][i], seq)]
        types = enc["token_type_ids"][i] if "token_type_ids" in enc else None
        window = Window(enc["overflow_to_sample_mapping"][i], ids, types, offsets)
        answers = examples[window.example].answers
        if answers:
            window.start, window.end = answer_tokens(offsets, *_char_span(answers[0]))
        windows.append(window)
    return windows


def _char_span(answer: tuple[str, int]) -> tuple[int, int]:
    return answer[1], answer[1] + len(answer[0])


def answer_tokens(offsets: list[tuple[int, int] | None], start: int, end: int) -> tuple[int, int]:
    """First and last token of the answer's characters in this window, or (0, 0) when it is not all inside."""
    inside = [i for i, o in enumerate(offsets) if o is not None]
    if not inside or offsets[inside[0]][0] > start or offsets[inside[-1]][1] < end:  # type: ignore[index]
        return 0, 0
    first = next(i for i in inside if offsets[i][1] > start)  # type: ignore[index]
    last = next(i for i in reversed(inside) if offsets[i][0] < end)  # type: ignore[index]
    return first, last


def best_answers(
    examples: list[QAExample], windows: list[Window], logits: list[torch.Tensor], n_best: int, max_tokens: int
) -> list[Answer]:
    """For every question, the highest start+end logit span over all its windows (valid: inside the context,
    end not before start, at most ``max_tokens`` tokens)."""
    best: list[tuple[float, Answer] | None] = [None] * len(examples)
    for window, window_logits in zip(windows, logits):  # window_logits: (T, 2)
        start_logits, end_logits = window_logits[:, 0], window_logits[:, 1]
        start_probs, end_probs = start_logits.softmax(-1), end_logits.softmax(-1)
        context = examples[window.example].text_pair or ""
        k = min(n_best, len(start_logits))
        for s in start_logits.topk(k).indices.tolist():
            for e in end_logits.topk(k).indices.tolist():
                if window.offsets[s] is None or window.offsets[e] is None or e < s or e - s + 1 > max_tokens:
                    continue
                value = float(start_logits[s] + end_logits[e])
                current = best[window.example]
                if current is None or value > current[0]:
                    a, b = window.offsets[s][0], window.offsets[e][1]  # type: ignore[index]
                    score = float(start_probs[s] * end_probs[e])
                    best[window.example] = (value, Answer(context[a:b], a, b, score))
    return [b[1] if b else Answer("", 0, 0, 0.0) for b in best]


# ---------------------------------------------------------------------------------------------------
# Pools


def load_qa_pools(cfg):
    """SQuAD/JSONL files -> question pools (no classes: K means K questions in all, seeded)."""
    from taskfit.data.prepare import Pools, _dedupe, _hold_out, _limit_test

    if cfg.dataset or not cfg.train:
        raise TaskfitError(
            "task: extractive-qa has no built-in datasets; set data.train to a SQuAD v1.1 JSON or a JSONL file"
        )
    if cfg.format not in ("auto", "jsonl"):
        raise TaskfitError(
            f"task: extractive-qa reads SQuAD JSON or JSONL; data.format is {cfg.format!r} (use auto)"
        )
    train = read_qa(cfg.train)
    dev = read_qa(cfg.dev) if cfg.dev else []
    test = read_qa(cfg.test) if cfg.test else []
    notes: list[str] = []
    train, dev, test = _hold_out(cfg, train, dev, test, notes, "questions")
    train, dev = _dedupe(cfg, train, dev, test, notes, "questions", "question")
    return Pools(train, dev, _limit_test(cfg, test, notes, "questions"), [], notes)


def evaluate_qa(strategy, test: list[QAExample]) -> tuple[dict, list[dict]]:
    """SQuAD EM/F1 (0-100) on the test questions, and one predictions.jsonl row per question."""
    answers = strategy.predict(test)
    metrics = squad_metrics([a.text for a in answers], [[t for t, _ in e.answers] for e in test])
    rows = [
        {
            "id": e.qid,
            "question": e.text,
            "gold": [t for t, _ in e.answers],
            "predicted": a.text,
            "start": a.start,
            "end": a.end,
            "score": a.score,
        }
        for e, a in zip(test, answers)
    ]
    return metrics, rows
