"""GitHub: `X-Hub-Signature-256: sha256=<hex>`, HMAC-SHA256 of the body with the
webhook's secret; `X-GitHub-Delivery` (a GUID) identifies the delivery, and a
redelivery from GitHub's settings page carries the same one; `X-GitHub-Event` names
the event. No timestamp is signed, so deduplication is the replay defence.
"""
from webhooks.schemes.generic_hmac import preset

SCHEME = preset("github", signature_header="X-Hub-Signature-256", signature_prefix="sha256=",
                event_key_header="X-GitHub-Delivery", type_header="X-GitHub-Event")
