"""Walk every owner-scoped route that takes an id: another owner always gets a plain 404.

The routes come from the app's URL map, so a new id-taking /v1 route is covered
(and must be given an object below) without anyone remembering to add it.
"""
import io

from documents.models import Upload
from store.db import utcnow
from tests.documents import files
from tests.imports import archives
from tests.imports.conftest import make_owners
from webapp.extensions import db

ADMIN_PREFIX = "/v1/admin/"


def direct_upload(app, owner_id: int) -> int:
    # Stored directly: this app's file:// storage cannot presign (tests/documents/
    # test_direct_uploads.py makes them through the API on an S3 endpoint).
    with app.app_context():
        upload = Upload(owner_id=owner_id, object_name=f"isolation-{owner_id}", filename="a.pdf",
                        declared_type="application/pdf", size=10, url_expires_at=utcnow())
        db.session.add(upload)
        db.session.commit()
        return upload.id


def owner_routes(app):
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/v1/") and not rule.rule.startswith(ADMIN_PREFIX) \
                and rule.arguments and "token" not in rule.arguments:
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                yield method, rule


def test_no_id_route_reveals_another_owners_object(app):
    client = app.test_client()
    owners = make_owners(app)
    alice, bob = ({"Authorization": owners[n]["Authorization"]} for n in ("alice", "bob"))
    document = client.post("/v1/documents", headers=alice, content_type="multipart/form-data",
                           data={"file": (io.BytesIO(files.pdf("alice's")), "a.pdf")}).get_json()
    job = client.post("/v1/imports", headers=alice, content_type="multipart/form-data",
                      data={"archive": (io.BytesIO(archives.build([("x.pdf", files.pdf())])),
                                        "a.zip")}).get_json()
    ids = {"document_id": document["id"], "import_id": job["id"],
           "upload_id": direct_upload(app, owners["alice"]["id"])}
    missing = {"document_id": 10**9, "import_id": 10**9, "upload_id": 10**9}
    routes = list(owner_routes(app))
    assert len(routes) >= 4
    # Payments and WhatsApp messages have no owner: their scope is the wall, and a
    # client without it is refused, whatever the name it asks for.
    unowned = {"provider": "stripe", "reference": "pi_1", "wamid": "wamid.A"}
    for method, rule in [(m, r) for m, r in routes if set(r.arguments) <= set(unowned)]:
        path = rule.build({k: unowned[k] for k in rule.arguments})[1]
        refused = client.open(path, method=method, headers=bob)
        assert refused.status_code == 403, (method, path)
        assert refused.get_json()["error"]["code"] == "insufficient_scope"
        routes.remove((method, rule))
    # Deletions last: alice's own DELETE takes her object away from the routes after it.
    for method, rule in sorted(routes, key=lambda route: route[0] == "DELETE"):
        assert set(rule.arguments) <= set(ids), f"give {rule.rule} an object to probe"
        path = rule.build({k: ids[k] for k in rule.arguments})[1]
        nowhere = rule.build({k: missing[k] for k in rule.arguments})[1]
        theirs = client.open(path, method=method, headers=bob)
        absent = client.open(nowhere, method=method, headers=bob)
        assert theirs.status_code == 404, (method, path)
        # Byte for byte what a missing id gets, apart from the request id.
        assert {**theirs.get_json()["error"], "request_id": ""} == \
            {**absent.get_json()["error"], "request_id": ""}, (method, path)
        # a running import cannot be deleted yet (409); a document can (204)
        assert client.open(path, method=method, headers=alice).status_code in (200, 204, 409)
