"""Webhook sources, the durable event store and the transactional outbox.

Plain Python: nothing here knows about Flask requests or Celery.
"""
