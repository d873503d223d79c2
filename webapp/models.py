"""Every mapped model, imported so that `metadata` is complete (Alembic, tests)."""
from webapp.auth import ApiClient  # noqa: F401
from webhooks.db import Base
from webhooks.outbox import OutboxMessage  # noqa: F401

metadata = Base.metadata
