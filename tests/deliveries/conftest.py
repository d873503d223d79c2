"""The console's fixtures (a signed-in operator on an app with webhook sources)."""
from tests.webapp.test_ops import operator, ops_app, webhook_env  # noqa: F401
