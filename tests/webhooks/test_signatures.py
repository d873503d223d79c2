"""Each scheme against vectors computed by openssl, not by the code under test, and
against the providers' own SDKs where one verifies (stripe, razorpay, squareup)."""
import base64
import hashlib
import hmac

import pytest
import razorpay
import stripe
from square.utils.webhooks_helper import verify_signature as square_verify
from werkzeug.datastructures import Headers

from tests.webhooks import signing
from webhooks.schemes import SCHEMES, SignatureError, verify
from webhooks.sources import Source, load_sources

T = 1700000000
STRIPE_SECRET = "whsec_test_secret_for_vectors"
STRIPE_BODY = (b'{"id":"evt_vec_1","type":"payment_intent.succeeded","created":1700000000,'
               b'"data":{"object":{"id":"pi_vec_1","amount":2000,"currency":"usd"}}}')
# printf '%s' "1700000000.$BODY" | openssl dgst -sha256 -hmac "$SECRET"
STRIPE_SIG = "0f0c3f98554a907fb77a2345b8461a363c7a398d905779bed54ac08da19fed94"

# The Standard Webhooks specification's own example.
STANDARD_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
STANDARD_ID, STANDARD_T = "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330
STANDARD_BODY = b'{"test": 2432232314}'
STANDARD_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

PAYSTACK_SECRET = "sk_test_vectors"
PAYSTACK_BODY = (b'{"event":"charge.success","data":{"id":1,"reference":"ref_vec_1",'
                 b'"amount":5000,"currency":"NGN"}}')
# printf '%s' "$BODY" | openssl dgst -sha512 -hmac "$SECRET"
PAYSTACK_SIG = ("22939d5eed0c5de0c2234fd9a19d574766568db5fa60ab5ddce5b6a0cbb7be08"
                "047b0f6d29e252f4596d33164d18633c031ed7dcba1321dc75225de72c53cde4")

META_SECRET = "meta_app_secret_vectors"
META_BODY = b'{"object":"whatsapp_business_account","entry":[]}'
META_SIG = "sha256=ef0f0f1a215ced99887330de5b6a5cdbe739a9bc26a325a3caaecf1e9debf479"

GENERIC_SECRET = "generic_secret"
GENERIC_BODY = b'{"type":"order.paid","id":"ord_1"}'
# printf '%s' "1700000000.$BODY" | openssl dgst -sha256 -hmac "$SECRET" -binary | base64
GENERIC_SIG = "la8kX3OUTJPHBUvFFKSXeWRMGRcPPj54LvZVcK8lsvU="

RAZORPAY_SECRET = "rzp_webhook_secret"
RAZORPAY_BODY = (b'{"entity":"event","event":"payment.captured","payload":{"payment":{"entity":'
                 b'{"id":"pay_vec_1","amount":50000,"currency":"INR","status":"captured"}}},'
                 b'"created_at":1700000000}')
# printf '%s' "$BODY" | openssl dgst -sha256 -hmac "$SECRET"
RAZORPAY_SIG = "94c6e204535de007463e468d41f746f5788ddd892b7d407b664f9521cd077608"

SQUARE_KEY, SQUARE_URL = "square_sig_key", "https://hooks.example.com/webhooks/square"
SQUARE_BODY = (b'{"merchant_id":"M1","type":"payment.updated","event_id":"sq_evt_vec_1",'
               b'"created_at":"2023-11-14T22:13:20Z","data":{"type":"payment","id":"sq_pay_1",'
               b'"object":{"payment":{"id":"sq_pay_1","status":"COMPLETED","amount_money":'
               b'{"amount":1500,"currency":"USD"}}}}}')
# printf '%s' "$URL$BODY" | openssl dgst -sha256 -hmac "$KEY" -binary | base64
SQUARE_SIG = "tvH4DZiQOyIHXB2JhFsIdelLDgKHMdgT6UN0RoDQkvo="

GITHUB_SECRET, GITHUB_BODY = "github_secret", b'{"action":"opened","number":1}'
GITHUB_SIG = "sha256=6ca7de239adc813a8adfdb50b580ecca196d5dd42e74d743e47ec10de04fae56"
SHOPIFY_SECRET = "shopify_secret"
SHOPIFY_BODY = b'{"id":820982911946154500,"email":"jon@example.com"}'
SHOPIFY_SIG = "ikeqhK0yII9omi1UK1bEtLR1jGUdEklT/+C3m0uZ7+M="


def source(scheme: str, *secrets: str, **options) -> Source:
    if not options:  # a scheme's own keys, as a source's TOML table would give them
        options = SCHEMES[scheme].parse_options(
            {"public_url": SQUARE_URL} if scheme == "square" else {})
    return Source(name="s", scheme=scheme, kind="payment", provider=scheme,
                  secrets=tuple(s.encode() for s in secrets), options=options)


