"""PayPal through the real app: RSA-SHA256 over transmission id, time, webhook id and
the body's CRC32, with the certificate fetched from PAYPAL-CERT-URL through the
guarded client. The certificates come from a test CA made here with the
`cryptography` package and are served by a local server, allowlisted the way the
media tests allowlist theirs; the private key signs as PayPal's would."""
import base64
import datetime as dt
import json
import threading
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from payments.ledger import Payment
from payments.providers import paypal
from tests.helpers.workers import celery_of, process_as_worker
from tests.webhooks.test_hostile_payloads import HOSTILE, mutated, paths
from webapp.extensions import db
from webhooks.models import WebhookEvent

WEBHOOK_ID = "8PT597110X687430LKGECATA"
PAYPAL_NAME = "messageverificationcerts.paypal.com"


class CertServer:
    """Serves PEM files by path; a path may redirect elsewhere instead."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.redirects: dict[str, str] = {}
        self.hits: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                server.hits.append(self.path)
                if self.path in server.redirects:
                    self.send_response(302)
                    self.send_header("Location", server.redirects[self.path])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = server.files.get(self.path)
                self.send_response(200 if body else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


class LocalCA:
    """A root CA made here, as a public CA's would look to cryptography's verifier."""

    def __init__(self):
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = dt.datetime.now(dt.timezone.utc)
        public = self.key.public_key()
        self.cert = (
            x509.CertificateBuilder().subject_name(_name("Sluice Test Root"))
            .issuer_name(_name("Sluice Test Root")).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .sign(self.key, hashes.SHA256()))

    def issue(self, dns_name: str):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        now = dt.datetime.now(dt.timezone.utc)
        cert = (
            x509.CertificateBuilder().subject_name(_name(dns_name))
            .issuer_name(self.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=10))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(dns_name)]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=True,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256()))
        return key, cert


class Signer:
    """A CA whose root the source trusts, and a leaf certificate signing as PayPal's."""

    def __init__(self, tmp_path, name=PAYPAL_NAME, ca=None):
        self.ca = ca or LocalCA()
        self.key, leaf = self.ca.issue(name)
        self.chain = leaf.public_bytes(serialization.Encoding.PEM)
        self.root_file = tmp_path / f"root-{uuid.uuid4().hex}.pem"
        self.root_file.write_bytes(self.ca.cert.public_bytes(serialization.Encoding.PEM))

    def sign(self, body: bytes, cert_url: str, webhook_id=WEBHOOK_ID, when=None) -> dict:
        transmission_id = str(uuid.uuid4())
        sent = (when or dt.datetime.now(dt.timezone.utc)).strftime("%Y-%m-%dT%H:%M:%SZ")
        message = f"{transmission_id}|{sent}|{webhook_id}|{zlib.crc32(body) & 0xFFFFFFFF}"
        signature = self.key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())
        return {"PAYPAL-TRANSMISSION-ID": transmission_id, "PAYPAL-TRANSMISSION-TIME": sent,
                "PAYPAL-TRANSMISSION-SIG": base64.b64encode(signature).decode(),
                "PAYPAL-CERT-URL": cert_url, "PAYPAL-AUTH-ALGO": "SHA256withRSA",
                "Content-Type": "application/json"}


@pytest.fixture
def certs():
    server = CertServer()
    yield server
    server.close()


@pytest.fixture
def signer(tmp_path, certs):
    signer = Signer(tmp_path)
    certs.files["/v1/notifications/certs/CERT-1"] = signer.chain
    paypal.CERTIFICATES._keys.clear()
    return signer


@pytest.fixture
def app(make_app, signer, certs):
    app = make_app(WEBHOOK_SOURCES={"sources": {"paypal": {
        "scheme": "paypal", "webhook_id": WEBHOOK_ID, "paypal_cert_hosts": ["127.0.0.1"],
        "paypal_allow_http": True, "paypal_allowed_networks": ["127.0.0.1/32"],
        "paypal_ca_file": str(signer.root_file)}}})
    celery_of(app).loader.import_default_modules()
    return app


def capture(capture_id: str, event_type="PAYMENT.CAPTURE.COMPLETED") -> bytes:
    return json.dumps({"id": f"WH-{uuid.uuid4().hex[:20].upper()}", "event_version": "1.0",
                       "create_time": "2026-11-30T10:00:00.000Z", "resource_type": "capture",
                       "event_type": event_type, "summary": "Payment completed",
                       "resource": {"id": capture_id, "status": "COMPLETED",
                                    "amount": {"currency_code": "USD", "value": "100.50"},
                                    "payer": {"email_address": "buyer@example.com"}}}).encode()


def post(app, body: bytes, headers: dict):
    return app.test_client().post("/webhooks/paypal", data=body, headers=headers)


def stored(app) -> list[WebhookEvent]:
    with app.app_context():
        return list(db.session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))


def test_a_signed_delivery_is_stored_processed_and_its_certificate_kept(app, signer, certs):
    cert_url = f"{certs.url}/v1/notifications/certs/CERT-1"
    body = capture("2RG32219A8539453P")
    first = post(app, body, signer.sign(body, cert_url))
    assert first.status_code == 202, first.get_json()
    again = post(app, body, signer.sign(body, cert_url))  # PayPal's retry, signed anew
    assert again.get_json() == {"id": first.get_json()["id"], "status": "duplicate"}
    assert certs.hits == ["/v1/notifications/certs/CERT-1"]  # fetched once, then kept
    [event] = stored(app)
    assert event.trust == "signed" and event.event_type == "PAYMENT.CAPTURE.COMPLETED"
    assert process_as_worker(app, event.id) is False
    with app.app_context():
        payment = db.session.scalar(select(Payment))
        assert (payment.reference, payment.status, payment.amount, payment.currency) == (
            "2RG32219A8539453P", "succeeded", 10050, "USD")


