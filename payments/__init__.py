"""Payments: a forward-only ledger, and one module per provider (payments/providers/).

Plain Python: nothing here knows about Flask requests or Celery.
"""
