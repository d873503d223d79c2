"""Deliveries: the event log (store/events.py) pushed to the team's own endpoints.

- `models`: destinations, one delivery per (destination, event), each attempt.
- `destinations`: creating, changing and deleting destinations, their secrets and
  their URL rules (the operations the admin API, the CLI and the console call).
- `dispatch`: fan the event log out into deliveries (a cursor over the gap-free
  feed), and hand out what is due, through the outbox, under each destination's
  in-flight cap and circuit breaker.
- `sending`: one attempt: sign (Standard Webhooks), POST under the SSRF rules of
  store/fetch.py, record the outcome, schedule the retry, move the breaker.
"""