def test_a_tampered_body_signature_or_webhook_id_is_refused(app, signer, certs):
    cert_url = f"{certs.url}/v1/notifications/certs/CERT-1"
    body = capture("CAP-1")
    headers = signer.sign(body, cert_url)
    assert post(app, body + b" ", headers).status_code == 401
    forged = dict(headers, **{"PAYPAL-TRANSMISSION-SIG": base64.b64encode(
        b"\x00" * 256).decode()})
    assert post(app, body, forged).status_code == 401
    other_webhook = signer.sign(body, cert_url, webhook_id="ANOTHER-WEBHOOK")
    assert post(app, body, other_webhook).status_code == 401
    stale = signer.sign(body, cert_url, when=dt.datetime.now(dt.timezone.utc)
                        - dt.timedelta(minutes=10))
    answer = post(app, body, stale)
    assert answer.get_json()["error"]["code"] == "timestamp_out_of_tolerance"
    missing = {k: v for k, v in headers.items() if k != "PAYPAL-CERT-URL"}
    assert post(app, body, missing).get_json()["error"]["code"] == "missing_signature"
    assert stored(app) == []


@pytest.mark.parametrize("case", ["host", "redirect", "untrusted root", "not paypal",
                                  "not a certificate", "404"])
def test_a_certificate_that_cannot_be_trusted_refuses_the_delivery(
        app, signer, certs, tmp_path, case):
    path = f"/v1/notifications/certs/{case.replace(' ', '-')}"
    cert_url, key_signer = f"{certs.url}{path}", signer
    if case == "host":  # a host outside paypal_cert_hosts: never fetched
        cert_url = "http://127.0.0.2:9/v1/notifications/certs/CERT-1"
    elif case == "redirect":  # to a host outside the allowlist
        certs.redirects[path] = "http://127.0.0.2:9/cert.pem"
    elif case == "untrusted root":
        key_signer = Signer(tmp_path)  # a CA the source does not trust
        certs.files[path] = key_signer.chain
    elif case == "not paypal":
        key_signer = Signer(tmp_path, name="hooks.example.com", ca=signer.ca)
        certs.files[path] = key_signer.chain
    elif case == "not a certificate":
        certs.files[path] = b"-----BEGIN CERTIFICATE-----\nnot base64\n"
    body = capture("CAP-2")
    answer = post(app, body, key_signer.sign(body, cert_url))
    assert answer.status_code == 401
    assert answer.get_json()["error"]["code"] == "invalid_signature"
    assert stored(app) == []
    assert "127.0.0.2" not in "".join(certs.hits)


def test_a_refund_moves_the_capture_it_names(app, signer, certs):
    cert_url = f"{certs.url}/v1/notifications/certs/CERT-1"
    refund = json.dumps({"id": "WH-REFUND-1", "event_type": "PAYMENT.CAPTURE.REFUNDED",
                         "create_time": "2026-11-30T11:00:00Z", "resource": {
                             "id": "1Y107995YT783435V", "status": "COMPLETED",
                             "amount": {"currency_code": "USD", "value": "100.50"},
                             "links": [{"rel": "up", "href": "https://api.paypal.com/v2/"
                                        "payments/captures/CAP-3"}]}}).encode()
    for body in (capture("CAP-3"), refund):
        assert post(app, body, signer.sign(body, cert_url)).status_code == 202
    for event in stored(app):
        process_as_worker(app, event.id)
    with app.app_context():
        payment = db.session.scalar(select(Payment))
        assert (payment.reference, payment.status, payment.amount) == ("CAP-3", "refunded",
                                                                       10050)


def test_the_console_says_a_paypal_test_must_come_from_paypal(app):
    from webapp.webhook_views import send_test_delivery

    with app.test_request_context():
        from tasks.app_state import sources

        status, answer = send_test_delivery(sources()["paypal"])
    assert status == 501 and answer["error"]["code"] == "cannot_sign"
    assert "Webhooks simulator" in answer["error"]["message"]


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_hostile_events_signed_by_paypal_never_500_never_loop(app, signer, certs, data):
    cert_url = f"{certs.url}/v1/notifications/certs/CERT-1"
    event = json.loads(capture(f"CAP-H{data.draw(st.integers(0, 10 ** 9))}"))
    path = data.draw(st.sampled_from(list(paths(event))), label="path")
    body = json.dumps(mutated(event, path, data.draw(HOSTILE, label="value"),
                              data.draw(st.booleans(), label="add"))).encode()
    before = len(stored(app))
    answer = post(app, body, signer.sign(body, cert_url))
    assert answer.status_code in (200, 202, 400), answer.get_data(as_text=True)
    if answer.status_code != 202:
        assert len(stored(app)) == before
        return
    event_id = answer.get_json()["id"]
    assert process_as_worker(app, event_id) is False
    with app.app_context():
        assert db.session.get(WebhookEvent, event_id).status in ("processed", "dead")
