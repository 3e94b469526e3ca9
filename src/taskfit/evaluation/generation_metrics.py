"""Generation metrics: BLEU and chrF through sacrebleu, ROUGE through rouge-score, plus exact match and perplexity.

The scores come from the libraries. Written by hand here is only what they lack: choosing Chinese handling
(sacrebleu's ``zh`` tokenizer, and a character-level tokenizer for rouge-score, whose default tokenizer keeps
only ``[a-z0-9]`` and so scores Chinese text 0), whitespace-normalised exact match, and perplexity from a summed
negative log-likelihood.
"""

from __future__ import annotations

import math
import re
import unicodedata

import sacrebleu
from rouge_score import rouge_scorer

# CJK Unified Ideographs: the main block, Extension A, Extensions B-F and I, Extensions G-H.
_CJK_CLASS = "\u3400-\u4dbf\u4e00-\u9fff\U00020000-\U0002ebef\U00030000-\U000323af"
_CJK_CHAR_RE = re.compile(f"[{_CJK_CLASS}]")
# One token per ideograph, or one per run of (lower-cased) latin letters/digits; everything else is a separator.
_CJK_TOKEN_RE = re.compile(f"[{_CJK_CLASS}]|[a-z0-9]+")
_ZH_SHARE = 0.3  # "mostly Chinese": more than this share of the non-space characters are ideographs
_ROUGE_TYPES = ["rouge1", "rouge2", "rougeL"]


class CharLevelTokenizer:
    """rouge-score tokenizer for Chinese (hand-written: rouge-score has none).

    Chinese is written without spaces, so each ideograph is its own token; latin words and numbers inside the
    text stay whole words, lower-cased like rouge-score's default. NFKC first maps full-width letters and digits
    (common in Chinese text) to ASCII. Punctuation is dropped, as the default tokenizer drops it. No stemming.
    """

    def tokenize(self, text: str) -> list[str]:
        return _CJK_TOKEN_RE.findall(unicodedata.normalize("NFKC", text).lower())


def cjk_share(texts: list[str]) -> float:
    """Share of non-space characters that are CJK ideographs (0 when there are none), to detect Chinese."""
    chars = [c for text in texts for c in text if not c.isspace()]
    if not chars:
        return 0.0
    return sum(1 for c in chars if _CJK_CHAR_RE.match(c)) / len(chars)


def _normalise_whitespace(text: str) -> str:
    return " ".join(text.split())


def generation_metrics(references: list[str], predictions: list[str], language: str = "auto") -> dict:
    """Corpus BLEU and chrF, mean ROUGE-1/2/L F-measure and exact match, all on sacrebleu's 0-100 scale.

    ``language`` is "zh", "other" or "auto" (Chinese when more than 30% of the references' non-space characters
    are ideographs). Chinese needs its own tokenization, otherwise BLEU sees each sentence as one word and ROUGE
    sees nothing at all. Returns ``bleu``, ``chrf``, ``rouge1``, ``rouge2``, ``rougeL``, ``exact_match``, ``n``
    and the ``language`` used ("zh" or "other").
    """
    if len(references) != len(predictions):
        raise ValueError(
            f"references and predictions differ in length ({len(references)} vs {len(predictions)})"
        )
    if not references:
        raise ValueError("no references/predictions to score: both lists are empty")
    if language not in ("auto", "zh", "other"):
        raise ValueError(f"language must be 'auto', 'zh' or 'other', not {language!r}")
    if language == "auto":
        language = "zh" if cjk_share(references) > _ZH_SHARE else "other"

    if language == "zh":
        bleu = sacrebleu.corpus_bleu(predictions, [references], tokenize="zh")
        scorer = rouge_scorer.RougeScorer(_ROUGE_TYPES, tokenizer=CharLevelTokenizer())
    else:
        bleu = sacrebleu.corpus_bleu(predictions, [references])
        scorer = rouge_scorer.RougeScorer(_ROUGE_TYPES, use_stemmer=True)
    chrf = sacrebleu.corpus_chrf(predictions, [references])

    n = len(references)
    rouge_sums = dict.fromkeys(_ROUGE_TYPES, 0.0)
    for ref, pred in zip(references, predictions):
        scores = scorer.score(ref, pred)  # (target, prediction)
        for key in _ROUGE_TYPES:
            rouge_sums[key] += scores[key].fmeasure
    exact = sum(_normalise_whitespace(r) == _normalise_whitespace(p) for r, p in zip(references, predictions))

    return {
        "bleu": float(bleu.score),
        "chrf": float(chrf.score),
        **{key: 100.0 * total / n for key, total in rouge_sums.items()},
        "exact_match": 100.0 * exact / n,
        "n": n,
        "language": language,
    }


def token_perplexity(total_nll: float, total_tokens: int) -> float:
    """exp(mean negative log-likelihood per token), from sums so that batches can be pooled before dividing."""
    if total_tokens <= 0:
        raise ValueError(f"perplexity needs at least one token, got total_tokens={total_tokens}")
    return math.exp(total_nll / total_tokens)
