"""one_line: the line of an error that names it, for logs, status files and pages."""

from crypto_pipeline.core.errors import one_line

# As Spark reports a Python error raised in a foreachBatch function: the driver's
# message spans lines, and Spark's own text and the query's plan follow.
SPARK_BATCH_ERROR = """[FOREACH_BATCH_USER_FUNCTION_ERROR] An error occurred in the user \
provided function in foreach batch sink. Reason: An exception was raised by the Python \
Proxy. Return Message: Traceback (most recent call last):
  File "/app/src/crypto_pipeline/streaming/job.py", line 198, in _write_aggregates
    self.history.upsert(rows)
  File "psycopg_binary/_psycopg/generators.pyx", line 235, in fetch
psycopg.OperationalError: consuming input failed: server closed the connection unexpectedly
\tThis probably means the server terminated abnormally
\tbefore or while processing the request.

=== Streaming Query ===
Identifier: aggregates
"""


def test_a_driver_error_raised_in_a_batch_is_named_by_its_first_line():
    assert one_line(SPARK_BATCH_ERROR) == ("psycopg.OperationalError: consuming input failed: "
                                           "server closed the connection unexpectedly")


def test_a_traceback_whose_error_has_one_line():
    text = ("Return Message: Traceback (most recent call last):\n  File \"x.py\", line 1, "
            "in f\n    g()\n    ^^^\nValueError: bad\n")
    assert one_line(text) == "ValueError: bad"
