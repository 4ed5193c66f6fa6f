"""One test per row of the router's error matrix (`classify`), on the exceptions the OpenAI client raises."""

from __future__ import annotations

import httpx
import openai
import pytest

from stepgraph.limiter import BudgetExceeded
from stepgraph.providers.matrix import RULES, Action, StreamError, classify

REQUEST = httpx.Request("POST", "http://provider/chat/completions")


def status_error(status: int, body: dict | None = None) -> openai.APIStatusError:
    response = httpx.Response(status, request=REQUEST)
    return openai.APIStatusError(f"HTTP {status}", response=response, body=body)


def test_an_error_that_is_not_the_providers_propagates() -> None:
    assert classify(BudgetExceeded("daily", 1.0, 1.0, 0.5)).action is Action.RAISE
    assert classify(ValueError("bug")).action is Action.RAISE


def test_429_waits() -> None:
    decision = classify(status_error(429))
    assert decision.action is Action.WAIT and decision.failure is not None and decision.failure.status == 429


def test_402_in_flight_budget_waits() -> None:
    body = {"error": {"message": "in flight", "metadata": {"limit_source": "openrouter_in_flight_budget"}}}
    assert classify(status_error(402, body)).action is Action.WAIT


def test_402_turns_paid_models_off() -> None:
    assert (
        classify(status_error(402, {"error": {"message": "Insufficient credits"}})).action is Action.PAID_OFF
    )


def test_401_rotates_the_key() -> None:
    assert classify(status_error(401)).action is Action.ROTATE_KEY


def test_400_context_length_goes_to_the_next_model() -> None:
    body = {"error": {"message": "context_length_exceeded: too many tokens"}}
    assert classify(status_error(400, body)).action is Action.NEXT_MODEL


@pytest.mark.parametrize(
    "body",
    [
        # OpenRouter's real wording has no `context_length` token.
        {
            "error": {
                "code": 400,
                "message": "This endpoint's maximum context length is 131072 tokens. However, you requested about 141607 tokens",
            }
        },
        # OpenAI/Groq carry it in `code` only.
        {
            "error": {
                "message": "Please reduce the length of the messages.",
                "code": "context_length_exceeded",
            }
        },
        {"error": {"message": "prompt is too long: 210000 tokens > 200000 maximum"}},
    ],
)
def test_context_overflow_is_read_from_wording_or_code(body: dict) -> None:
    assert classify(status_error(400, body)).action is Action.NEXT_MODEL


def test_langchains_own_context_overflow_class_is_read() -> None:
    from langchain_openai.chat_models.base import OpenAIContextOverflowError

    exc = OpenAIContextOverflowError("too long", response=httpx.Response(400, request=REQUEST), body=None)
    assert classify(exc).action is Action.NEXT_MODEL


def test_an_invalid_model_id_is_a_skip_not_a_stop() -> None:
    body = {"error": {"code": 400, "message": "openai/gpt-oss-999b is not a valid model ID"}}
    assert classify(status_error(400, body)).action is Action.SKIP_MODEL


def test_a_200_error_body_is_classified_like_its_code() -> None:
    from stepgraph.providers.matrix import ProviderBodyError

    assert classify(ProviderBodyError({"error": {"code": 429, "message": "rate"}})).action is Action.WAIT
    assert classify(ProviderBodyError({"error": {"code": 502, "message": "upstream"}})).action is Action.RETRY
    assert classify(
        ProviderBodyError({"error": {"code": 400, "message": "x is not a valid model ID"}})
    ).action is (Action.SKIP_MODEL)


@pytest.mark.parametrize("status", [400, 403])
def test_other_client_errors_are_fatal(status: int) -> None:
    decision = classify(status_error(status, {"error": {"message": "bad request"}}))
    assert decision.action is Action.FATAL and decision.failure is not None
    assert decision.failure.message == "bad request"


def test_404_goes_to_the_next_model() -> None:
    assert classify(status_error(404)).action is Action.NEXT_MODEL


@pytest.mark.parametrize(
    "exc",
    [
        status_error(408),
        status_error(500),
        status_error(502),
        status_error(503),
        openai.APITimeoutError(request=REQUEST),
        openai.APIConnectionError(request=REQUEST),
        openai.APIError("error event in the stream", request=REQUEST, body=None),
        StreamError("finish_reason=error"),
    ],
)
def test_transient_errors_retry(exc: BaseException) -> None:
    assert classify(exc).action is Action.RETRY


def test_every_rule_is_reachable_and_the_last_catches_all() -> None:
    # Each row must win for at least one exception above, else it is shadowed by an earlier row.
    samples = [
        status_error(429),
        status_error(402, {"error": {"metadata": {"limit_source": "openrouter_in_flight_budget"}}}),
        status_error(402),
        status_error(403, {"error": {"message": "Key limit exceeded (daily limit)"}}),
        status_error(401),
        status_error(400, {"error": {"message": "context_length"}}),
        status_error(400, {"error": {"message": "x/y is not a valid model ID"}}),
        status_error(403),
        status_error(404),
        status_error(500),
    ]
    winners = [classify(s).reason for s in samples]
    assert winners == [r.reason for r in RULES]