GENERIC = dict(signature_header="X-Signature", signature_encoding="base64",
               timestamp_header="X-Timestamp")

CASES = {
    "stripe": (source("stripe", STRIPE_SECRET), STRIPE_BODY,
               {"Stripe-Signature": f"t={T},v1={STRIPE_SIG}"}, T),
    "standard": (source("standard", STANDARD_SECRET), STANDARD_BODY,
                 {"webhook-id": STANDARD_ID, "webhook-timestamp": str(STANDARD_T),
                  "webhook-signature": STANDARD_SIG}, STANDARD_T),
    "paystack": (source("paystack", PAYSTACK_SECRET), PAYSTACK_BODY,
                 {"x-paystack-signature": PAYSTACK_SIG}, T),
    "meta": (source("meta", META_SECRET), META_BODY, {"X-Hub-Signature-256": META_SIG}, T),
    "hmac-sha256": (source("hmac-sha256", GENERIC_SECRET, **GENERIC), GENERIC_BODY,
                    {"X-Signature": GENERIC_SIG, "X-Timestamp": str(T)}, T),
    "razorpay": (source("razorpay", RAZORPAY_SECRET), RAZORPAY_BODY,
                 {"X-Razorpay-Signature": RAZORPAY_SIG}, T),
    "square": (source("square", SQUARE_KEY), SQUARE_BODY,
               {"x-square-hmacsha256-signature": SQUARE_SIG}, T),
    "github": (source("github", GITHUB_SECRET), GITHUB_BODY,
               {"X-Hub-Signature-256": GITHUB_SIG}, T),
    "shopify": (source("shopify", SHOPIFY_SECRET), SHOPIFY_BODY,
                {"X-Shopify-Hmac-Sha256": SHOPIFY_SIG}, T),
}
SIGNATURE_HEADERS = {"stripe": "Stripe-Signature", "standard": "webhook-signature",
                     "paystack": "x-paystack-signature", "meta": "X-Hub-Signature-256",
                     "hmac-sha256": "X-Signature", "razorpay": "X-Razorpay-Signature",
                     "square": "x-square-hmacsha256-signature",
                     "github": "X-Hub-Signature-256", "shopify": "X-Shopify-Hmac-Sha256"}


def code_of(src, headers, body, now) -> str | None:
    try:
        verify(src, Headers(headers), body, now)
    except SignatureError as exc:
        return exc.code
    return None


@pytest.mark.parametrize("scheme", CASES)
def test_the_vector_verifies(scheme):
    src, body, headers, now = CASES[scheme]
    assert code_of(src, headers, body, now) is None


@pytest.mark.parametrize("scheme", CASES)
def test_a_tampered_body_is_refused(scheme):
    src, body, headers, now = CASES[scheme]
    assert code_of(src, headers, body + b" ", now) == "invalid_signature"


@pytest.mark.parametrize("scheme", CASES)
def test_missing_headers_say_so(scheme):
    src, body, _headers, now = CASES[scheme]
    assert code_of(src, {}, body, now) == "missing_signature"


@pytest.mark.parametrize("scheme", CASES)
def test_a_source_without_a_secret_refuses_everything(scheme):
    src, body, headers, now = CASES[scheme]
    empty = Source(**{**src.__dict__, "secrets": ()})
    assert code_of(empty, headers, body, now) == "invalid_signature"


@pytest.mark.parametrize("scheme", CASES)
def test_rotation_any_configured_secret_may_match(scheme):
    src, body, headers, now = CASES[scheme]
    rotated = Source(**{**src.__dict__, "secrets": (b"the-new-secret",) + src.secrets})
    assert code_of(rotated, headers, body, now) is None
    only_new = Source(**{**src.__dict__, "secrets": (b"the-new-secret",)})
    assert code_of(only_new, headers, body, now) == "invalid_signature"


@pytest.mark.parametrize("scheme", ["stripe", "standard", "hmac-sha256"])
@pytest.mark.parametrize("skew", [-301, 301])
def test_old_and_future_timestamps_are_refused(scheme, skew):
    src, body, headers, now = CASES[scheme]
    assert code_of(src, headers, body, now + skew) == "timestamp_out_of_tolerance"
    assert code_of(src, headers, body, now + skew - (1 if skew > 0 else -1)) is None


def test_stripe_any_v1_entry_may_match_and_the_official_library_agrees():
    src, body, _headers, now = CASES["stripe"]
    header = f"t={T},v1={'0' * 64},v0=abc,v1={STRIPE_SIG}"
    assert code_of(src, {"Stripe-Signature": header}, body, now) is None
    signed = signing.stripe_headers(body, STRIPE_SECRET, timestamp=T)["Stripe-Signature"]
    assert signed == f"t={T},v1={STRIPE_SIG}"
    stripe.WebhookSignature.verify_header(body.decode(), signed, STRIPE_SECRET,
                                          tolerance=None)


