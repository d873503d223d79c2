"""The budgets webhook deliveries spend (webapp/rate_limits.py), on a real Redis that
stops and comes back, and flask-limiter's route limits beside them."""
import redis
from prometheus_client import REGISTRY

from tests.services import ThrowawayRedis, wait_for
from tests.webhooks.test_ingest_api import limited_sources, post_stripe, stripe_event
from webapp import create_app, rate_limits


def fallback_count() -> float:
    return REGISTRY.get_sample_value("sluice_rate_limit_fallback_total") or 0.0


def test_the_source_quota_is_shared_by_every_process_through_redis(
        make_webhook_app, app_config, redis_db):
    sources = limited_sources("3/minute")
    one = make_webhook_app(sources).test_client()
    # another process: an app of its own, with a budget of its own and nothing spent
    # in it (it never reaches the database, so it needs no test transaction)
    other_app = create_app({**app_config, "WEBHOOK_SOURCES": sources})
    assert [post_stripe(one, stripe_event()).status_code for _ in range(3)] == [202] * 3
    try:
        assert post_stripe(other_app.test_client(), stripe_event()).status_code == 429
    finally:
        other_app.extensions["sluice.db"].engine.dispose()


def test_the_quota_returns_to_redis_once_redis_is_back(
        make_webhook_app, tmp_path, monkeypatch):
    monkeypatch.setattr(rate_limits, "RECHECK_SECONDS", 0.2)
    limits_redis = ThrowawayRedis(tmp_path / "limits")  # not started yet
    client = make_webhook_app(limited_sources("3/minute"),
                              RATELIMIT_STORAGE_URI=limits_redis.url).test_client()
    before = fallback_count()
    assert [post_stripe(client, stripe_event()).status_code for _ in range(2)] == [202, 202]
    assert fallback_count() - before == 2  # from memory, and counted once per request
    limits_redis.start()
    try:
        wait_for(lambda: post_stripe(client, stripe_event()).status_code == 202
                 and redis.Redis.from_url(limits_redis.url).keys("*webhook-source*"),
                 timeout=5, what="the quota back on Redis")
        counted = fallback_count()
        # Redis starts from nothing: one spent there already, two left, then 429
        assert [post_stripe(client, stripe_event()).status_code
                for _ in range(3)] == [202, 202, 429]
        assert fallback_count() == counted
    finally:
        limits_redis.stop()


def test_a_configured_default_limit_still_applies_to_every_route(make_app):
    # Sluice configures none; an operator who sets one must still get it.
    client = make_app(RATELIMIT_DEFAULT="2/minute").test_client()
    statuses = [client.get("/livez").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert client.get("/livez").get_json()["error"]["code"] == "rate_limited"
