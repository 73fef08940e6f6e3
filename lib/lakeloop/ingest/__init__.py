"""The ingestion step: raw files at any Hadoop URI -> Delta bronze + quarantine.

* :mod:`~lakeloop.ingest.images` — a folder tree of images -> ``bronze.images`` (with the
  ledger of every file seen); :mod:`~lakeloop.ingest.image_checks` — what Pillow accepts and why it refuses the rest.
* :mod:`~lakeloop.ingest.tables` — CSV / JSON lines / Parquet -> ``bronze.<table>``:
  :mod:`~lakeloop.ingest.table_read` reads raw records, :mod:`~lakeloop.ingest.table_checks` validates them.
"""
