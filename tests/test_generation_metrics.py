"""Generation metrics against numbers worked out by hand (no models)."""

from __future__ import annotations

import math

import pytest
from rouge_score import rouge_scorer

from taskfit.evaluation.generation_metrics import (
    CharLevelTokenizer,
    cjk_share,
    generation_metrics,
    token_perplexity,
)

KEYS = {"bleu", "chrf", "rouge1", "rouge2", "rougeL", "exact_match", "n", "language"}


def test_identical_texts_score_100_everywhere():
    texts = ["the quick brown fox jumps over the lazy dog", "a stitch in time saves nine stitches"]
    m = generation_metrics(texts, list(texts))
    assert set(m) == KEYS
    for key in ("bleu", "chrf", "rouge1", "rouge2", "rougeL", "exact_match"):
        assert m[key] == pytest.approx(100.0), key
    assert m["n"] == 2
    assert m["language"] == "other"


def test_rouge_english_by_hand():
    # ref  tokens: the cat sat on the mat   (6)    pred tokens: the cat is on the mat   (6)
    # ROUGE-1, clipped unigram overlap: the min(2,2)=2 + cat 1 + on 1 + mat 1 = 5  ("sat"/"is" unmatched)
    #   P = 5/6, R = 5/6  ->  F = 5/6 = 83.333...
    # ROUGE-2: ref {the cat, cat sat, sat on, on the, the mat}, pred {the cat, cat is, is on, on the, the mat}
    #   overlap {the cat, on the, the mat} = 3  ->  P = R = 3/5  ->  F = 3/5 = 60
    # ROUGE-L: LCS "the cat on the mat" = 5  ->  F = 5/6
    # (no word is longer than 3 letters, so the Porter stemmer changes nothing)
    m = generation_metrics(["the cat sat on the mat"], ["the cat is on the mat"])
    assert m["rouge1"] == pytest.approx(100 * 5 / 6, abs=1e-6)
    assert m["rouge2"] == pytest.approx(100 * 3 / 5, abs=1e-6)
    assert m["rougeL"] == pytest.approx(100 * 5 / 6, abs=1e-6)
    assert m["exact_match"] == 0.0


def test_rouge_unequal_lengths_and_averaging_by_hand():
    # pair 1: ref "the cat sat on the mat" (6), pred "the cat on the mat" (5); unigram overlap 5
    #   P = 5/5, R = 5/6  ->  F = 2*1*(5/6) / (1 + 5/6) = 10/11
    # pair 2: identical -> F = 1.   Mean over examples: (10/11 + 1) / 2 = 21/22
    refs = ["the cat sat on the mat", "hello world"]
    preds = ["the cat on the mat", "hello world"]
    m = generation_metrics(refs, preds)
    assert m["rouge1"] == pytest.approx(100 * 21 / 22, abs=1e-6)
    assert m["exact_match"] == pytest.approx(50.0)


def test_bleu_single_sentence_by_hand():
    # 13a tokens. ref: the cat sat on the red mat (r = 7); hyp: the cat sat on the mat (c = 6)
    #   1-grams: 6/6 match (ref has "the" twice)
    #   2-grams: the cat, cat sat, sat on, on the match; "the mat" not in ref      -> 4/5
    #   3-grams: the cat sat, cat sat on, sat on the match; "on the mat" not       -> 3/4
    #   4-grams: the cat sat on, cat sat on the match; "sat on the mat" not        -> 2/3
    #   geometric mean = (1 * 4/5 * 3/4 * 2/3) ** (1/4) = 0.4 ** 0.25
    #   brevity penalty (c < r) = exp(1 - 7/6) = exp(-1/6)
    #   BLEU = 100 * exp(-1/6) * 0.4 ** 0.25 = 67.3175...
    m = generation_metrics(["the cat sat on the red mat"], ["the cat sat on the mat"])
    expected = 100 * math.exp(-1 / 6) * 0.4**0.25
    assert m["bleu"] == pytest.approx(expected, abs=1e-6)
    assert 67.31 < expected < 67.33


