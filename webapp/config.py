"""Configuration: defaults, then the environment, then the mapping passed to create_app.

Every key in DEFAULTS may be set from an environment variable of the same name;
the value is coerced to the default's type. `None` defaults are derived from the
instance folder (the embedded default) in `finalize`.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import sys
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import unquote, urlsplit

import click
from cryptography.fernet import Fernet
from sqlalchemy.engine import make_url

from deliveries.models import parse_schedule
from documents.storage import BACKENDS
from payments.providers import PROVIDERS
from store.sealing import KeyRing, SealingError, install, parse_index_key
from webhooks.sources import Source, SourceConfigError, configured

DEFAULTS: dict[str, Any] = {
    "SECRET_KEY": None,               # None: generated once into instance/secret_key
    "SECRET_KEY_PREVIOUS": "",        # comma-separated keys still accepted during a rotation
    "DATA_KEYS": None,                # id:key,... sealing personal data; None: generated (SQLite)
    "INDEX_KEY": None,                # keys the blind indexes; None: generated (SQLite)
    "DATABASE_URL": None,             # None: SQLite file under instance/
    "DATABASE_POOL_SIZE": 5,          # connections each process keeps open (gunicorn: threads + 1)
    "DATABASE_PREPARED_STATEMENTS": True,  # False behind PgBouncer < 1.21 in transaction mode
    "REDIS_URL": None,                # None: the embedded Redis server under instance/
    "CELERY_BROKER_URL": None,        # None: REDIS_URL (RabbitMQ's amqp:// also works)
    "CELERY_QUEUE_TYPE": "classic",   # quorum: RabbitMQ's replicated quorum queues
    "CLAMD_URL": None,                # unix:///path or tcp://host:3310; None: no scanner
    "STORAGE_DIR": None,              # None: instance/storage (file:// shorthand)
    "STORAGE_URL": None,              # file:///abs/path or s3://bucket/prefix; None: STORAGE_DIR
    "S3_ENDPOINT_URL": None,          # a non-AWS S3 endpoint (MinIO, R2, B2, Ceph RGW)
    "S3_SSE": None,                   # AES256 or aws:kms: the store encrypts every object
    "S3_SSE_KMS_KEY_ID": None,        # with aws:kms, the KMS key (else the bucket's default)
    "STORAGE_REQUEST_TIMEOUT": 20.0,  # seconds each store call may take, retries included
    "STORAGE_VERIFY_INTERVAL": 3600,  # seconds between verify_storage runs (beat)
    "STORAGE_VERIFY_SAMPLE": 200,     # blobs each run checks, chosen at random, size and hash
    "SPOOL_DIR": None,                # local temp files; None: STORAGE_DIR/tmp or instance/spool
    "DOWNLOAD_MODE": "proxy",         # proxy: the web streams; redirect: 302 to a presigned GET
    "MAX_CONTENT_LENGTH": 64 * 1024 * 1024,
    "TRUSTED_PROXY_COUNT": 0,         # >0 enables ProxyFix for that many proxy hops
    "LOG_LEVEL": "INFO",
    "LOG_TASK_LINES": False,          # Celery's INFO line per task received and succeeded
    "REDIS_KEY_PREFIX": "sluice:",
    "HEALTH_CHECK_TIMEOUT": 1.0,      # seconds, per component in /readyz
    "OUTBOX_POLL_INTERVAL": 0.1,      # seconds between each worker's looks at the outbox; 0: off
    "QUEUE_DEPTH_INTERVAL": 5.0,      # seconds between each worker's measures of the queues; 0: off
    "OUTBOX_RELAY_INTERVAL": 10,      # seconds between relay runs (beat)
    "OUTBOX_RELAY_AFTER": 30,         # seconds a row may wait for a worker's relay
    "OUTBOX_RELAY_BATCH": 500,
    "CELERY_TASK_TIME_LIMIT": 1800,   # hard limit, seconds
    "CELERY_TASK_SOFT_TIME_LIMIT": 1500,
    "CELERY_VISIBILITY_TIMEOUT": 7200,  # must exceed the hard limit, or acks_late redelivers
    "TASK_MAX_DELIVERIES": 5,         # a message whose worker keeps dying is abandoned after this
    "WORKER_CONCURRENCY": 0,          # worker processes; 0: 4 per core (tasks wait on I/O)
    "BEAT_SCHEDULE_FILE": None,       # None: instance/celerybeat-schedule
    "SLUICE_SOURCES_FILE": None,      # None: instance/sources.toml
    "WEBHOOK_MAX_RETRIES": 8,         # then the event is dead until replayed
    "WEBHOOK_RETRY_BACKOFF": 2,       # seconds, doubled per attempt, full jitter
    "WEBHOOK_RETRY_BACKOFF_MAX": 600,
    "WEBHOOK_INVALID_SIGNATURE_LIMIT": "60/minute",  # per client IP, failed verifications
    "AUTH_FAILURE_LIMIT": "30/minute",  # per client IP, failed bearer-token authentications
    "REDRIVE_INTERVAL": 60,           # seconds between redrive_stuck_work runs
    "REDRIVE_AFTER": 300,             # seconds a handed-out event, scan or upload may wait
    "REDRIVE_TEXT_AFTER": 1800,       # a document's text still pending: above EXTRACT_TIMEOUT
    "REDRIVE_MEDIA_AFTER": 1800,      # a media fetch: its own retries honour Retry-After
    "REDRIVE_IMPORT_AFTER": 2400,     # an import without progress; above the task time limit
    "CRON_DISABLED": "",              # comma-separated job names beat should not run
    "CRON_SCHEDULES": "",             # "job=m h dom mon dow; ..." crontabs instead of intervals
    "RESCAN_INTERVAL": 3600,          # seconds between rescan_documents runs
    "RECONCILE_INTERVAL": 300,        # seconds between reconcile_payments runs
    "RECONCILE_AFTER": 900,           # seconds a payment may stay pending before we ask
    "RECONCILE_BATCH": 100,
    "RECONCILE_CONNECT_TIMEOUT": 3.0,
    "RECONCILE_READ_TIMEOUT": 10.0,
    "RECONCILE_HTTP_RETRIES": 3,      # on connection errors, 429 and 5xx
    "RECONCILE_HTTP_BACKOFF": 0.5,    # seconds, doubled per retry
    "RECONCILE_BREAKER_FAILURES": 5,  # consecutive failures that open a provider's circuit
    "RECONCILE_BREAKER_RESET": 60,    # seconds before a half-open trial call
    "DOCUMENT_MAX_BYTES": 100 * 1024 * 1024,  # upload cap (413 past it)
    "DOCUMENT_SCAN_MAX_BYTES": 100 * 1024 * 1024,  # keep <= clamd's StreamMaxLength
    "DOCUMENT_ALLOWED_TYPES": "",     # comma list; empty: PDF PNG JPEG TIFF text CSV DOCX XLSX
    "DOCUMENT_SCAN_MAX_RETRIES": 5,   # then scan_error (a rescan can still clear it)
    # a clean document's text and preview (documents/text/), on the `enrich` queue
    "OCR_LANGUAGES": "eng",           # tesseract's language packs, joined by +: "eng+deu"
    "OCR_MAX_PAGES": 50,              # pages read of one document; past it: limited
    "OCR_MAX_PIXELS": 40_000_000,     # a page or image rasterised for OCR (A4 at 300 dpi: 8.7M)
    "TEXT_MAX_CHARS": 1_000_000,      # characters kept of one document's text
    "EXTRACT_CPU_SECONDS": 120,       # RLIMIT_CPU of the extracting subprocess (and each tool)
    "EXTRACT_MEMORY_BYTES": 1024 ** 3,  # its RLIMIT_AS
    "EXTRACT_TIMEOUT": 300,           # wall clock, seconds; then its process group is killed
    "EXTRACT_TEXT_MAX_RETRIES": 3,    # the store or database away; then text_status failed
    "IMPORT_MAX_BYTES": 1024 * 1024 * 1024,  # archive upload cap (413 past it)
    "IMPORT_MAX_ENTRIES": 20000,      # entries in an archive, and rows in its manifest
    "IMPORT_MAX_TOTAL_BYTES": 4 * 1024 * 1024 * 1024,  # decompressed, counted while reading
    "IMPORT_MAX_RATIO": 100.0,        # per entry, decompressed / compressed (past 1 MiB out)
    "IMPORT_BATCH_SIZE": 100,         # rows committed together (the resume granularity)
    "DIRECT_UPLOAD_MAX_RETRIES": 5,   # a direct upload's ingest: store or database away
    "IMPORT_MAX_RETRIES": 5,          # then the import is failed
    "DOWNLOAD_LINK_TTL": 300,         # seconds a signed download link stays valid
    "METRICS_CACHE_SECONDS": 15.0,    # backlog gauges are measured at most this often
    "OPS_SESSION_HOURS": 8,           # an ops console sign-in lasts this long
    "OPS_REPLAY_CAP": 1000,           # events one "replay all matching" replays at most
    "OPS_OVERVIEW_CACHE_SECONDS": 5,  # the overview is computed at most this often per process
    "MEDIA_FETCH_MAX_RETRIES": 8,     # WhatsApp media: provider or store away, then failed
    "MEDIA_FETCH_BACKOFF": 2,         # seconds, doubled per retry (capped at 300), jittered
    "MEDIA_CONNECT_TIMEOUT": 5.0,     # seconds, per connection to the provider or its CDN
    "MEDIA_READ_TIMEOUT": 30.0,       # seconds without a byte from the provider or its CDN
    "MEDIA_SLOT_WAIT": 10.0,          # seconds a fetch waits for its source's free slot
    "UPLOAD_URL_TTL": 900,            # seconds a direct upload's presigned PUT is valid
    "UPLOAD_COMPLETE_HOURS": 24,      # then an uncompleted direct upload is expired and purged
    "RETENTION_WEBHOOK_BODY_DAYS": 30,  # then raw bodies go; key and outcome stay
    # then a finished webhook event's row goes too, and a repeat of its key is new:
    # above Stripe's 3 and Meta's 7 days of retries, with room for replays; 0: kept
    "DEDUP_WINDOW_DAYS": 35,
    # PostgreSQL's partitions of webhook_events: month, or day for large installs
    # (smaller drops, a row kept at most a day past the window)
    "EVENT_PARTITION_SPAN": "month",
    "RETENTION_JOB_RUNS_DAYS": 30,
    # then a finished import keeps its counts, not its rows that name no document
    # (rejected ones: its error report); 0: kept
    "RETENTION_IMPORT_ROWS_DAYS": 90,
    "RETENTION_OUTBOX_DAYS": 7,       # published outbox rows
    "RETENTION_EVENTS_DAYS": 30,      # the event log (/v1/events): older events are gone
    "ORPHAN_BLOB_GRACE_HOURS": 24,    # then a stored blob no row refers to is removed
    "RETENTION_MESSAGE_TEXT_DAYS": 90,  # then a WhatsApp message's text and phone are redacted
    "RETENTION_DOCUMENT_DAYS": 0,     # then documents are deleted with their bytes; 0: kept
    "IDEMPOTENCY_KEY_HOURS": 24,      # a client's Idempotency-Key answers are kept this long
    "REQUIRE_IF_MATCH": False,        # True: a write to one resource without If-Match is 428
    # Deliveries to the team's own endpoints (deliveries/): seconds between attempts,
    # each +-10 % jitter; the default reaches about 3 days, as Stripe's retries do.
    "DELIVERY_RETRY_SCHEDULE": "5,300,1800,7200,18000,36000,36000,86400,86400",
    "DELIVERY_TIMEOUT": 15.0,         # seconds to connect, and for each read of the answer
    "DELIVERY_POLL_INTERVAL": 0.5,    # seconds between each worker's dispatcher passes; 0: off
    "DELIVERY_CHAIN_SECONDS": 5.0,    # after a success, a worker sends the next due one for so long
    "DELIVERY_FANOUT_BATCH": 1000,    # events fanned out per transaction
    "DELIVERY_REDRIVE_AFTER": 120,    # seconds a handed-out delivery may stay unfinished
    "DESTINATION_MAX_IN_FLIGHT": 8,   # deliveries of one destination queued or sending at once
    "DESTINATION_FAILURE_THRESHOLD": 10,  # failures in a row that open a destination's breaker
    "DESTINATION_PROBE_INTERVAL": 60.0,   # seconds between probes while it is failing
    "DESTINATION_DISABLE_AFTER": 5 * 86400,  # seconds of continuous failure, then disabled
}
# Each payment provider's status API: its base URL, and its key and other credentials
# (secrets: from the environment only), under the setting names its module declares.
for _provider in PROVIDERS.values():
    if _provider.status_path is None:
        continue
    DEFAULTS[_provider.api_base_setting] = _provider.default_api_base
    for _name in (_provider.api_key_setting, *_provider.api_credential_settings):
        DEFAULTS[_name] = None


class ConfigError(click.ClickException):
    """A setting we cannot run with. A ClickException, so the flask and celery
    commands print it as one line ("Error: ...") and exit 1, not a traceback;
    the gunicorn and worker entry points do the same (`exit_on_config_error`)."""


def _coerce(key: str, raw: str, default: Any) -> Any:
    try:
        if isinstance(default, bool):
            if raw.lower() not in {"1", "0", "true", "false", "yes", "no"}:
                raise ValueError(raw)
            return raw.lower() in {"1", "true", "yes"}
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError:
        raise ConfigError(f"{key} must be a {type(default).__name__}") from None
    return raw


def settings(environ: Mapping[str, str], instance_path: str,
             overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Defaults, then the environment, then `overrides`, checked and completed."""
    values = dict(DEFAULTS)
    values.update(from_environment(environ))
    values.update(overrides or {})
    finalize(values, instance_path)
    return values


