"""The credits poller against an OpenRouter-shaped fake (httpx.MockTransport, no sockets): the balance
from /credits, the key's cap as fallback, CreditsKnown, and free requests from the account's profile."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError
from hypothesis import given
from hypothesis import strategies as st

from stepgraph import metrics as names
from stepgraph.clock import FakeClock
from stepgraph.config import load_settings
from stepgraph.errors import ConfigError
from stepgraph.limiter import BudgetGuard, MemoryStore
from stepgraph.limiter.limits import Limit
from stepgraph.observability import MetricsEmitter
from stepgraph.providers.credits import day_limit, poll_all, publish_spent_today
from stepgraph.providers.keys import load_management_key
from stepgraph.providers.table import load_provider_table

API_KEY = "sk-or-v1-APIKEY-never-logged"
MGMT_KEY = "sk-or-v1-MGMT-never-logged"
BASE = "https://openrouter.test/api/v1"


def provider_table(profile: str = "openrouter-free", **extra: Any) -> str:
    spec = {
        "base_url": BASE,
        "limits_profile": profile,
        "keys_env": "OPENROUTER_API_KEY",
        "management_key_env": "OPENROUTER_MANAGEMENT_KEY",
        "attribution": True,
        "models": {"openai/gpt-oss-120b:free": {"free": True}},
        **extra,
    }
    return json.dumps({"providers": {"openrouter": spec}, "chain": ["openrouter:openai/gpt-oss-120b:free"]})


class FakeOpenRouter:
    """/key and /credits as OpenRouter answers them; counts every request."""

    def __init__(
        self,
        *,
        limit: float | None = None,
        total_credits: float = 25.0,
        total_usage: float = 7.25,
        free: dict[str, Any] | None = None,
        key_status: int = 200,
    ) -> None:
        self.limit, self.total_credits, self.total_usage = limit, total_credits, total_usage
        self.free, self.key_status = free, key_status
        self.requests: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/api/v1")
        self.requests.append(path)
        auth = request.headers.get("authorization", "").removeprefix("Bearer ")
        if path == "/credits":
            if auth != MGMT_KEY:
                return httpx.Response(
                    401, json={"error": {"code": 401, "message": "management key required"}}
                )
            data = {"total_credits": self.total_credits, "total_usage": self.total_usage}
            return httpx.Response(200, json={"data": data})
        if path == "/key":
            if auth != API_KEY or self.key_status != 200:
                return httpx.Response(self.key_status if auth == API_KEY else 401, json={"error": {}})
            data: dict[str, Any] = {
                "limit": self.limit,
                "limit_remaining": None if self.limit is None else self.limit - 1.5,
                "usage": 1.5,
                "usage_daily": 0.25,
                "is_free_tier": False,
            }
            if self.free is not None:
                data["free_model_daily_requests"] = self.free
            return httpx.Response(200, json={"data": data})
        return httpx.Response(404)


def run(
    fake: FakeOpenRouter,
    *,
    management: bool,
    profile: str = "openrouter-free",
    day_count: Any = None,
    learned: Any = None,
    overrides: str | None = None,
    table: str | None = None,
) -> tuple[dict[str, Any], MetricsEmitter]:
    env = {"OPENROUTER_API_KEY": f"main={API_KEY}"}
    if management:
        env["OPENROUTER_MANAGEMENT_KEY"] = MGMT_KEY
    settings = load_settings(providers=table or provider_table(profile), limits_overrides=overrides)
    emitter = MetricsEmitter()
    with httpx.Client(transport=httpx.MockTransport(fake)) as http:
        report = poll_all(
            settings, http=http, emitter=emitter, env=env, day_count=day_count, learned_day_limit=learned
        )
    return report, emitter


def values(emitter: MetricsEmitter, metric: str) -> list[float]:
    # The service-only series: the one stack-wide alarms read.
    return [v for m, v, dims in emitter.emitted if m == metric and set(dims) == {"service"}]


def test_an_uncapped_key_with_a_management_key_reports_the_account_balance() -> None:
    fake = FakeOpenRouter(limit=None, total_credits=25.0, total_usage=7.25)
    report, emitter = run(fake, management=True)
    assert values(emitter, names.CREDITS_REMAINING_USD) == [25.0 - 7.25]
    assert values(emitter, names.CREDITS_KNOWN) == [1]
    assert report["openrouter:main"]["credits_source"] == "credits"
    assert sorted(fake.requests) == ["/credits", "/key"]  # one of each per account, no retries


def test_an_overdrawn_account_reports_a_negative_balance() -> None:
    report, emitter = run(FakeOpenRouter(total_credits=10.0, total_usage=10.5), management=True)
    assert values(emitter, names.CREDITS_REMAINING_USD) == [-0.5]


def test_no_management_key_and_no_cap_emits_no_balance_and_credits_known_0(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake = FakeOpenRouter(limit=None)
    with caplog.at_level(logging.WARNING, logger="stepgraph.providers.credits"):
        report, emitter = run(fake, management=False)
    assert values(emitter, names.CREDITS_REMAINING_USD) == []
    assert values(emitter, names.CREDITS_KNOWN) == [0]
    assert report["openrouter:main"]["credits_remaining"] is None
    assert fake.requests == ["/key"]  # no /credits call without a management key
    unknown = [r for r in caplog.records if "balance unknown" in r.getMessage()]
    assert len(unknown) == 1 and "OPENROUTER_MANAGEMENT_KEY" in unknown[0].getMessage()


def test_the_unknown_balance_is_logged_once_per_run_not_once_per_account(
    caplog: pytest.LogCaptureFixture,
) -> None:
    spec = {"base_url": BASE, "keys_env": "OPENROUTER_API_KEY", "attribution": True, "models": {"m": {}}}
    table = json.dumps(
        {
            "providers": {"a": spec, "b": {**spec, "account": "second"}, "c": {**spec, "account": "third"}},
            "chain": ["a:m"],
        }
    )
    with caplog.at_level(logging.WARNING, logger="stepgraph.providers.credits"):
        report, emitter = run(FakeOpenRouter(), management=False, table=table)
    assert set(report) == {"a:main", "b:second", "c:third"}
    assert values(emitter, names.CREDITS_KNOWN) == [0, 0, 0]
    assert len([r for r in caplog.records if "balance unknown" in r.getMessage()]) == 1


def test_a_capped_key_without_a_management_key_falls_back_to_the_cap() -> None:
    report, emitter = run(FakeOpenRouter(limit=4.0), management=False)
    assert values(emitter, names.CREDITS_REMAINING_USD) == [2.5]
    assert values(emitter, names.CREDITS_KNOWN) == [1]
    assert report["openrouter:main"]["credits_source"] == "key_limit"


def test_the_balance_wins_over_the_cap_when_both_are_known() -> None:
    report, emitter = run(FakeOpenRouter(limit=4.0, total_credits=30.0, total_usage=0.0), management=True)
    assert values(emitter, names.CREDITS_REMAINING_USD) == [30.0]


def test_a_refused_management_key_falls_back_and_is_counted_as_an_error() -> None:
    fake = FakeOpenRouter(limit=None)
    env_key = "sk-or-v1-WRONG"
    settings = load_settings(providers=provider_table())
    emitter = MetricsEmitter()
    with httpx.Client(transport=httpx.MockTransport(fake)) as http:
        env = {"OPENROUTER_API_KEY": API_KEY, "OPENROUTER_MANAGEMENT_KEY": env_key}
        report = poll_all(settings, http=http, emitter=emitter, env=env)
    assert values(emitter, names.CREDITS_KNOWN) == [0]
    assert values(emitter, names.PROVIDER_ERRORS) == [1]
    assert env_key not in json.dumps(report)


def test_a_failed_poll_emits_no_credits_known_so_the_stopped_alarm_sees_a_gap() -> None:
    report, emitter = run(FakeOpenRouter(key_status=503), management=False)
    assert report == {"openrouter:main": {"error": "HTTPStatusError"}}
    assert values(emitter, names.CREDITS_KNOWN) == []
    assert values(emitter, names.PROVIDER_ERRORS) == [1]


def test_keys_appear_in_no_log_line_and_no_report(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        reports = [
            run(FakeOpenRouter(limit=lim), management=m)[0] for lim in (None, 3.0) for m in (True, False)
        ]
        reports.append(run(FakeOpenRouter(key_status=500), management=True)[0])
    text = caplog.text + json.dumps(reports)
    assert "balance unknown" in text  # the logs were captured
    assert API_KEY not in text and MGMT_KEY not in text and "never-logged" not in text


def test_each_account_is_polled_once_even_when_several_providers_share_it() -> None:
    spec = {
        "base_url": BASE,
        "keys_env": "OPENROUTER_API_KEY",
        "management_key_env": "OPENROUTER_MANAGEMENT_KEY",
        "attribution": True,
        "models": {"m": {}},
    }
    table = json.dumps({"providers": {"a": spec, "b": dict(spec)}, "chain": ["a:m"]})
    fake = FakeOpenRouter()
    report, emitter = run(fake, management=True, table=table)
    assert list(report) == ["a:main"]
    assert sorted(fake.requests) == ["/credits", "/key"]
    assert values(emitter, names.CREDITS_KNOWN) == [1]


# -- free requests left ------------------------------------------------------------------------------


def test_the_api_count_wins_when_the_provider_gives_it() -> None:
    free = {"limit": 1000, "remaining": 123, "used": 877}
    report, emitter = run(FakeOpenRouter(free=free), management=False, day_count=lambda key, lim: 5)
    assert values(emitter, names.FREE_REQUESTS_REMAINING) == [123]
    assert report["openrouter:main"]["free_source"] == "api"


@given(used=st.integers(min_value=0, max_value=1200))
def test_the_1000_a_day_profile_never_reads_0_left_after_50(used: int) -> None:
    seen: list[tuple[str, Limit]] = []

    def day_count(key: str, limit: Limit) -> int:
        seen.append((key, limit))
        return used

    report, emitter = run(
        FakeOpenRouter(), management=False, profile="openrouter-free-1000", day_count=day_count
    )
    assert values(emitter, names.FREE_REQUESTS_REMAINING) == [max(0, 1000 - used)]
    assert report["openrouter:main"]["free_source"] == "limiter"
    # The limiter's own counter: the account's limiter key and its utc_day limit.
    assert seen == [("openrouter:main", Limit("rpd", 1000, 86_400, "utc_day"))]


def test_the_50_a_day_profile_counts_down_from_50() -> None:
    _, emitter = run(
        FakeOpenRouter(), management=False, profile="openrouter-free", day_count=lambda k, lim: 12
    )
    assert values(emitter, names.FREE_REQUESTS_REMAINING) == [38]


def test_limits_overrides_of_the_primary_provider_apply_as_in_graph_step() -> None:
    overrides = json.dumps({"rpd": {"capacity": 400}, "tpm": {"capacity": 9}})
    _, emitter = run(FakeOpenRouter(), management=False, day_count=lambda k, lim: 100, overrides=overrides)
    assert values(emitter, names.FREE_REQUESTS_REMAINING) == [300]


def test_a_learned_lower_day_limit_lowers_what_is_left() -> None:
    _, emitter = run(
        FakeOpenRouter(),
        management=False,
        profile="openrouter-free-1000",
        day_count=lambda k, lim: 100,
        learned=lambda key: 600 if key == "openrouter:main" else None,
    )
    assert values(emitter, names.FREE_REQUESTS_REMAINING) == [500]


def test_a_profile_without_a_day_limit_reports_no_free_requests() -> None:
    report, emitter = run(
        FakeOpenRouter(), management=False, profile="openrouter-paid", day_count=lambda k, lim: 3
    )
    assert values(emitter, names.FREE_REQUESTS_REMAINING) == []
    assert report["openrouter:main"]["free_remaining"] is None


def test_day_limit_picks_the_request_counter_of_the_profile() -> None:
    spec = load_provider_table(provider_table("openrouter-free-1000"), env={}).providers["openrouter"]
    assert day_limit(spec) == Limit("rpd", 1000, 86_400, "utc_day")
    assert day_limit(spec, {"rpd": {"capacity": 70}}) == Limit("rpd", 70, 86_400, "utc_day")


# -- the budget guard's day ------------------------------------------------------------------------


def test_spent_today_is_the_budget_guards_utc_day_counter() -> None:
    clock = FakeClock(start=1_764_547_200.0 + 86_400 - 60)  # 23:59 UTC
    guard = BudgetGuard("t", "spend", daily_cap_usd=5.0, store=MemoryStore(), clock=clock)
    guard.reserve(1.25)
    emitter = MetricsEmitter()
    assert publish_spent_today(guard, emitter) == 1.25
    clock.advance(120)  # past midnight UTC: a new day, as the cap counts it
    assert publish_spent_today(guard, emitter) == 0.0
    assert values(emitter, names.SPENT_TODAY_USD) == [1.25, 0.0]


def test_an_unreadable_budget_counter_publishes_nothing() -> None:
    class Broken:
        def spent_today_usd(self) -> float:
            raise ConnectionError("table unreachable")

    emitter = MetricsEmitter()
    assert publish_spent_today(Broken(), emitter) is None
    assert emitter.emitted == []


# -- the management key ------------------------------------------------------------------------------


class FakeSecrets:
    def __init__(self, value: str | None = None, error: str | None = None) -> None:
        self.value, self.error = value, error

    def get_secret_value(self, SecretId: str) -> dict[str, Any]:
        if self.error:
            raise ClientError({"Error": {"Code": self.error, "Message": "no"}}, "GetSecretValue")
        return {"SecretString": self.value}


def test_the_management_key_comes_from_its_env_var_or_its_secret() -> None:
    spec = load_provider_table(env={}).providers["openrouter"]
    assert spec.management_key_env == "OPENROUTER_MANAGEMENT_KEY"
    assert spec.management_secret_id == "stepgraph/providers/openrouter-management"
    assert load_management_key("openrouter", spec, env={"OPENROUTER_MANAGEMENT_KEY": " k1 "}) == "k1"
    secret = FakeSecrets(json.dumps({"key": "k2"}))
    assert load_management_key("openrouter", spec, secrets_client=secret, env={}) == "k2"
    # The stack creates the secret empty; an older stack has none: both mean "no management key".
    empty = FakeSecrets(json.dumps({"key": ""}))
    assert load_management_key("openrouter", spec, secrets_client=empty, env={}) is None
    missing = FakeSecrets(error="ResourceNotFoundException")
    assert load_management_key("openrouter", spec, secrets_client=missing, env={}) is None
    assert load_management_key("openrouter", spec, env={}) is None


def test_an_unreadable_management_secret_is_a_one_line_error_without_the_value() -> None:
    spec = load_provider_table(env={}).providers["openrouter"]
    with pytest.raises(ConfigError, match="AccessDeniedException") as denied:
        load_management_key(
            "openrouter", spec, secrets_client=FakeSecrets(error="AccessDeniedException"), env={}
        )
    assert "stepgraph/providers/openrouter-management" in str(denied.value)
    with pytest.raises(ConfigError, match="must be a string") as bad:
        load_management_key("openrouter", spec, secrets_client=FakeSecrets('{"key": ["sk-x"]}'), env={})
    assert "sk-x" not in str(bad.value)
