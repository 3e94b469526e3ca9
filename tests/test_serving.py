"""The HTTP service on a real loopback port (uvicorn in a thread), batch prediction from files, and their
errors. Tiny random models; every request goes to 127.0.0.1 only, bounded in count and time."""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pytest

from taskfit.compare.engine import run_experiment
from taskfit.config import validate_config
from taskfit.data.readers import Columns, Example
from taskfit.errors import TaskfitError
from taskfit.serving.app import ServeSettings, build_asgi
from taskfit.serving.batch import predict_file
from taskfit.serving.predictor import Predictor
from tests import processes
from tests.conftest import write_csv

KEY = "test-key-123"


@contextmanager
def serving(predictor: Predictor, **settings):
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = build_asgi(predictor, ServeSettings(port=port, **settings))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


class Gated:
    """A predictor whose forward pass on the text 'hold' waits for ``release``: while the model thread is held,
    concurrent requests queue up, and the next batch takes them all. Batching tests wait on that (the queue
    depth in /metrics), not on the clock."""

    def __init__(self, inner) -> None:
        self.inner, self.holding, self.release = inner, threading.Event(), threading.Event()
        self.batches: list[list[str]] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def predict(self, examples):
        self.batches.append([e.text for e in examples])
        if any(e.text == "hold" for e in examples):
            self.holding.set()
            assert self.release.wait(60), "never released"
        return self.inner.predict(examples)


def queue_depth(url: str, headers: dict | None = None) -> float:
    metrics = httpx.get(f"{url}/metrics", headers=headers, timeout=10).text
    return float(
        next(line.split()[-1] for line in metrics.splitlines() if line.startswith("taskfit_queue_depth"))
    )


def queued_behind_a_held_batch(url: str, gated: Gated, send, requests: list) -> list:
    """``send(request)`` for each of ``requests`` concurrently, all queued while the model thread is held,
    then released together: they share one batch (up to max_batch_size) whatever the machine's speed."""
    with ThreadPoolExecutor(len(requests) + 1) as pool:
        held = pool.submit(send, {"inputs": ["hold"]})
        processes.wait_until(gated.holding.is_set, "the model thread to be busy")
        futures = [pool.submit(send, r) for r in requests]
        processes.wait_until(lambda: queue_depth(url) == len(requests), "every request to queue", poll_s=0.02)
        gated.release.set()
        held.result()
        return [f.result() for f in futures]


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory, tiny_bert_dir):
    import random

    rng = random.Random(1)
    rows = [
        {
            "text": " ".join(rng.sample(["good", "great", "fun"] if i % 2 else ["bad", "awful", "dull"], 2)),
            "label": "pos" if i % 2 else "neg",
        }
        for i in range(40)
    ]
    root = tmp_path_factory.mktemp("clf")
    csv = write_csv(root / "train.csv", rows)
    config = validate_config(
        {
            "name": "clf",
            "data": {"train": str(csv), "shots": 8},
            "strategies": [{"name": "head-finetune", "backbone": str(tiny_bert_dir), "epochs": 1}],
            "seeds": [0],
        }
    )
    run_experiment(config, root / "out", isolate=False)
    return next((root / "out" / "head-finetune").glob("*/k8/seed-0"))


@pytest.fixture(scope="module")
def generator_run(tmp_path_factory, tiny_llama_dir):
    root = tmp_path_factory.mktemp("gen")
    csv = write_csv(
        root / "pairs.csv", [{"text": f"good movie {i}", "target": "great fun"} for i in range(20)]
    )
    config = validate_config(
        {
            "name": "gen",
            "task": "generation",
            "data": {"train": str(csv), "shots": 4},
            "prompt": {"template": "{text}\n{answer}"},
            "strategies": [
                {"name": "zero-shot", "backbone": str(tiny_llama_dir), "decoding": {"max_new_tokens": 6}}
            ],
            "seeds": [0],
        }
    )
    run_experiment(config, root / "out", isolate=False)
    return root / "out" / "zero-shot" / next((root / "out" / "zero-shot").iterdir()).name / "k0"


