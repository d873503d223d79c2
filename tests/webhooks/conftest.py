import pytest

STRIPE_SECRET = "whsec_stripe_test_secret"
STRIPE_OLD_SECRET = "whsec_stripe_previous_secret"
PAYSTACK_SECRET = "sk_test_paystack"
META_SECRET = "meta_app_secret"
META_VERIFY_TOKEN = "verify-me-please"

SOURCES = {"sources": {
    "stripe": {"scheme": "stripe", "secrets_env": ["T_STRIPE", "T_STRIPE_OLD"],
               "rate_limit": "1000/minute", "max_body": "64KB"},
    "paystack": {"scheme": "paystack", "secrets_env": ["T_PAYSTACK"]},
    "whatsapp": {"scheme": "meta", "kind": "whatsapp", "secrets_env": ["T_META"],
                 "verify_token_env": "T_META_VERIFY"},
    "unconfigured": {"scheme": "paystack", "secrets_env": ["T_NOT_SET"]},
}}


@pytest.fixture
def webhook_env(monkeypatch):
    for name, value in {"T_STRIPE": STRIPE_SECRET, "T_STRIPE_OLD": STRIPE_OLD_SECRET,
                        "T_PAYSTACK": PAYSTACK_SECRET, "T_META": META_SECRET,
                        "T_META_VERIFY": META_VERIFY_TOKEN}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("T_NOT_SET", raising=False)


@pytest.fixture
def make_webhook_app(make_app, webhook_env):
    def factory(sources=None, **overrides):
        return make_app(WEBHOOK_SOURCES=sources or SOURCES, **overrides)
    return factory


@pytest.fixture
def app(make_webhook_app):
    return make_webhook_app()
