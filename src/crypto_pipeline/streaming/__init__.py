"""The Spark job's process: transforms, the two queries, the session, the backfill
(src/streaming_app.py)."""
