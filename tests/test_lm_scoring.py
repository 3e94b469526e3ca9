import pytest
import torch

from taskfit.models.backbones import load_backbone
from taskfit.models.lm_scoring import WordScores, label_scores, score_words


@pytest.fixture(scope="module")
def tiny_lm(tiny_llama_dir):
    return load_backbone(str(tiny_llama_dir))


def brute_force(model, tok, text: str, word: str) -> float:
    """log P(word | text) from one full forward pass over text + word."""
    ctx = tok(text)["input_ids"]
    wids = tok(word, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([ctx + wids], device=model.device)
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0], -1).cpu()
    return sum(logp[len(ctx) - 1 + i, w].item() for i, w in enumerate(wids))


def test_scores_match_a_full_forward_pass_including_multi_token_words(tiny_lm):
    model, tok = tiny_lm.model, tiny_lm.tokenizer
    prompts = ["the movie was", "a very dull and boring plot, it is", "great"]
    words = [" good", " wonderful superb", " positive negative question"]
    assert len(tok(words[2], add_special_tokens=False)["input_ids"]) > 1
    ws = score_words(model, tok, prompts, words, batch_size=2)
    for i, p in enumerate(prompts):
        for j, w in enumerate(words):
            assert ws.logprob_sum[i, j].item() == pytest.approx(brute_force(model, tok, p, w), abs=1e-4)


def test_progress_counts_prompts_not_the_extra_rows_of_multi_token_words(tiny_lm):
    """The predict progress line's total is the number of texts; it read 480/500 then overshot."""
    model, tok = tiny_lm.model, tiny_lm.tokenizer
    prompts = ["the movie was", "a very dull and boring plot, it is", "great", "fine"]
    words = [" good", " wonderful superb", " positive negative question"]
    done: list[int] = []
    score_words(model, tok, prompts, words, batch_size=3, on_batch=done.append)
    assert sum(done) == len(prompts)


def test_shared_prefix_cache_gives_the_same_scores(tiny_lm):
    model, tok = tiny_lm.model, tiny_lm.tokenizer
    prefix = "Review: good fun\nSentiment: positive\n\nReview: awful\nSentiment: negative\n\n"
    prompts = ["Review: the plot\nSentiment:", "Review: loved it, very wonderful film\nSentiment:"]
    words = [" positive", " negative", " very boring film"]
    cached = score_words(model, tok, prompts, words, shared_prefix=prefix, reuse_prefix_cache=True)
    plain = score_words(model, tok, prompts, words, shared_prefix=prefix, reuse_prefix_cache=False)
    # identical up to float noise; token boundaries agree because the prefix ends in a newline
    assert torch.allclose(cached.logprob_sum, plain.logprob_sum, atol=1e-4)
    for i, p in enumerate(prompts):
        assert plain.logprob_sum[i, 2].item() == pytest.approx(
            brute_force(model, tok, prefix + p, words[2]), abs=1e-4
        )


def test_label_scores_logsumexp_and_length_normalisation():
    ws = WordScores(torch.log(torch.tensor([[0.1, 0.2, 0.3]])), torch.tensor([1.0, 2.0, 1.0]))
    out = label_scores(ws, [0, 1, 1], 2)
    assert torch.allclose(out.exp(), torch.tensor([[0.1, 0.5]]))
    normed = label_scores(ws, [0, 1, 1], 2, normalise=True)
    expected = torch.log(torch.tensor(0.2).sqrt() + 0.3)
    assert normed[0, 1].item() == pytest.approx(expected.item(), abs=1e-6)


def test_prefix_split_matches_joint_tokenization(tiny_lm):
    tok = tiny_lm.tokenizer
    from taskfit.models.lm_scoring import split_at_prefix

    prefix = "good movie\n\n"
    prompts = ["Review: the plot", "\n\nodd start", "awful"]
    prefix_ids, prompt_ids = split_at_prefix(tok, prefix, prompts)
    for p, ids in zip(prompts, prompt_ids):
        assert prefix_ids + ids == tok(prefix + p)["input_ids"]
    assert len(prefix_ids) >= 2
