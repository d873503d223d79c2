"""What a request's span may say of its URL: never a secret that rides in the path or
the query (a download link's token, a webhook source's path token, Meta's verify
token)."""
import pytest

from webapp.telemetry import URL_ATTRIBUTES, _scrub_request


class Span:
    def __init__(self):
        self.attributes = {}

    def is_recording(self) -> bool:
        return True

    def set_attribute(self, name, value) -> None:
        self.attributes[name] = value


@pytest.mark.parametrize("path, shown", [
    ("/v1/files/eyJkb2MiOjF9.sig", "/v1/files/{token}"),
    ("/webhooks/mpesa/mp_7Qz2bW9xKc4LrT8vYh3N", "/webhooks/mpesa/{token}"),
    ("/webhooks/stripe", "/webhooks/stripe"),
    ("/v1/documents/7", "/v1/documents/7"),
])
def test_secrets_in_the_path_never_reach_a_span(path, shown):
    span = Span()
    _scrub_request(span, {"PATH_INFO": path, "QUERY_STRING": "hub.verify_token=secret"})
    assert span.attributes == {name: "" if name == "url.query" else shown
                               for name in URL_ATTRIBUTES}
