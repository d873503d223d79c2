"""Every mapped model, imported so that `metadata` is complete (Alembic, tests)."""
from cron.models import JobCheckpoint, JobRun  # noqa: F401
from documents.models import Document, Import, ImportRow  # noqa: F401
from webapp.auth import ApiClient  # noqa: F401
from webhooks.db import Base
from webhooks.audit import AuditLog  # noqa: F401
from webhooks.models import WebhookEvent  # noqa: F401
from webhooks.outbox import OutboxMessage  # noqa: F401
from webhooks.payments import Payment  # noqa: F401
from webhooks.whatsapp import WhatsAppMessage  # noqa: F401

metadata = Base.metadata
