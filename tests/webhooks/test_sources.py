"""Sources are built from the scheme and provider registries; whatever is wrong with
one is a startup error that names it, never a silent default."""
import time

import pytest

from store.signatures import Scheme, key_by_body_hash, type_from_json_field
from tests.webhooks import signing
from webapp.config import ConfigError
from webhooks.schemes import SCHEMES
from webhooks.sources import SourceConfigError, load_sources


def sources(**table) -> dict:
    return {"sources": {"s": table}}


@pytest.mark.parametrize("table, message", [
    ({"scheme": "carrier-pigeon"}, "scheme must be one of stripe, paystack, "),
    ({"scheme": "standard"}, "a payment source needs provider = one of stripe, paystack"),
    ({"scheme": "standard", "provider": "venmo"}, "needs provider = one of"),
    ({"scheme": "stripe", "kind": "sms"}, "kind must be one of payment, whatsapp, generic"),
    ({"scheme": "stripe", "max_body": "lots"}, "not a size"),
    ({"scheme": "stripe", "tolerance": "soon"}, "source s: invalid literal"),
    ({"scheme": "stripe", "signature_header": "X-Sig"}, "unknown keys signature_header"),
    ({"scheme": "hmac-sha256", "provider": "stripe", "signature_encoding": "rot13"},
     "signature_encoding must be hex or base64"),
    ({"scheme": "hmac-sha256", "provider": "stripe", "event_key_header": 7},
     "event_key_header must be a string"),
])
def test_a_source_that_cannot_work_is_refused_by_name(table, message):
    with pytest.raises(SourceConfigError, match=message):
        load_sources(sources(**table), {})


def test_a_source_takes_its_kind_and_provider_from_its_scheme_unless_it_says():
    loaded = load_sources({"sources": {
        "stripe-eu": {"scheme": "stripe"},
        "orders": {"scheme": "standard", "provider": "paystack"},
        "whatsapp": {"scheme": "meta"},
        "shop": {"scheme": "hmac-sha256", "provider": "stripe",
                 "signature_prefix": "sha256=", "event_key_header": "X-Event-Id"},
    }}, {})
    assert (loaded["stripe-eu"].kind, loaded["stripe-eu"].provider) == ("payment", "stripe")
    assert (loaded["orders"].kind, loaded["orders"].provider) == ("payment", "paystack")
    assert (loaded["whatsapp"].kind, loaded["whatsapp"].provider) == ("whatsapp", "meta")
    assert loaded["shop"].options == {
        "signature_header": "X-Signature", "signature_encoding": "hex",
        "signature_prefix": "sha256=", "timestamp_header": None,
        "event_key_header": "X-Event-Id"}


def test_a_scheme_cannot_be_declared_without_an_event_key_rule():
    with pytest.raises(TypeError, match="event_key must be a rule"):
        Scheme("silent", verify=lambda *a: None, event_key=None,
               event_type=type_from_json_field("type"))
    with pytest.raises(TypeError):
        Scheme("silent", verify=lambda *a: None, event_type=type_from_json_field("type"))
    assert all(callable(s.event_key) for s in SCHEMES.values())
    assert SCHEMES["paystack"].event_key is key_by_body_hash  # declared, not a fallback


def test_the_app_reports_a_bad_sources_file_as_a_config_error(app_config, tmp_path):
    from webapp import create_app

    path = tmp_path / "sources.toml"
    path.write_text('[sources.stripe]\nscheme = "stripe"\nsecret = "oops"\n')
    with pytest.raises(ConfigError, match=f"{path}: source stripe: unknown keys secret"):
        create_app({**app_config, "SLUICE_SOURCES_FILE": str(path)})


GENERIC_SECRET = "shop_secret"


@pytest.fixture
def shop_client(make_app, monkeypatch):
    monkeypatch.setenv("T_SHOP", GENERIC_SECRET)
    app = make_app(WEBHOOK_SOURCES={"sources": {"shop": {
        "scheme": "hmac-sha256", "provider": "stripe", "secrets_env": "T_SHOP",
        "signature_encoding": "base64", "timestamp_header": "X-Timestamp",
        "event_key_header": "X-Event-Id"}}})
    return app.test_client()


def test_a_sender_that_promised_an_event_id_header_must_send_it(shop_client):
    body = b'{"type": "order.paid"}'
    headers = signing.generic_headers(body, GENERIC_SECRET, int(time.time()))
    missing = shop_client.post("/webhooks/shop", data=body, headers=headers)
    assert missing.status_code == 400
    assert missing.get_json()["error"]["code"] == "invalid_payload"
    assert "X-Event-Id" in missing.get_json()["error"]["message"]
    first = shop_client.post("/webhooks/shop", data=body,
                             headers={**headers, "X-Event-Id": "ord_1"})
    again = shop_client.post("/webhooks/shop", data=body,
                             headers={**headers, "X-Event-Id": "ord_1"})
    other = shop_client.post("/webhooks/shop", data=body,
                             headers={**headers, "X-Event-Id": "ord_2"})
    assert (first.status_code, again.status_code, other.status_code) == (202, 200, 202)
    assert again.get_json()["id"] == first.get_json()["id"] != other.get_json()["id"]
