"""Wiring checks."""
from __future__ import annotations

import json
import os
import socket
import time

from celery import shared_task

from store.task_names import PING
from tasks.app_state import config, redis_client

PING_TTL_SECONDS = 3600


@shared_task(name=PING, acks_late=True, ignore_result=True, max_retries=0)
def ping(token: str) -> None:
    """Leave a mark in Redis proving that a worker ran this message."""
    key = f"{config('REDIS_KEY_PREFIX')}ping:{token}"
    mark = {"pid": os.getpid(), "host": socket.gethostname(), "at": time.time()}
    redis_client().set(key, json.dumps(mark), ex=PING_TTL_SECONDS)
