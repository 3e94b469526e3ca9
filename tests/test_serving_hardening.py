"""Issue 19, server side (#8-#11): one bad input fails only itself, a 500 is logged with a request id that the
error body carries, the README's curl command works as written, auth guards every endpoint but /health and
comes before body validation, and 413s from the body limit reach /metrics.

A stand-in predictor (no model) keeps these fast; it fails the way the tokenizer does on a lone surrogate."""

from __future__ import annotations

import logging
import re
import shlex
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.test_serving import Gated, queued_behind_a_held_batch, serving

README = Path(__file__).resolve().parents[1] / "README.md"


class StandIn:
    """Labels every text 'pos'; a text that is not UTF-8-encodable raises as the fast tokenizers do, and the
    text 'boom' raises an error no validation can foresee."""

    name, task, labels, generates = "stand-in", "classification", ["neg", "pos"], False

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
    predictor = Gated(StandIn())
    with serving(predictor, max_batch_size=16, max_wait_ms=0) as url:

        def send(body):
            return httpx.post(f"{url}/v1/predict", json=body, timeout=60)

        bodies = [{"inputs": ["boom"]}] + [{"inputs": [f"fine {i}"]} for i in range(7)]
        responses = queued_behind_a_held_batch(url, predictor, send, bodies)
    assert [r.status_code for r in responses] == [500] + [200] * 7
    # the held request alone, the eight together (which failed), then each of the eight alone
    assert [len(b) for b in predictor.batches] == [1, 8] + [1] * 8


def test_a_500_is_logged_with_its_traceback_and_a_request_id_that_the_body_carries(caplog):
    with caplog.at_level(logging.ERROR, logger="taskfit.serve"):
        with serving(StandIn()) as url:
            response = httpx.post(f"{url}/v1/predict", json={"inputs": ["boom"]}, timeout=20)
    assert response.status_code == 500
    error = response.json()["error"]
    request_id = error["request_id"]
    assert re.fullmatch(r"[0-9a-f]{16,}", request_id) and request_id in error["message"]
    assert response.headers["x-request-id"] == request_id
    logged = [r for r in caplog.records if request_id in r.getMessage()]
    assert logged and logged[0].exc_info and "the model fell over" in caplog.text


def _readme_curl() -> str:
    (line,) = [
        x
        for x in README.read_text(encoding="utf-8").splitlines()
        if x.startswith("curl ") and "/v1/predict" in x
    ]
    return line


def test_the_readme_curl_example_works_as_written():
    line = _readme_curl()
    key = re.search(r"TASKFIT_API_KEY=(\S+) taskfit serve", README.read_text(encoding="utf-8")).group(1)
    with serving(StandIn(), api_key=key) as url:
        port = url.rsplit(":", 1)[1]
        args = shlex.split(line.replace("localhost:8000", f"127.0.0.1:{port}"))
        # curl -d sends Content-Type: application/x-www-form-urlencoded; the body is still JSON
        headers = dict(h.split(": ", 1) for h in args[args.index("-H") + 1 : args.index("-H") + 2])
        body = args[args.index("-d") + 1]
        as_curl = httpx.post(
            f"{url}/v1/predict",
            content=body.encode(),
            headers={**headers, "content-type": "application/x-www-form-urlencoded"},
            timeout=20,
        )
        assert as_curl.status_code == 200, as_curl.text
        assert as_curl.json()["predictions"][0]["label"] == "pos"
        bare = httpx.post(f"{url}/v1/predict", content=body.encode(), headers=headers, timeout=20)
        assert bare.status_code == 200, bare.text  # no content-type at all
        if shutil.which("curl"):
            out = subprocess.run(args, capture_output=True, text=True, timeout=30)
            assert out.returncode == 0 and '"label":"pos"' in out.stdout.replace(" ", ""), out


def test_auth_guards_the_spec_and_docs_and_comes_before_body_validation():
    key = "k-123"
    auth = {"Authorization": f"Bearer {key}"}
    with (
        serving(StandIn(), api_key=key, max_body_bytes=2000) as url,
        httpx.Client(base_url=url, timeout=20) as http,
    ):
        for path in ("/openapi.json", "/docs", "/redoc", "/metrics", "/nowhere"):
            response = http.get(path)
            assert response.status_code == 401, (path, response.text)
            assert response.json()["error"]["type"] == "authentication_error"
        assert http.get("/openapi.json", headers=auth).status_code == 200
        assert http.get("/docs", headers=auth).status_code == 200
        assert http.get("/health").status_code == 200
        # a malformed body without a key: 401 (who you are) before 422 (what you sent)
        malformed = http.post(
            "/v1/predict", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert malformed.status_code == 401, malformed.text
        assert (
            http.post(
                "/v1/predict", content=b"{not json", headers={**auth, "content-type": "application/json"}
            ).status_code
            == 422
        )
        too_big = http.post(
            "/v1/predict", content=b"x" * 5000, headers={**auth, "content-type": "application/json"}
        )
        assert too_big.status_code == 413
        chunked = http.post("/v1/predict", content=iter([b"x" * 1500] * 2), headers=auth)
        assert chunked.status_code == 413
        metrics = http.get("/metrics", headers=auth).text
    assert 'taskfit_requests_total{endpoint="/v1/predict",status="413"} 2.0' in metrics, metrics
    assert 'endpoint="/openapi.json",status="401"} 1.0' in metrics
    assert 'endpoint="unmatched",status="401"} 1.0' in metrics  # unknown paths share one label


@pytest.mark.parametrize("path", ["/openapi.json", "/docs"])
def test_without_a_key_the_spec_and_docs_stay_open(path):
    with serving(StandIn()) as url:
        assert httpx.get(f"{url}{path}", timeout=20).status_code == 200
