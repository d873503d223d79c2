"""Every mapped model, imported so that `metadata` is complete (Alembic, tests)."""
from cron.models import JobRun  # noqa: F401
from deliveries.models import Delivery, DeliveryAttempt, Destination, FanoutCursor  # noqa: F401,E501
from documents.models import Document, DocumentTag, Import, ImportRow, Upload  # noqa: F401
from payments.history import PaymentChange  # noqa: F401
from payments.ledger import Payment  # noqa: F401
from store.audit import AuditExport, AuditLog  # noqa: F401
from store.clients import ApiClient, OpsSession  # noqa: F401
from store.data_keys import KnownKey  # noqa: F401
from store.db import Base
from store.events import Event  # noqa: F401
from store.holds import Hold  # noqa: F401
from store.idempotency import IdempotencyKey  # noqa: F401
from store.outbox import OutboxMessage  # noqa: F401
from store.subjects import SubjectLink  # noqa: F401
from webhooks.models import WebhookEvent  # noqa: F401
from whatsapp import WhatsAppMedia, WhatsAppMessage  # noqa: F401

metadata = Base.metadata
