"""Property tests (Hypothesis): parsers never crash, sanitised names stay safe, and no
sequence of events moves a payment or a WhatsApp message backwards."""
import datetime as dt
import itertools
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from werkzeug.datastructures import Headers

from documents.manifests import InvalidManifest, ManifestProblem, ManifestRow, read_manifest
from documents.sniffing import MAX_FILENAME, sanitize_filename
from payments.ledger import FORWARD, PAYMENT_STATUSES, Payment, PaymentUpdate, apply_update
from tests.imports import archives
from webapp.extensions import db
from webhooks.schemes import SignatureError, verify
from webhooks.sources import Source
from whatsapp import FINAL, STATUS_RANK, WhatsAppMessage, apply_notification

NOW = 1_700_000_000
HEADER_NAMES = {
    "stripe": ["Stripe-Signature"],
    "standard": ["webhook-id", "webhook-timestamp", "webhook-signature"],
    "paystack": ["x-paystack-signature"],
    "meta": ["X-Hub-Signature-256"],
    "hmac-sha256": ["X-Signature", "X-Timestamp"],
    "twilio": ["X-Twilio-Signature"],
}
# Header values as a server sees them: any byte but CR/LF (which end a header),
# decoded as latin-1 by werkzeug.
header_values = st.one_of(
    st.binary(max_size=200).map(lambda b: b.decode("latin-1").replace("\r", "")
                                .replace("\n", "")),
    st.from_regex(r"(t=-?\d{0,12},)?(v1=[0-9a-f]{0,70},?){0,3}", fullmatch=True),
    st.from_regex(r"(v1,[A-Za-z0-9+/=]{0,50} ?){0,3}", fullmatch=True),
    st.from_regex(r"sha256=[0-9a-fA-F]{0,70}", fullmatch=True),
)
SLOW = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("scheme", sorted(HEADER_NAMES))
@settings(max_examples=300, deadline=None)
@given(data=st.data(), body=st.binary(max_size=300))
def test_any_signature_headers_get_a_verdict_never_an_exception(scheme, data, body):
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" if scheme == "standard" else "secret"
    extra = {"options": {"timestamp_header": "X-Timestamp"}} if scheme == "hmac-sha256" else \
        {"options": {"public_url": "https://hooks.example/webhooks/s"}} if scheme == "twilio" \
        else {}
    source = Source(name="s", scheme=scheme, kind="payment", provider=scheme,
                    secrets=(secret.encode(),), **extra)
    headers = Headers()
    for name in HEADER_NAMES[scheme]:
        if data.draw(st.booleans(), label=f"send {name}"):
            headers[name] = data.draw(header_values, label=name)
    try:
        verify(source, headers, body, NOW)
    except SignatureError:
        pass  # a verdict: missing, invalid or stale


@given(name=st.one_of(st.none(), st.text(max_size=600),
                      st.binary(max_size=300).map(lambda b: b.decode("utf-8", "replace"))))
def test_sanitised_filenames_are_safe_bounded_and_stable(name):
    clean = sanitize_filename(name)
    assert 0 < len(clean) <= MAX_FILENAME
    assert "/" not in clean and "\\" not in clean and clean not in {".", ".."}
    assert not any(unicodedata.category(ch)[0] == "C" for ch in clean)
    assert sanitize_filename(clean) == clean


@settings(max_examples=200, deadline=None)
@given(content=st.binary(max_size=2000))
def test_any_bytes_as_a_csv_manifest_give_rows_or_invalid_manifest(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("m") / "m.csv"
    path.write_bytes(content)
    try:
        rows = list(read_manifest(path, "csv", 20000))
    except InvalidManifest:
        return
    numbers = [row.row_no for row in rows]
    assert numbers == sorted(set(numbers)) and all(n >= 2 for n in numbers)
    assert all(isinstance(row, (ManifestRow, ManifestProblem)) for row in rows)


@settings(max_examples=50, deadline=None)
@given(content=st.binary(max_size=500))
def test_any_bytes_as_an_xlsx_manifest_are_refused_cleanly(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("m") / "m.xlsx"
    path.write_bytes(content)
    with pytest.raises(InvalidManifest):
        list(read_manifest(path, "xlsx", 20000))


cells = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=40)


@settings(max_examples=100, deadline=None)
@given(rows=st.lists(st.fixed_dictionaries({"filename": cells, "title": cells}), max_size=15),
       bom=st.booleans())
def test_csv_manifests_round_trip_what_was_written(tmp_path_factory, rows, bom):
    path = tmp_path_factory.mktemp("m") / "m.csv"
    path.write_bytes(archives.csv_manifest(rows, bom=bom, columns=("filename", "title")))
    parsed = list(read_manifest(path, "csv", 20000))
    written = [r for r in rows if r["filename"].strip() or r["title"].strip()]
    assert len(parsed) == len(written)
    for row, item in zip(written, parsed):
        filename = unicodedata.normalize("NFC", row["filename"].strip()).removeprefix("./")
        if isinstance(item, ManifestRow):
            assert (item.filename, item.title) == (filename, row["title"].strip() or None)
        else:
            assert item.code == "invalid_row"


@pytest.fixture
def session(app):
    with app.app_context():
        yield db.session


references = itertools.count()


@SLOW
@given(events=st.lists(st.tuples(st.sampled_from(PAYMENT_STATUSES), st.integers(0, 5)),
                       min_size=1, max_size=8))
def test_no_sequence_of_events_moves_a_payment_backwards(session, events):
    reference = f"pi_prop_{next(references)}"
    seen = []
    for number, (status, minute) in enumerate(events):
        apply_update(session, PaymentUpdate(
            "stripe", reference, status, dt.datetime(2026, 1, 1, 0, minute, tzinfo=dt.timezone.utc),
            f"evt_{number}"))
        payment = session.scalar(select(Payment).where(Payment.reference == reference))
        seen.append((payment.status, payment.last_event_at))
    for (before, at_before), (after, at_after) in zip(seen, seen[1:]):
        assert after == before or after in FORWARD[before], (before, after)
        assert at_after >= at_before


@SLOW
@given(events=st.lists(st.tuples(st.sampled_from(sorted(STATUS_RANK)), st.integers(0, 5)),
                       min_size=1, max_size=8))
def test_no_sequence_of_statuses_moves_a_whatsapp_message_backwards(session, events):
    wamid = f"wamid.prop{next(references)}"
    seen = []
    for status, second in events:
        apply_notification(session, {"entry": [{"changes": [{"value": {"statuses": [
            {"id": wamid, "status": status, "timestamp": str(NOW + second),
             "recipient_id": "1555"}]}}]}]}, provider="meta")
        stored = session.scalar(select(WhatsAppMessage.status)
                                .where(WhatsAppMessage.wamid == wamid))
        if stored is not None:
            seen.append(stored)
    for before, after in zip(seen, seen[1:]):
        assert before not in FINAL or after == before
        assert STATUS_RANK[after] >= STATUS_RANK[before], (before, after)
