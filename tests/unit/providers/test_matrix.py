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
        status_error(401),
        status_error(400, {"error": {"message": "context_length"}}),
        status_error(403),
        status_error(404),
        status_error(500),
    ]
    winners = [classify(s).reason for s in samples]
    assert winners == [r.reason for r in RULES]
