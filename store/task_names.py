"""The name of every background task, defined once.

Domain code asks for work by putting one of these names in the outbox (in the same
transaction as the change it is about); `tasks/` declares the Celery task under the
same constant. The names live in the kernel because the domain packages may not
import `tasks`: the layers run webapp -> tasks -> domains -> store.

Celery routes each name to the queue its middle part names (`sluice.<queue>.<task>`,
see `tasks.celery_app.celery_config`), so a name also says where its work runs. A name is part
of the broker's contract with messages already queued: never rename one in place.
"""
PROCESS_EVENT = "sluice.webhooks.process_event"
SCAN_DOCUMENT = "sluice.documents.scan"
INGEST_UPLOAD = "sluice.documents.ingest_upload"
FETCH_MEDIA = "sluice.documents.fetch_media"
RUN_IMPORT = "sluice.imports.run"
RUN_JOB = "sluice.cron.run_job"
PING = "sluice.ping"
DELIVER = "sluice.deliveries.deliver"
EXTRACT_TEXT = "sluice.enrich.extract_text"
