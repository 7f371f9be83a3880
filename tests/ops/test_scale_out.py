"""Scaling out is a change of settings: a 3-broker KRaft cluster that loses a broker
mid-stream loses no tick, and the job on a Spark standalone cluster gives the same
aggregates as in local mode (and as the oracle)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from crypto_pipeline.binance.klines import read_klines, ticks_of
from crypto_pipeline.core.history import sqlite_url
from crypto_pipeline.core.paths import PROJECT_ROOT
from crypto_pipeline.core.processes import end_process
from crypto_pipeline.core.settings import Duration, Settings
from crypto_pipeline.kafka_io.clients import client_config
from crypto_pipeline.kafka_io.embedded import EmbeddedKafka
from crypto_pipeline.kafka_io.topics import ensure_topics
from crypto_pipeline.ops.spark_cluster import LocalSparkCluster
from crypto_pipeline.streaming.job import StreamingJob
from support import DATA_DIR
from support.helpers import (
    free_port,
    latest_by_key,
    process_env,
    producer_status,
    read_topic,
    spark_status,
    wait_for,
    windows,
)
from support.oracle import mismatches

pytestmark = pytest.mark.integration

DATA = DATA_DIR
FAST = Duration.parse("500 milliseconds")


def job_process(settings: Settings, log_file) -> subprocess.Popen:
    """The job as start.sh runs it: its own process, settings from the environment."""
    return subprocess.Popen([sys.executable, str(PROJECT_ROOT / "src" / "streaming_app.py")],
                            cwd=PROJECT_ROOT, env=process_env(settings),
                            stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def test_a_broker_killed_mid_stream_loses_no_tick(tmp_path, settings):
    cluster = EmbeddedKafka(tmp_path / "kafka", tmp_path / "logs",
                            port=free_port(consecutive=6), nodes=3, heap="256m")
    cluster.start(timeout=180)
    replay = DATA / "ETHUSDT-1m-2022-08-14.csv"
    ticks = list(ticks_of(read_klines(replay)))
    settings = settings.replace(
        kafka_bootstrap_servers=cluster.bootstrap_servers, kafka_brokers=3,
        topic_partitions=3, trigger_interval=FAST, price_source="replay",
        replay_file=replay, replay_speed=3600.0)
    assert settings.replication_factor == 3
    processes = []
    try:
        ensure_topics(settings)
        with open(tmp_path / "job.log", "wb") as job_log, \
                open(tmp_path / "producer.log", "wb") as producer_log:
            job = job_process(settings, job_log)
            processes.append(job)
            wait_for(lambda: spark_status(settings.run_dir).state
                     == "active", 240, "the job to start")
            producer = subprocess.Popen(
                [sys.executable, str(PROJECT_ROOT / "src" / "api_producer.py")],
                cwd=PROJECT_ROOT, env=process_env(settings),
                stdout=producer_log, stderr=subprocess.STDOUT)
            processes.append(producer)
            wait_for(lambda: producer_status(settings.run_dir).ticks_sent >= len(ticks) // 4,
                     120, "a quarter of the replay sent")
            victim = cluster.nodes[1]
            cluster.stop_node(victim, kill=True)

            assert producer.wait(300) == 0, (tmp_path / "producer.log").read_text()[-3000:]
            status = producer_status(settings.run_dir)
            assert (status.ticks_sent, status.ticks_dropped, status.ticks_failed) == (
                len(ticks), 0, 0)
            on_topic = read_topic(cluster.bootstrap_servers, settings.input_topic,
                                  min_records=len(ticks), timeout=60)
            ids = [r.value for r in on_topic]
            assert len(set(ids)) == len(ticks), "a tick was lost"

            expected = windows(ticks, settings)

            def final_values_equal_the_oracle():
                assert job.poll() is None, (tmp_path / "job.log").read_text()[-3000:]
                actual = latest_by_key(read_topic(cluster.bootstrap_servers,
                                                  settings.output_topic, idle=0.5))
                assert mismatches(actual, expected) == []
                return True

            wait_for(final_values_equal_the_oracle, 300, "the aggregates to equal the oracle")
    finally:
        for process in processes:
            end_process(process, 60)
        cluster.stop()


def test_a_standalone_cluster_gives_the_same_aggregates_as_local_mode(tmp_path, spark, kafka,
                                                                      settings):
    from kafka import KafkaProducer

    settings = settings.replace(topic_partitions=1, trigger_interval=FAST)
    ticks = list(ticks_of(read_klines(DATA / "BTCUSDT-1m-2025-08-01_2025-08-10.csv")))[:480]
    ensure_topics(settings)
    producer = KafkaProducer(acks="all", **client_config(settings))
    for tick in ticks:
        producer.send(settings.input_topic, key=tick.key, value=tick.to_json())
    producer.flush()
    producer.close()
    expected = windows(ticks, settings)

    local = settings.replace(output_topic=settings.output_topic + "-local",
                             checkpoint_dir=tmp_path / "local" / "checkpoint",
                             history_url=sqlite_url(tmp_path / "local" / "history.sqlite"),
                             run_dir=tmp_path / "local" / "run")
    ensure_topics(local)
    job = StreamingJob(spark, local)
    job.start()
    try:
        wait_for(lambda: len(latest_by_key(read_topic(kafka, local.output_topic, idle=0.3)))
                 == len(expected), 180, "local mode's aggregates")
    finally:
        assert job.stop() == 0
    in_local_mode = latest_by_key(read_topic(kafka, local.output_topic, idle=0.3))

    spark_cluster = LocalSparkCluster(tmp_path / "spark-logs", master_port=free_port(),
                                      master_ui_port=free_port(), worker_ui_port=free_port(),
                                      worker_cores=1, worker_memory="1g").start()
    on_cluster = settings.replace(spark_master=spark_cluster.master_url,
                                  spark_ui_port=free_port())
    try:
        with open(tmp_path / "job.log", "wb") as job_log:
            process = job_process(on_cluster, job_log)
            try:
                def same_as_local_mode():
                    assert process.poll() is None, (tmp_path / "job.log").read_text()[-3000:]
                    actual = latest_by_key(read_topic(kafka, on_cluster.output_topic, idle=0.3))
                    assert len(actual) == len(expected)
                    return True

                wait_for(same_as_local_mode, 300, "the cluster's aggregates")
            finally:
                end_process(process, 60)
        clustered = latest_by_key(read_topic(kafka, on_cluster.output_topic, idle=0.3))
        assert "executor" in (tmp_path / "spark-logs" / "spark-worker.log").read_text().lower()
    finally:
        spark_cluster.stop()
    assert mismatches(in_local_mode, expected) == []
    assert mismatches(clustered, expected) == []
    # The same numbers as in local mode: exact where the oracle is exact, sums and means
    # within 1e-9 relative (the cluster adds partial sums in another order).
    assert mismatches(clustered, in_local_mode) == []
