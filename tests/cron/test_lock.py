"""The job lock on a real Redis: exclusive, fenced, expiring, kept alive, never stolen."""
import signal
import subprocess
import sys
import textwrap
import time

from cron.lock import JobLock, heartbeats
from tests.services import wait_for


def lock(redis_db, ttl=5.0, job="job") -> JobLock:
    return JobLock(redis_db, job, ttl=ttl, prefix="t:")


def test_one_holder_at_a_time_each_with_a_larger_fence(redis_db):
    first, second = lock(redis_db), lock(redis_db)
    assert first.acquire()
    assert not second.acquire()
    first.release()
    assert second.acquire()
    assert second.fence == first.fence + 1
    second.release()


def test_a_late_holder_cannot_release_the_new_holders_lock(redis_db):
    late = lock(redis_db, ttl=0.5)
    assert late.acquire()
    heartbeats.discard(late)  # its heartbeat stalls, as in a frozen process
    time.sleep(0.8)
    current = lock(redis_db)
    assert current.acquire()
    late.release()
    assert not lock(redis_db).acquire(), "the late release freed someone else's lock"
    current.release()


def test_the_heartbeat_keeps_a_long_job_locked_past_its_ttl(redis_db):
    holder = lock(redis_db, ttl=0.6)
    assert holder.acquire()
    time.sleep(1.5)  # over twice the TTL
    assert not lock(redis_db).acquire()
    assert not holder.lost.is_set()
    holder.release()
    assert lock(redis_db).acquire()


def test_a_heartbeat_that_cannot_extend_says_the_lock_is_lost(redis_db):
    holder = lock(redis_db, ttl=0.6)
    assert holder.acquire()
    redis_db.set("t:cron:lock:job", "someone-else")  # the lock went to another holder
    assert holder.lost.wait(2)
    holder.release()
    assert redis_db.get("t:cron:lock:job") == b"someone-else"


HOLDER = textwrap.dedent("""
    import sys, time, redis
    from cron.lock import JobLock, heartbeats
    held = JobLock(redis.Redis.from_url(sys.argv[1]), "job", ttl=1.5, prefix="t:")
    assert held.acquire()
    print("held", flush=True)
    time.sleep(600)
""")


def test_a_sigkilled_holder_frees_the_lock_after_its_ttl(redis_db, redis_url):
    process = subprocess.Popen([sys.executable, "-c", HOLDER, redis_url],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "held"
        time.sleep(2)  # past the TTL: only the heartbeat keeps it
        assert not lock(redis_db).acquire()
        process.send_signal(signal.SIGKILL)
        process.wait(5)
        killed_at = time.monotonic()
        waiter = lock(redis_db)
        wait_for(lambda: waiter.acquire(), timeout=5, interval=0.05, what="the lock to free")
        # The TTL bounds it (1.5 s from the last heartbeat); the second of slack is for
        # the polls and the scheduling of a loaded 2-core machine, not for the lock.
        assert time.monotonic() - killed_at <= 1.5 + 1.0
        waiter.release()
    finally:
        process.kill()
