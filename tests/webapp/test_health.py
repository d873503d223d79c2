import time

from tests.services import free_port
from webapp import create_app
from webapp.migrate import script_heads


def test_livez(client):
    response = client.get("/livez")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_startupz_is_ok_at_the_migration_head(client):
    body = client.get("/startupz").get_json()
    assert body["status"] == "ok"
    assert body["components"]["migrations"]["current"] == sorted(script_heads())


def test_startupz_is_503_on_an_unmigrated_database(app_config, tmp_path):
    app = create_app({**app_config, "DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"})
    response = app.test_client().get("/startupz")
    assert response.status_code == 503
    migrations = response.get_json()["components"]["migrations"]
    assert migrations["status"] == "behind" and migrations["current"] == []


def test_readyz_without_clamd_is_degraded_and_says_so(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "degraded"
    assert body["components"]["database"] == {"status": "ok"}
    assert body["components"]["redis"] == {"status": "ok"}
    assert body["components"]["clamd"]["status"] == "missing"


def test_readyz_is_ok_with_every_component_up(make_app, clamd_url):
    body = make_app(CLAMD_URL=clamd_url).test_client().get("/readyz").get_json()
    assert body["status"] == "ok"
    assert body["components"]["clamd"]["status"] == "ok"
    assert body["components"]["clamd"] == {"status": "ok"}  # a state, never a version


def test_readyz_reports_redis_and_clamd_down_quickly_but_stays_200(make_app, tmp_path):
    app = make_app(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
                   CLAMD_URL=f"unix://{tmp_path / 'no-clamd.sock'}")
    started = time.monotonic()
    response = app.test_client().get("/readyz")
    assert time.monotonic() - started < 3
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "degraded"
    assert body["components"]["redis"]["status"] == "down"
    assert body["components"]["clamd"] == {"status": "down", "error": "ConnectionError"}


def test_readyz_is_503_when_the_database_is_down(app_config):
    app = create_app({**app_config, "DATABASE_URL":
                      f"postgresql://nobody@127.0.0.1:{free_port()}/nothing"})
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "down"
    assert body["components"]["database"]["status"] == "down"
    assert body["components"]["redis"]["status"] == "ok"