ZH_REF = "今天天气很好"
ZH_PRED = "今天天气不好"


def test_chinese_rouge_is_character_level():
    # characters: ref 今 天 天 气 很 好, pred 今 天 天 气 不 好 -> 5 of 6 match: P = R = F = 5/6
    # bigrams: ref {今天, 天天, 天气, 气很, 很好}, pred {今天, 天天, 天气, 气不, 不好} -> 3 of 5: F = 3/5
    # LCS 今天天气好 = 5 -> F = 5/6
    m = generation_metrics([ZH_REF], [ZH_PRED])
    assert m["language"] == "zh"
    assert m["rouge1"] == pytest.approx(100 * 5 / 6, abs=1e-6)
    assert m["rouge2"] == pytest.approx(100 * 3 / 5, abs=1e-6)
    assert m["rougeL"] == pytest.approx(100 * 5 / 6, abs=1e-6)


def test_default_rouge_tokenizer_would_score_chinese_zero():
    # Why the custom tokenizer exists: rouge-score keeps only [a-z0-9], so Chinese has no tokens at all.
    default = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    scores = default.score(ZH_REF, ZH_PRED)
    assert all(scores[k].fmeasure == 0.0 for k in ("rouge1", "rouge2", "rougeL"))
    # ... and forcing the non-Chinese path here gives the same 0s
    m = generation_metrics([ZH_REF], [ZH_PRED], language="other")
    assert m["language"] == "other"
    assert m["rouge1"] == m["rouge2"] == m["rougeL"] == 0.0


def test_chinese_bleu_with_zh_tokenizer_by_hand():
    # tokenize="zh" splits every ideograph: 6 tokens each, so BP = 1.
    #   1-grams 5/6; 2-grams 3/5 (as above); 3-grams: 今天天, 天天气 match of 4 -> 2/4; 4-grams: 今天天气 of 3 -> 1/3
    #   BLEU = 100 * (5/6 * 3/5 * 1/2 * 1/3) ** (1/4) = 100 * (1/12) ** 0.25 = 53.728...
    m = generation_metrics([ZH_REF], [ZH_PRED])
    assert m["bleu"] > 0
    assert m["bleu"] == pytest.approx(100 * (1 / 12) ** 0.25, abs=1e-6)
    # with the default 13a tokenizer the whole sentence is one word, so nothing matches
    assert generation_metrics([ZH_REF], [ZH_PRED], language="other")["bleu"] == 0.0


def test_char_level_tokenizer_keeps_latin_words():
    # full-width "ＧＰＴ４" is NFKC-normalised to ASCII; punctuation is dropped
    assert CharLevelTokenizer().tokenize("我用 GPT4 写了Python代码，ＧＰＴ４！") == [
        "我", "用", "gpt4", "写", "了", "python", "代", "码", "gpt4",
    ]  # fmt: skip


def test_language_detection_threshold():
    assert cjk_share(["ab 今天"]) == pytest.approx(0.5)  # 2 of 4 non-space characters
    assert cjk_share(["", "   "]) == 0.0
    # 2 ideographs among 10 non-space characters = 20% -> not mostly Chinese
    assert generation_metrics(["abcdefgh 今天"], ["abcdefgh 今天"])["language"] == "other"
    assert generation_metrics(["abcd 今天"], ["abcd 今天"])["language"] == "zh"  # 2 of 6 = 33%


def test_exact_match_ignores_surrounding_and_repeated_whitespace():
    refs = ["Paris", "New  York City", "Berlin", "rome"]
    preds = ["  Paris\n", "New York\tCity", "Bonn", "Rome"]  # case still matters
    assert generation_metrics(refs, preds)["exact_match"] == pytest.approx(50.0)


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="differ in length"):
        generation_metrics(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="empty"):
        generation_metrics([], [])
    with pytest.raises(ValueError, match="language"):
        generation_metrics(["a"], ["a"], language="fr")


def test_token_perplexity():
    assert token_perplexity(4 * math.log(3), 4) == pytest.approx(3.0)
    assert token_perplexity(0.0, 10) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        token_perplexity(1.0, 0)