def test_classifier_service_predicts_and_rejects_bad_requests(classifier_run):
    predictor = Predictor.load(classifier_run)
    direct = predictor.predict([Example(text="good fun")])
    with serving(predictor, api_key=KEY, max_body_bytes=4000, max_inputs=4, max_text_chars=200) as url:
        auth = {"Authorization": f"Bearer {KEY}"}
        with httpx.Client(base_url=url, timeout=20) as http:
            ok = http.post("/v1/predict", json={"inputs": ["good fun", {"text": "bad dull"}]}, headers=auth)
            assert ok.status_code == 200, ok.text
            body = ok.json()
            assert body["task"] == "classification" and len(body["predictions"]) == 2
            first = body["predictions"][0]
            assert first["label"] == direct[0]["label"]
            assert first["scores"] == pytest.approx(direct[0]["scores"], abs=1e-6)
            assert sum(first["scores"].values()) == pytest.approx(1.0, abs=1e-5)

            def error(response, status):
                assert response.status_code == status, response.text
                payload = response.json()["error"]
                assert payload["message"] and payload["type"]
                return payload

            assert (
                error(http.post("/v1/predict", json={"inputs": ["x"]}), 401)["type"] == "authentication_error"
            )
            error(
                http.post("/v1/predict", json={"inputs": ["x"]}, headers={"Authorization": "Bearer nope"}),
                401,
            )
            error(
                http.post(
                    "/v1/predict", content=b"{not json", headers={**auth, "content-type": "application/json"}
                ),
                422,
            )
            assert (
                "inputs"
                in error(http.post("/v1/predict", json={"texts": ["x"]}, headers=auth), 422)["message"]
            )
            error(http.post("/v1/predict", json={"inputs": []}, headers=auth), 422)
            assert (
                "limit is 4"
                in error(http.post("/v1/predict", json={"inputs": ["a"] * 5}, headers=auth), 413)["message"]
            )
            assert (
                "limit is 200"
                in error(http.post("/v1/predict", json={"inputs": ["a" * 201]}, headers=auth), 422)["message"]
            )
            big = http.post(
                "/v1/predict", content=b"x" * 5000, headers={**auth, "content-type": "application/json"}
            )
            assert error(big, 413)["type"] == "request_too_large"
            chunked = http.post(
                "/v1/predict",
                content=iter([b"x" * 3000, b"x" * 3000]),
                headers={**auth, "content-type": "application/json"},
            )  # no content-length: the limit still holds
            assert error(chunked, 413)["type"] == "request_too_large"
            assert error(
                http.post("/v1/predict", json={"inputs": ["x"]}, headers={"Authorization": b"Bearer k\xe9"}),
                401,
            )
            # the classifier has no generation endpoints
            error(http.post("/v1/completions", json={"prompt": "x"}, headers=auth), 404)

            assert http.get("/health").json()["status"] == "ok"  # open: for load balancers' probes
            assert (
                error(http.get("/openapi.json"), 401)["type"] == "authentication_error"
            )  # the key guards it too
            assert "/v1/predict" in http.get("/openapi.json", headers=auth).json()["paths"]
            metrics = http.get("/metrics", headers=auth).text
            assert 'taskfit_requests_total{endpoint="/v1/predict",status="200"} 1.0' in metrics
            assert 'taskfit_requests_total{endpoint="/v1/predict",status="401"} 3.0' in metrics, metrics
            assert 'taskfit_requests_total{endpoint="/v1/predict",status="413"} 3.0' in metrics, metrics


def test_concurrent_requests_share_batches(classifier_run):
    predictor = Gated(Predictor.load(classifier_run))
    with serving(predictor, max_batch_size=16, max_wait_ms=0) as url:

        def send(body):
            return httpx.post(f"{url}/v1/predict", json=body, timeout=60).status_code

        bodies = [{"inputs": [f"good fun {i}"]} for i in range(6)]
        assert queued_behind_a_held_batch(url, predictor, send, bodies) == [200] * 6
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
    batches = float(
        next(line.split()[-1] for line in metrics.splitlines() if line.startswith("taskfit_batch_size_count"))
    )
    inputs = float(
        next(line.split()[-1] for line in metrics.splitlines() if line.startswith("taskfit_batch_size_sum"))
    )
    assert inputs == 7 and batches == 2  # the held request, then six requests in one forward pass


