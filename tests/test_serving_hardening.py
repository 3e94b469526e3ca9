"""Issue 19, server side (#8-#11): one bad input fails only itself, a 500 is logged with a request id that the
error body carries, the README's curl command works as written, auth guards every endpoint but /health and
comes before body validation, and 413s from the body limit reach /metrics.

A stand-in predictor (no model) keeps these fast; it fails the way the tokenizer does on a lone surrogate."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.test_serving import serving

README = Path(__file__).resolve().parents[1] / "README.md"


class StandIn:
    """Labels every text 'pos'; a text that is not UTF-8-encodable raises as the fast tokenizers do, and the
    text 'boom' raises an error no validation can foresee."""

    name, task, labels = "stand-in", "classification", ["neg", "pos"]

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def predict(self, examples):
        self.batches.append([e.text for e in examples])
        for e in examples:
            e.text.encode("utf-8")  # UnicodeEncodeError on "\ud800", as a tokenizer fails inside the batch
            if e.text == "boom":
                raise RuntimeError("the model fell over")
        return [{"label": "pos", "scores": {"neg": 0.0, "pos": 1.0}} for _ in examples]


def _raw(text_json: str) -> dict:
    """A request whose JSON holds ``text_json`` verbatim (e.g. the escape \\ud800, which json= cannot send)."""
    return {
        "content": ('{"inputs": ["' + text_json + '"]}').encode(),
        "headers": {"content-type": "application/json"},
    }


def _concurrently(url: str, requests: list[dict]) -> list[httpx.Response]:
    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(lambda kw: httpx.post(f"{url}/v1/predict", timeout=20, **kw), requests))


def test_a_lone_surrogate_is_a_422_and_its_batch_mates_succeed():
    predictor = StandIn()
    with serving(predictor, max_batch_size=16, max_wait_ms=300) as url:
        alone = httpx.post(f"{url}/v1/predict", timeout=20, **_raw("\\ud800"))
        assert alone.status_code == 422, alone.text
        assert alone.json()["error"]["param"] == "inputs.0" and "UTF-8" in alone.json()["error"]["message"]
        mixed = _concurrently(
            url, [_raw("\\ud800")] + [{"json": {"inputs": [f"fine {i}"]}} for i in range(7)]
        )
        assert [r.status_code for r in mixed] == [422] + [200] * 7
    assert not any("\ud800" in text for batch in predictor.batches for text in batch)  # never joined a batch


def test_a_failing_batch_is_retried_item_by_item_so_only_the_bad_request_fails():
    predictor = StandIn()
    with serving(predictor, max_batch_size=16, max_wait_ms=400) as url:
        bodies = [{"json": {"inputs": ["boom"]}}] + [{"json": {"inputs": [f"fine {i}"]}} for i in range(7)]
        responses = _concurrently(url, bodies)
    assert [r.status_code for r in responses] == [500] + [200] * 7
    assert max(len(b) for b in predictor.batches) > 1  # they did share a batch, which failed
