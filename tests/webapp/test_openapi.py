"""The OpenAPI document (webapp/openapi.yaml) and the app agree.

- The document lists exactly the routes of the Flask URL map, method by method.
- schemathesis generates requests from the document for every operation and runs
  them through the app (a real database and Redis): no 5xx, and every answer's
  status, content type, headers and body match what the document promises.
"""
from __future__ import annotations

import io
import re

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from tests.documents import files
from tests.webhooks.conftest import SOURCES
from webapp.auth import KNOWN_SCOPES, create_client
from webapp.contract import OPENAPI_PATH
from webapp.extensions import db

SPEC = yaml.safe_load(OPENAPI_PATH.read_text(encoding="utf-8"))
HTTP_METHODS = {"get", "put", "post", "delete", "patch"}
FLASK_ARGUMENT = re.compile(r"<(?:[^:>]+:)?([^>]+)>")


def routed_operations(app) -> set[tuple[str, str]]:
    """The JSON API's routes: the ops console's pages (and / that leads there) are HTML,
    listed in docs/operations.md instead."""
    return {(method.lower(), FLASK_ARGUMENT.sub(r"{\1}", rule.rule))
            for rule in app.url_map.iter_rules()
            if not (rule.rule == "/" or rule.rule.startswith("/ops"))
            for method in rule.methods - {"HEAD", "OPTIONS"}}


def documented_operations(spec) -> set[tuple[str, str]]:
    return {(method, path) for path, item in spec["paths"].items()
            for method in item if method in HTTP_METHODS}


def operations(spec):
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield method, path, operation


def test_every_route_is_documented_and_nothing_more(app):
    routed, documented = routed_operations(app), documented_operations(SPEC)
    assert routed - documented == set(), "routes missing from webapp/openapi.yaml"
    assert documented - routed == set(), "documented operations the app does not have"
    assert len(routed) >= 20


def test_bearer_routes_document_their_auth_errors_and_every_error_uses_the_envelope():
    envelope = {"$ref": "#/components/schemas/Error"}  # probes answer with their own body
    shared = SPEC["components"]["responses"]
    for method, path, operation in operations(SPEC):
        responses = operation["responses"]
        if operation.get("security"):
            assert {"401", "403", "429"} <= set(responses), (method, path)
        for status, response in responses.items():
            if "$ref" in response:
                response = shared[response["$ref"].rsplit("/", 1)[1]]
            if int(status) >= 400 and "operations" not in operation["tags"]:
                schema = response["content"]["application/json"]["schema"]
                assert schema == envelope, (method, path, status)


def test_the_document_is_served_as_written(client):
    response = client.get("/openapi.yaml")
    assert response.status_code == 200
    assert response.mimetype == "application/yaml"
    assert yaml.safe_load(response.data) == SPEC


