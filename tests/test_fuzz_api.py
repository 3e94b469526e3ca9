"""Fuzzing the HTTP API from its own OpenAPI schema (issue 19): schemathesis (hypothesis underneath) sends
schema-shaped and malformed requests to a served tiny classifier and a tiny generator on loopback. No answer
is a 500, every 4xx carries the JSON error body ``{"error": {"message", "type", ...}}``, and /health still
answers 200 afterwards. Bounded: 80 requests per test and served run, no deadline (a loaded CI machine).
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from taskfit.serving.predictor import Predictor  # noqa: E402
from tests.test_serving import classifier_run, generator_run, serving  # noqa: E402, F401 (fixtures)

KEY = "fuzz-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
LIMITS = {"api_key": KEY, "max_inputs": 8, "max_text_chars": 400, "max_new_tokens": 8, "timeout_s": 30}
FUZZ = settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


@pytest.fixture(scope="module", params=["classifier", "generator"])
def served(request):
    run = request.getfixturevalue(f"{request.param}_run")
    with serving(Predictor.load(run), **LIMITS) as url:
        yield url


def _operations(url: str) -> list:
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json", headers=AUTH, timeout=30)
    return [result.ok() for result in schema.get_all_operations()]


def _cases(url: str):
    """Requests for every operation of the served schema: valid ones and ones that break it (negative)."""
    modes = list(schemathesis.GenerationMode)
    return st.one_of([op.as_strategy(generation_mode=mode) for op in _operations(url) for mode in modes])


def check(response) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if 400 <= response.status_code < 500:
        error = response.json()["error"]
        assert isinstance(error["message"], str) and error["message"] and error["type"], response.text[:500]


# schemathesis' own pytest integration (from_fixture) fails under pytest 9 ('Function' has no '_nodeid'):
# its hypothesis strategies are driven directly instead


def test_no_request_gets_a_500_and_every_4xx_has_the_json_error_body(served):
    @FUZZ
    @given(case=_cases(served))
    def fuzz(case):
        check(case.call(base_url=served, headers=AUTH, timeout=60))

    fuzz()


def test_without_the_key_every_request_but_health_is_a_json_401(served):
    @FUZZ
    @given(case=_cases(served))
    def fuzz(case):
        response = case.call(base_url=served, timeout=60)
        if case.path == "/health":
            assert response.status_code == 200
        else:
            assert response.status_code == 401, (case.path, response.status_code, response.text[:300])
            check(response)

    fuzz()


def test_health_is_still_200_after_the_fuzzing(served):
    import httpx

    assert httpx.get(f"{served}/health", timeout=10).json()["status"] == "ok"


def test_an_empty_prompt_is_a_422_not_a_500(generator_run):  # noqa: F811 (the imported fixture)
    import httpx

    with serving(Predictor.load(generator_run), **LIMITS) as url:
        for prompt in ("", [""], ["good movie", ""]):
            response = httpx.post(
                f"{url}/v1/completions", json={"prompt": prompt, "max_tokens": 2}, headers=AUTH, timeout=30
            )
            assert response.status_code == 422, (prompt, response.text)
            assert response.json()["error"]["param"] == "prompt"
