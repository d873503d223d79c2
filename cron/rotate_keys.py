"""rotate_data_keys: while DATA_KEYS lists more than one key (a rotation under way),
reseal every value not under the first, as `flask keys rotate` does, in committed
batches that check the job's lock between them: resumable, and a run that finds
nothing to do costs a scan of the sealed columns. With one key listed it does
nothing, and costs nothing (values written before sealing existed are
`flask keys rotate`'s to seal, once)."""
from __future__ import annotations

from cron.runner import JobContext
from store import sealing
from store.db import Base


def rotate_data_keys(ctx: JobContext) -> dict:
    ring = sealing.ring()
    if len(ring.ids) == 1:
        return {"resealed": 0, "keys": 1}
    done = sealing.rotate(ctx.session, Base.metadata,
                          progress=lambda _column, _count: ctx.check())
    return {"resealed": sum(done.values()), "keys": len(ring.ids),
            **{f"resealed_{column.replace('.', '_')}": count
               for column, count in done.items() if count}}