def webhook_sources(config: Mapping[str, Any], environ: Mapping[str, str]) -> dict[str, Source]:
    """The configured sources: inline under WEBHOOK_SOURCES, else the sources file."""
    try:
        sources = configured(config, environ)
    except SourceConfigError as exc:
        raise ConfigError(str(exc)) from None
    window = config["DEDUP_WINDOW_DAYS"]
    for source in sources.values():
        if window and (source.retention_days or 0) > window:
            raise ConfigError(f"source {source.name}: retention_days ({source.retention_days}) "
                              f"is longer than DEDUP_WINDOW_DAYS ({window}), when the row "
                              "and its body go")
    return sources


def check_startup(environ: Mapping[str, str], instance_path: str) -> None:
    """What a process checks before it serves: every setting and every source."""
    webhook_sources(settings(environ, instance_path), environ)


@contextlib.contextmanager
def exit_on_config_error():
    """For process entry points: a configuration error is one line on stderr, exit 1."""
    try:
        yield
    except ConfigError as exc:
        sys.exit(f"sluice: configuration error: {exc.message}")


def from_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    return {key: _coerce(key, environ[key], default)
            for key, default in DEFAULTS.items() if environ.get(key, "") != ""}


def normalize_database_url(url: str) -> str:
    """Use psycopg 3 for plain postgres URLs (SQLAlchemy would pick psycopg2)."""
    parsed = make_url(url)
    if parsed.drivername in {"postgres", "postgresql"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def finalize(config: dict[str, Any], instance_path: str) -> None:
    """Fill in derived defaults and reject values we cannot run with."""
    instance = Path(instance_path)
    # Beat keeps its schedule file here even when both URLs point elsewhere.
    instance.mkdir(parents=True, exist_ok=True)
    if not config.get("DATABASE_URL"):
        config["DATABASE_URL"] = f"sqlite:///{instance / 'sluice.db'}"
    config["DATABASE_URL"] = normalize_database_url(config["DATABASE_URL"])
    config["SQLALCHEMY_BACKEND"] = make_url(config["DATABASE_URL"]).get_backend_name()
    if config["SQLALCHEMY_BACKEND"] not in {"postgresql", "sqlite"}:
        raise ConfigError("DATABASE_URL must be a PostgreSQL or SQLite URL")
    if not config.get("SECRET_KEY"):
        if config["SQLALCHEMY_BACKEND"] == "postgresql":
            # A key generated per host would make one host's download links
            # invalid on every other host.
            raise ConfigError("SECRET_KEY must be set with a PostgreSQL DATABASE_URL: every "
                              "web and worker host must sign with the same key")
        config["SECRET_KEY"] = _instance_secret(instance, "secret_key",
                                                lambda: secrets.token_urlsafe(48))
    _finalize_data_keys(config, instance)
    # During a SECRET_KEY rotation what the previous keys signed still verifies (download
    # links, console sessions); new ones use SECRET_KEY.
    # Flask's own session signer reads SECRET_KEY_FALLBACKS.
    previous = config["SECRET_KEY_PREVIOUS"]
    config["SECRET_KEY_FALLBACKS"] = ([key.strip() for key in previous.split(",") if key.strip()]
                                      if isinstance(previous, str) else list(previous))
    _finalize_storage(config, instance)
    config["BEAT_SCHEDULE_FILE"] = (config.get("BEAT_SCHEDULE_FILE")
                                    or str(instance / "celerybeat-schedule"))
    config["SLUICE_SOURCES_FILE"] = (config.get("SLUICE_SOURCES_FILE")
                                     or str(instance / "sources.toml"))
    if config["CELERY_QUEUE_TYPE"] not in ("classic", "quorum"):
        raise ConfigError("CELERY_QUEUE_TYPE is classic or quorum")
    if config["CELERY_QUEUE_TYPE"] == "quorum" and \
            not str(config["CELERY_BROKER_URL"] or "").startswith(("amqp://", "amqps://")):
        raise ConfigError("CELERY_QUEUE_TYPE=quorum needs a RabbitMQ CELERY_BROKER_URL "
                          "(amqp://): quorum queues are RabbitMQ's")
    if config["DEDUP_WINDOW_DAYS"] < 0:
        raise ConfigError("DEDUP_WINDOW_DAYS must be 0 (rows kept) or more")
    if config["EVENT_PARTITION_SPAN"] not in ("month", "day"):
        raise ConfigError("EVENT_PARTITION_SPAN is month or day")
    if 0 < config["DEDUP_WINDOW_DAYS"] < config["RETENTION_WEBHOOK_BODY_DAYS"]:
        raise ConfigError("RETENTION_WEBHOOK_BODY_DAYS must not exceed DEDUP_WINDOW_DAYS, "
                          "when the row and its body go")
    if config["WEBHOOK_RETRY_BACKOFF_MAX"] >= config["CELERY_VISIBILITY_TIMEOUT"]:
        raise ConfigError("WEBHOOK_RETRY_BACKOFF_MAX must stay below CELERY_VISIBILITY_TIMEOUT")
    if config["CELERY_VISIBILITY_TIMEOUT"] <= config["CELERY_TASK_TIME_LIMIT"]:
        raise ConfigError("CELERY_VISIBILITY_TIMEOUT must exceed CELERY_TASK_TIME_LIMIT")
    if config["EXTRACT_TIMEOUT"] >= config["CELERY_TASK_SOFT_TIME_LIMIT"]:
        raise ConfigError("EXTRACT_TIMEOUT must be below CELERY_TASK_SOFT_TIME_LIMIT: the "
                          "sandbox must end an extraction before Celery ends its task")
    if config["CELERY_TASK_SOFT_TIME_LIMIT"] >= config["CELERY_TASK_TIME_LIMIT"]:
        raise ConfigError("CELERY_TASK_SOFT_TIME_LIMIT must be below CELERY_TASK_TIME_LIMIT")
    if config["REDRIVE_TEXT_AFTER"] <= config["EXTRACT_TIMEOUT"]:
        raise ConfigError("REDRIVE_TEXT_AFTER must exceed EXTRACT_TIMEOUT: a reading still "
                          "running is not lost")
    if config["REDRIVE_IMPORT_AFTER"] <= config["CELERY_TASK_TIME_LIMIT"]:
        raise ConfigError("REDRIVE_IMPORT_AFTER must exceed CELERY_TASK_TIME_LIMIT: a running "
                          "import is only known lost once no task can still hold it")
    try:
        parse_schedule(config["DELIVERY_RETRY_SCHEDULE"])
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if config["DELIVERY_REDRIVE_AFTER"] <= 2 * config["DELIVERY_TIMEOUT"]:
        raise ConfigError("DELIVERY_REDRIVE_AFTER must exceed twice DELIVERY_TIMEOUT: a "
                          "delivery still being sent must not be handed out again")
    if config["TRUSTED_PROXY_COUNT"] < 0:
        raise ConfigError("TRUSTED_PROXY_COUNT must be 0 or more")
    clamd_url = config.get("CLAMD_URL")
    if clamd_url and not clamd_url.startswith(("unix:///", "tcp://")):
        raise ConfigError("CLAMD_URL must be unix:///path or tcp://host:port")


def _finalize_storage(config: dict[str, Any], instance: Path) -> None:
    config["STORAGE_DIR"] = config.get("STORAGE_DIR") or str(instance / "storage")
    url = config.get("STORAGE_URL") or Path(config["STORAGE_DIR"]).resolve().as_uri()
    config["STORAGE_URL"] = url
    scheme = url.partition("://")[0]
    if scheme not in BACKENDS:
        raise ConfigError("STORAGE_URL must be file:///absolute/path or s3://bucket[/prefix] "
                          f"(a backend: {', '.join(BACKENDS)})")
    if not config.get("SPOOL_DIR"):
        config["SPOOL_DIR"] = (str(Path(unquote(urlsplit(url).path)) / "tmp")
                               if scheme == "file" else str(instance / "spool"))
    if not 0 < config["STORAGE_REQUEST_TIMEOUT"] <= 300:
        raise ConfigError("STORAGE_REQUEST_TIMEOUT must be between 0 and 300 seconds (keep it "
                          "below the front's proxy_read_timeout)")
    if config.get("S3_SSE") or config.get("S3_SSE_KMS_KEY_ID"):
        if scheme != "s3":
            raise ConfigError("S3_SSE and S3_SSE_KMS_KEY_ID apply to an s3:// STORAGE_URL")
        from documents.storage.s3 import encryption  # boto3, only when S3 is in use

        try:
            encryption(config.get("S3_SSE"), config.get("S3_SSE_KMS_KEY_ID"))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    if config["DOWNLOAD_MODE"] not in ("proxy", "redirect"):
        raise ConfigError("DOWNLOAD_MODE must be proxy or redirect")
    if config["DOWNLOAD_MODE"] == "redirect" and not BACKENDS[scheme].presigns:
        raise ConfigError(f"DOWNLOAD_MODE=redirect needs a backend that presigns GETs "
                          f"({scheme}:// does not; s3:// does)")


def _finalize_data_keys(config: dict[str, Any], instance: Path) -> None:
    """DATA_KEYS and INDEX_KEY (store/sealing.py): set, or generated for the embedded
    default; checked, so a malformed one stops every process with one line."""
    for name, make in (("DATA_KEYS", lambda: f"k1:{Fernet.generate_key().decode()}"),
                       ("INDEX_KEY", lambda: Fernet.generate_key().decode())):
        if config.get(name):
            continue
        if config["SQLALCHEMY_BACKEND"] == "postgresql":
            # Keys generated per host would leave each host unable to read the others'.
            raise ConfigError(f"{name} must be set with a PostgreSQL DATABASE_URL: every web "
                              "and worker host must use the same keys (docs/data.md)")
        config[name] = _instance_secret(instance, name.lower(), make)
    try:
        KeyRing.parse(config["DATA_KEYS"])
        parse_index_key(config["INDEX_KEY"])
    except SealingError as exc:
        raise ConfigError(str(exc)) from None


def install_data_keys(config: Mapping[str, Any]) -> None:
    """This process's sealing keys, from checked settings."""
    install(KeyRing.parse(config["DATA_KEYS"]), parse_index_key(config["INDEX_KEY"]))


def _instance_secret(instance: Path, name: str, make: Callable[[], str]) -> str:
    """A per-install secret for the embedded default, kept across restarts. Written
    whole to a file of its own, then linked into place, so processes starting together
    all read the one that won, never a half-written one."""
    path = instance / name
    if not path.exists():
        scratch = instance / f".{name}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(make())
        try:
            os.link(scratch, path)
        except FileExistsError:
            pass
        finally:
            scratch.unlink()
    return path.read_text().strip()