def test_an_id_past_bigint_is_not_found_not_a_database_error(app):
    client = app.test_client()
    token = _client_token(app, "bigint-prober")
    for path in ("/v1/documents/9223372036854775808", "/v1/imports/99999999999999999999",
                 "/v1/admin/webhook-events/9223372036854775808"):
        response = client.get(path, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 404, path
        assert response.get_json()["error"]["code"] == "not_found"
    for method in ("patch", "delete"):  # a path with several methods: still 404, not 405
        response = getattr(client, method)("/v1/admin/destinations/9223372036854775808",
                                           headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 404, method


# --- schemathesis -----------------------------------------------------------------

def _client_token(app, name: str) -> str:
    with app.app_context():
        _, token = create_client(db.session, name, list(KNOWN_SCOPES))
        db.session.commit()
    return token


@pytest.fixture
def contract(make_app, monkeypatch):
    """The app with webhook sources, an all-scopes token and some stored objects."""
    monkeypatch.setenv("T_STRIPE", "whsec_contract")
    monkeypatch.setenv("T_META", "meta-secret")
    monkeypatch.setenv("T_META_VERIFY", "verify-token")
    # Generated requests must reach the views, not the failed-auth budget.
    app = make_app(WEBHOOK_SOURCES=SOURCES, AUTH_FAILURE_LIMIT="100000/minute")
    token = _client_token(app, "contract")
    headers = {"Authorization": f"Bearer {token}"}
    client = app.test_client()
    stored = client.post("/v1/documents", headers=headers, content_type="multipart/form-data",
                         data={"file": (io.BytesIO(files.pdf("contract")), "c.pdf")})
    assert stored.status_code == 201
    return app, headers


# Loaded eagerly: schemathesis's fixture-based loader reads a private pytest
# attribute that pytest 9.2 removed; the app goes to each call instead.
schema = schemathesis.openapi.from_path(OPENAPI_PATH)
# Unknown query parameters are ignored, as most HTTP APIs do, not refused.
schema.config.generation.update(allow_extra_parameters=False)
# A size past the documented maximum is refused as too large, which is a refusal.
schema.config.checks.negative_data_rejection.expected_statuses.append("413")
# Whether a well-formed MIME type is accepted is DOCUMENT_ALLOWED_TYPES's, configuration
# the document cannot state: 415 for one outside it is a fair answer to valid data.
schema.config.checks.positive_data_acceptance.expected_statuses.append("415")
# A well-formed If-Match that names another representation is rightly 412, and a
# well-formed Idempotency-Key that an earlier generated request used is rightly 422:
# the state, not the schema, decides.
schema.config.checks.positive_data_acceptance.expected_statuses.extend(["412", "422"])
# Whether uploaded bytes are acceptable depends on what they are (a PDF, a ZIP),
# which JSON Schema cannot say: random bytes are rightly refused with 400/415, and
# a "non-string" file part (the bytes `true`) is still a file, rightly accepted.
CONTENT_JUDGED = {"/v1/documents", "/v1/imports"}
CONTENT_CHECKS = [positive_data_acceptance, negative_data_rejection]
# Whether a URL may receive deliveries depends on where its host resolves (public, or
# in allowed_networks), and a valid `since` may still lie after `until`: neither is
# JSON Schema's to state, so a 400 for such well-formed data is a fair answer.
WORLD_JUDGED = {("POST", "/v1/admin/destinations"),
                ("PATCH", "/v1/admin/destinations/{destination_id}"),
                ("POST", "/v1/admin/destinations/{destination_id}/recover")}


@schema.parametrize()
# derandomize: the same examples on every run of the same code, so CI is stable;
# a developer can explore further with --hypothesis-seed or more examples.
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_app_honours_its_openapi_document(case, contract):
    app, headers = contract
    case.operation.schema.app = app  # also for checks that send requests of their own
    excluded = CONTENT_CHECKS if case.method == "POST" and case.path in CONTENT_JUDGED else []
    if (case.method, case.path) in WORLD_JUDGED:
        excluded = [positive_data_acceptance]
    case.call_and_validate(app=app, headers=headers, excluded_checks=excluded)


def test_the_scheme_lists_of_openapi_and_the_docs_are_the_registry():
    """The OpenAPI document, the README's scheme list, docs/webhooks.md (its TOML
    comment and its providers table) and the registries name the same schemes, kinds,
    trust levels, WhatsApp providers and event types, so none can drift apart."""
    import re
    from pathlib import Path

    import yaml

    from store import events
    from store.signatures import KINDS, TRUST_LEVELS
    from webhooks.schemes import SCHEMES
    from whatsapp import PROVIDERS as WHATSAPP

    repo = Path(__file__).resolve().parents[2]
    text = (repo / "webapp" / "openapi.yaml").read_text()
    spec = yaml.safe_load(text)["components"]["schemas"]
    docs = (repo / "docs" / "webhooks.md").read_text()
    in_spec = re.search(r"with the source's scheme\s+\(([^)]+)\)", text).group(1)
    in_comment = re.search(r'scheme = "stripe" +# ([a-z0-9 |-]+)', docs).group(1)
    readme = (repo / "README.md").read_text()
    in_readme = re.search(r"Schemes: (.+?); WhatsApp media", readme, re.DOTALL).group(1)
    table = dict(re.findall(r"^\| `([a-z0-9-]+)` \| ([a-z (]+?)[ |]", docs, re.MULTILINE))
    assert sorted(re.split(r",\s*", in_spec)) == sorted(SCHEMES)
    assert sorted(in_comment.split(" | ")) == sorted(SCHEMES)
    assert sorted(re.findall(r"`([a-z0-9-]+)`", in_readme)) == sorted(SCHEMES)
    assert sorted(table) == sorted(SCHEMES)
    for name, scheme in SCHEMES.items():  # each row says the scheme's own kind and trust
        row = re.search(rf"^\| `{re.escape(name)}` \|([^\n]+)", docs, re.MULTILINE).group(1)
        kind, trust = (cell.strip() for cell in row.split("|")[:2])
        assert trust.split(",")[0] == scheme.trust, name
        assert kind == scheme.kind or kind.startswith("any"), name
    assert spec["SourceKind"]["enum"] == list(KINDS)
    assert spec["WebhookEvent"]["properties"]["trust"]["enum"] == list(TRUST_LEVELS)
    assert spec["WhatsAppMedia"]["properties"]["provider"]["enum"] == list(WHATSAPP)
    constants = {value for name, value in vars(events).items()
                 if name.isupper() and isinstance(value, str) and "." in value}
    assert set(spec["OutcomeEvent"]["properties"]["type"]["enum"]) == constants