def test_openai_client_against_a_generation_run(generator_run):
    openai = pytest.importorskip("openai")
    predictor = Predictor.load(generator_run)
    with serving(predictor, api_key=KEY, max_new_tokens=16) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=30)
        assert [m.id for m in client.models.list().data] == ["zero-shot"]
        done = client.completions.create(model="zero-shot", prompt="good movie", max_tokens=5, temperature=0)
        assert done.object == "text_completion" and isinstance(done.choices[0].text, str)
        assert 1 <= done.usage.completion_tokens <= 5 and done.choices[0].finish_reason in ("stop", "length")
        streamed = client.completions.create(
            model="zero-shot", prompt="good movie", max_tokens=5, temperature=0, stream=True
        )
        pieces = [c.choices[0].text for c in streamed]
        assert "".join(pieces).strip() == done.choices[0].text  # streaming writes the same greedy text

        messages = [{"role": "user", "content": "the plot was dull"}]
        chat = client.chat.completions.create(model="zero-shot", messages=messages, max_tokens=6)
        assert chat.choices[0].message.role == "assistant"
        chunks = list(
            client.chat.completions.create(model="zero-shot", messages=messages, max_tokens=6, stream=True)
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text.strip() == chat.choices[0].message.content
        assert chunks[-1].choices[0].finish_reason in ("stop", "length")
        # the run's own path: /v1/predict renders through its template, as its test scores were measured
        generated = httpx.post(
            f"{url}/v1/predict",
            json={"inputs": ["the plot was dull"]},
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=20,
        ).json()["predictions"][0]["generated"]
        assert generated == chat.choices[0].message.content

        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0).completions.create(
                model="m", prompt="x"
            )
        with pytest.raises(openai.UnprocessableEntityError, match="limit of 16"):
            client.completions.create(model="zero-shot", prompt="x", max_tokens=100)
        with pytest.raises(openai.UnprocessableEntityError):
            client.chat.completions.create(model="zero-shot", messages=[{"role": "robot", "content": "x"}])


class _Crashing:
    """A predictor that fails after ``after`` chunks: an interruption mid-file."""

    def __init__(self, inner, after):
        self.inner, self.after, self.calls = inner, after, 0

    def predict(self, examples):
        self.calls += 1
        if self.calls > self.after:
            raise KeyboardInterrupt
        return self.inner.predict(examples)


def test_batch_prediction_streams_and_resumes_after_an_interruption(classifier_run, tmp_path):
    rows = [{"id": i, "text": f"{'good fun' if i % 2 else 'bad dull'} {i}"} for i in range(23)]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    predictor = Predictor.load(classifier_run)
    whole = predict_file(classifier_run, source, tmp_path / "whole.jsonl", batch_size=5, predictor=predictor)
    assert whole == {"rows": 23, "resumed_after": 0, "output": str(tmp_path / "whole.jsonl")}
    expected = (tmp_path / "whole.jsonl").read_text(encoding="utf-8")
    assert [
        json.loads(line)["source"].endswith(f":{i + 1}") for i, line in enumerate(expected.splitlines())
    ] == [True] * 23

    out = tmp_path / "out.jsonl"
    with pytest.raises(KeyboardInterrupt):
        predict_file(classifier_run, source, out, batch_size=5, predictor=_Crashing(predictor, after=2))
    partial = tmp_path / "out.jsonl.partial"
    assert not out.exists() and len(partial.read_text().splitlines()) == 10
    with partial.open("a") as f:
        f.write('{"torn": ')  # a line cut by the crash
    with pytest.raises(TaskfitError, match="--resume"):
        predict_file(classifier_run, source, out, batch_size=5, predictor=predictor)
    resumed = predict_file(classifier_run, source, out, batch_size=5, resume=True, predictor=predictor)
    assert resumed["resumed_after"] == 10 and not partial.exists()
    assert out.read_text(encoding="utf-8") == expected  # every row once, in order, as without the crash
    with pytest.raises(TaskfitError, match="exists; pass --overwrite"):
        predict_file(classifier_run, source, out, predictor=predictor)

    # a partial output made from another input is not continued
    other = tmp_path / "other.jsonl"
    with pytest.raises(KeyboardInterrupt):
        predict_file(classifier_run, source, other, batch_size=5, predictor=_Crashing(predictor, after=1))
    source.write_text(
        "".join(json.dumps({"text": f"changed {i}"}) + "\n" for i in range(23)), encoding="utf-8"
    )
    with pytest.raises(TaskfitError, match="the input changed since"):
        predict_file(classifier_run, source, other, batch_size=5, resume=True, predictor=predictor)


def test_batch_prediction_errors_name_the_line(classifier_run, tmp_path):
    bad = write_csv(tmp_path / "bad.csv", [{"id": 1, "text": "fine"}, {"id": 2, "text": ""}])
    with pytest.raises(TaskfitError, match=r"bad.csv:3: empty text"):
        predict_file(classifier_run, bad, tmp_path / "o.jsonl", Columns(label=None))
    other = write_csv(tmp_path / "other.csv", [{"review": "fine"}])
    with pytest.raises(TaskfitError, match=r"column 'text' not found.*review"):
        predict_file(classifier_run, other, tmp_path / "o.jsonl", Columns(label=None))
    assert not (tmp_path / "o.jsonl").exists() and not (tmp_path / "o.jsonl.partial").exists()
