"""The feed against 8 writers committing in any order: a consumer that keeps its cursor
sees every event exactly once. A reader taking `id > last id` in the same run misses
some, which shows the race was there to be lost."""
import random
import threading
import time

from sqlalchemy import select
from sqlalchemy.orm import Session

from store import events
from store.db import make_engine
from store.events import Event, Visibility
from tests import services
from webapp.migrate import upgrade

WRITERS, PER_WRITER = 8, 60


def test_a_consumer_keeping_its_cursor_sees_every_event_once_under_racing_writers(tmp_path):
    base = services.require_postgres()
    url = services.fresh_postgres_database(base, "sluice_feed_race")
    upgrade(url)
    engine = make_engine(url, pool_size=WRITERS + 4)
    done = threading.Event()

    def writer(number: int) -> None:
        rng = random.Random(number)
        for index in range(PER_WRITER):
            with Session(engine) as session:
                events.record(session, events.PAYMENT_UPDATED, {"w": number, "i": index})
                session.flush()                      # the id is taken here...
                time.sleep(rng.uniform(0, 0.02))     # ...and committed later, in any order
                session.commit()

    seen, naive_seen = [], []

    def consumer() -> None:
        # Once the writers are done it reads on until it has them all: a transaction
        # running anywhere in the cluster (another test's, under xdist) may hold the
        # feed back for a while. Delayed is allowed; skipped or repeated is not.
        cursor, deadline = None, None
        while deadline is None or time.monotonic() < deadline:
            if deadline is None and done.is_set():
                deadline = time.monotonic() + 60
            with Session(engine) as session:
                rows = events.read_events(session, Visibility(all_events=True), after=cursor,
                                          limit=50)
            seen.extend(row.public_id for row in rows)
            if rows:
                cursor = (rows[-1].txid, rows[-1].id)
            elif deadline is not None and len(seen) >= WRITERS * PER_WRITER:
                return
            else:
                time.sleep(0.005)

    def naive_consumer() -> None:
        last = 0
        while not done.is_set():
            with Session(engine) as session:
                rows = list(session.scalars(select(Event).where(Event.id > last)
                                            .order_by(Event.id).limit(50)))
            naive_seen.extend(row.public_id for row in rows)
            if rows:
                last = rows[-1].id

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(WRITERS)]
    readers = [threading.Thread(target=consumer), threading.Thread(target=naive_consumer)]
    for thread in readers + threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    for thread in readers:
        thread.join(timeout=60)
    engine.dispose()
    total = WRITERS * PER_WRITER
    assert len(seen) == total and len(set(seen)) == total  # every event, each once
    assert len(set(naive_seen)) < total, "no commit overtook another: the race was not run"
