"""One way to build the SparkSession, with the Kafka connector from .jvm/ and sane sizes."""

from __future__ import annotations

import os
from pathlib import Path

from crypto_pipeline.core.paths import spark_connector_jars_dir
from crypto_pipeline.core.settings import Settings


def spark_version() -> str:
    import pyspark

    return pyspark.__version__


def connector_jars() -> list[Path]:
    """The Spark-Kafka connector jars matching the installed pyspark, as setup fetched them."""
    return sorted(spark_connector_jars_dir(spark_version()).glob("*.jar"))


def build_session(settings: Settings, app_name: str, **extra_conf: str):
    from pyspark.sql import SparkSession

    if settings.spark_master.startswith("local"):
        # Spark's UI and block manager bind every interface unless told otherwise.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    builder = (
        SparkSession.builder.appName(app_name)
        .master(settings.spark_master)
        .config("spark.ui.port", str(settings.spark_ui_port))
        .config("spark.sql.shuffle.partitions", str(settings.shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.streaming.metricsEnabled", "true")
        # Spark's own metrics in Prometheus' format on its UI: executors at
        # /metrics/executors/prometheus, the driver (streaming queries too) at
        # /metrics/prometheus, named after the application rather than its id, which
        # changes with every start.
        .config("spark.ui.prometheus.enabled", "true")
        .config("spark.metrics.namespace", "${spark.app.name}")
        .config("spark.metrics.conf.*.sink.prometheusServlet.class",
                "org.apache.spark.metrics.sink.PrometheusServlet")
        .config("spark.metrics.conf.*.sink.prometheusServlet.path", "/metrics/prometheus")
    )
    jars = connector_jars()
    if jars:
        # Under spark-submit --jars/--packages these are already on the classpath; the
        # same files twice are harmless, a missing connector is not.
        builder = builder.config("spark.jars", ",".join(str(j) for j in jars))
    for key, value in extra_conf.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    return session