def test_stripe_uses_the_whsec_string_itself_and_standard_decodes_it():
    # The same secret text means different keys in the two schemes (Stripe uses whsec_ raw,
    # Standard Webhooks base64-decodes what follows it).
    src = source("standard", STRIPE_SECRET)
    assert code_of(src, {"webhook-id": "m", "webhook-timestamp": str(T),
                         "webhook-signature": f"v1,{STRIPE_SIG}"}, STRIPE_BODY, T) \
        == "invalid_signature"
    headers = signing.standard_headers(STANDARD_BODY, STANDARD_SECRET, STANDARD_ID,
                                       timestamp=STANDARD_T)
    assert headers["webhook-signature"] == STANDARD_SIG


def test_a_delivery_signed_for_another_scheme_is_refused():
    _src, body, headers, now = CASES["stripe"]
    for other in ("paystack", "meta", "standard"):
        assert code_of(CASES[other][0], headers, body, now) == "missing_signature"
    sha1 = {"X-Hub-Signature-256": META_SIG.replace("sha256=", "sha1=")}
    assert code_of(CASES["meta"][0], sha1, META_BODY, T) == "invalid_signature"


@pytest.mark.parametrize("header", [
    "t=,v1=", "t=abc,v1=zz", "t=\u0661\u0662\u0663,v1=00", "v1=" + "a" * 10000, ",,,,=",
    "t=99999999999999999999,v1=00", "t=1700000000,v1=\u00e9\u00e9", "\x00\x01",
])
def test_garbage_headers_get_a_verdict_not_an_exception(header):
    for scheme, (src, body, _h, now) in CASES.items():
        headers = {SIGNATURE_HEADERS[scheme]: header, "webhook-id": header,
                   "webhook-timestamp": header, "X-Timestamp": header}
        assert code_of(src, headers, body, now) in {
            "invalid_signature", "missing_signature", "timestamp_out_of_tolerance"}


def test_razorpay_the_official_library_agrees_on_the_vector_and_on_a_tampered_body():
    utility = razorpay.Client(auth=("key", "secret")).utility
    assert utility.verify_webhook_signature(RAZORPAY_BODY.decode(), RAZORPAY_SIG,
                                            RAZORPAY_SECRET)
    with pytest.raises(razorpay.errors.SignatureVerificationError):
        utility.verify_webhook_signature(RAZORPAY_BODY.decode() + " ", RAZORPAY_SIG,
                                         RAZORPAY_SECRET)
    # and what Sluice's own test delivery signs, the library verifies
    body, headers = SCHEMES["razorpay"].test_delivery(CASES["razorpay"][0], "", T)
    assert utility.verify_webhook_signature(body.decode(), headers["X-Razorpay-Signature"],
                                            RAZORPAY_SECRET)


def test_square_signs_the_notification_url_and_the_official_helper_agrees():
    assert square_verify(request_body=SQUARE_BODY.decode(), signature_header=SQUARE_SIG,
                         signature_key=SQUARE_KEY, notification_url=SQUARE_URL)
    body, headers = SCHEMES["square"].test_delivery(CASES["square"][0], SQUARE_URL, T)
    assert square_verify(request_body=body.decode(),
                         signature_header=headers["x-square-hmacsha256-signature"],
                         signature_key=SQUARE_KEY, notification_url=SQUARE_URL)
    # the same body signed for another URL (a sender that chose the Host header) fails
    elsewhere = base64.b64encode(hmac.new(SQUARE_KEY.encode(),
                                          b"https://evil.example/hook" + SQUARE_BODY,
                                          hashlib.sha256).digest()).decode()
    assert code_of(CASES["square"][0], {"x-square-hmacsha256-signature": elsewhere},
                   SQUARE_BODY, T) == "invalid_signature"


@pytest.mark.parametrize("scheme, keys", [
    ("github", {}), ("shopify", {}),
    ("square", {"public_url": "ftp://x"}), ("square", {}),
    ("github", {"signature_header": "X-Other"}),
])
def test_presets_need_only_a_secret_and_refuse_keys_they_fix(scheme, keys):
    table = {"s": {"scheme": scheme, "secrets_env": "S", **keys}}
    if scheme in ("github", "shopify") and not keys:
        loaded = load_sources({"sources": table}, {"S": "x"})["s"]
        assert loaded.kind == "generic" and loaded.provider == scheme
        return
    with pytest.raises(ValueError):
        load_sources({"sources": table}, {"S": "x"})
