"""Security: every service (the /metrics endpoints too) listens on localhost by default,
secrets set in the environment never reach a log, a status file or `pipelinectl.py
settings`, `.env` stays out of git, and Kafka's SASL settings reach the producer, the Spark
job, the dashboard's feed and scripts/kafka.sh (a wrong password is named as such). The
dashboard's login is tested in tests/dashboard/test_dashboard_login.py and
test_dashboard_app.py."""

from __future__ import annotations

import subprocess
import sys
import threading
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from crypto_pipeline.core.addresses import bind_host
from crypto_pipeline.core.paths import PROJECT_ROOT
from crypto_pipeline.core.processes import free_port, process_tree
from crypto_pipeline.core.settings import Duration, Settings, fields
from crypto_pipeline.dashboard.feed import KafkaFeed
from crypto_pipeline.kafka_io.embedded import EmbeddedKafka
from crypto_pipeline.kafka_io.topics import ensure_topics
from crypto_pipeline.producer.app import ProducerApp, build_source
from crypto_pipeline.producer.sink import KafkaTickSink
from crypto_pipeline.streaming.job import StreamingJob
from support.helpers import (
    process_env,
    producer_status,
    read_topic,
    run_to_the_end,
    spark_status,
    wait_for,
)
from support.supervised import Supervised

pytestmark = pytest.mark.integration

LOOPBACK = ("127.0.0.1", "::1")
START_TIMEOUT = 240


# --- who listens where -------------------------------------------------------------------

def _listening() -> dict[str, tuple[str, int]]:
    """Socket inode -> (address, port) of every TCP socket in LISTEN state on this host."""
    found = {}
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            parts = line.split()
            if parts[3] != "0A":  # LISTEN
                continue
            address, port = parts[1].split(":")
            raw = bytes.fromhex(address)
            # /proc prints the address as 32-bit words in host (little-endian) order.
            octets = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            text = (".".join(map(str, octets)) if width == 8
                    else _ipv6(octets))
            found[parts[9]] = (text, int(port, 16))
    return found


def _ipv6(octets: bytes) -> str:
    import ipaddress

    address = ipaddress.IPv6Address(octets)
    return str(address.ipv4_mapped or address)


def listening_addresses(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every socket the process and its descendants listen on."""
    sockets = _listening()
    found = set()
    for member in process_tree(pid):
        try:
            links = [p.readlink() for p in Path(f"/proc/{member}/fd").iterdir()]
        except OSError:
            continue
        for link in map(str, links):
            if link.startswith("socket:[") and link[8:-1] in sockets:
                found.add(sockets[link[8:-1]])
    return found


def listener_pid(port: int) -> int:
    """The process listening on `port` on this host."""
    inodes = {inode for inode, (_, p) in _listening().items() if p == port}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if any(str(fd.readlink())[8:-1] in inodes for fd in (proc / "fd").iterdir()):
                    return int(proc.name)
            except OSError:
                continue
    raise AssertionError(f"nothing listens on port {port}")


def test_the_embedded_broker_listens_on_localhost_only(kafka):
    # The kafka component binds where clients were told to connect; the default is localhost.
    assert bind_host("localhost") == "127.0.0.1"
    port = int(kafka.split(",")[0].rpartition(":")[2])
    addresses = listening_addresses(listener_pid(port))
    assert {p for _, p in addresses} >= {port, port + 1}, "broker and controller listeners"
    assert {a for a, _ in addresses} <= set(LOOPBACK), addresses


# --- the components with secrets in their environment ------------------------------------

@dataclass(frozen=True)
class Secrets:
    dashboard_password: str
    kafka_sasl_password: str
    alert_webhook_url: str

    @classmethod
    def new(cls) -> "Secrets":
        token = uuid.uuid4().hex
        # Port 9 (discard) refuses: every alert the webhook gets fails and is logged.
        return cls(f"dash-{token}", f"sasl-{token}", f"http://127.0.0.1:9/hooks/{token}")

    def found_in(self, text: str) -> list[str]:
        # The webhook's secret is its path: neither the URL nor the token may show.
        values = [self.dashboard_password, self.kafka_sasl_password, self.alert_webhook_url,
                  self.alert_webhook_url.rpartition("/")[2]]
        return [value for value in values if value in text]


def test_services_listen_on_localhost_and_secrets_stay_out_of_logs(kafka, settings,
                                                                   fake_binance, tmp_path):
    secrets = Secrets.new()
    settings = settings.replace(
        binance_base_url=fake_binance.url, poll_interval_seconds=0.5,
        spark_ui_port=free_port(), dashboard_port=free_port(), spark_master="local[2]",
        producer_metrics_port=free_port(), spark_metrics_port=free_port(),
        dashboard_metrics_port=free_port(), dashboard_password=secrets.dashboard_password,
        kafka_sasl_password=secrets.kafka_sasl_password,
        alert_webhook_url=secrets.alert_webhook_url)
    defaults = Settings.load(environ={}, env_file=None)
    assert settings.dashboard_address == defaults.dashboard_address == "127.0.0.1"
    components = {name: Supervised(name, settings, tmp_path / "logs")
                  for name in ("producer", "spark", "dashboard")}
    try:
        for component in components.values():
            component.start()
        for component in components.values():
            component.wait_healthy(START_TIMEOUT)
        # A price jump: the job's alerts go to the webhook, which refuses them.
        fake_binance.set_price("BTCUSDT", fake_binance.prices["BTCUSDT"] * 1.05)
        wait_for(lambda: spark_status(settings.run_dir).emitted_rows >= 4, 120,
                 "aggregates after the jump")
        with urllib.request.urlopen(f"http://127.0.0.1:{settings.dashboard_port}/",
                                    timeout=10) as page:
            assert page.status == 200

        for name in ("producer", "spark", "dashboard"):
            addresses = listening_addresses(components[name].running_child())
            assert addresses, f"{name} listens nowhere"
            assert {a for a, _ in addresses} <= set(LOOPBACK), (name, addresses)
        for name, port in (("spark", settings.spark_ui_port),
                           ("producer", settings.producer_metrics_port),
                           ("spark", settings.spark_metrics_port),
                           ("dashboard", settings.dashboard_metrics_port)):
            assert any(p == port for _, p in listening_addresses(
                components[name].running_child())), f"{name} listens on {port}"
    finally:
        for component in components.values():
            component.stop()

    ctl = PROJECT_ROOT / "src" / "pipelinectl.py"
    shown = {command: subprocess.run([sys.executable, str(ctl), command],
                                     env=process_env(settings), capture_output=True,
                                     text=True, timeout=60)
             for command in ("settings", "status")}
    for line in ("DASHBOARD_PASSWORD=***", "KAFKA_SASL_PASSWORD=***", "ALERT_WEBHOOK_URL=***"):
        assert line in shown["settings"].stdout.splitlines()
    texts = {f"pipelinectl.py {command}": result.stdout + result.stderr
             for command, result in shown.items()}
    texts.update({str(path): path.read_text(errors="replace")
                  for folder in (tmp_path / "logs", settings.run_dir)
                  for path in folder.iterdir() if path.is_file()})
    leaks = {where: secrets.found_in(text) for where, text in texts.items()
             if secrets.found_in(text)}
    assert leaks == {}


def test_env_is_ignored_by_git_and_the_example_holds_no_secret():
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=PROJECT_ROOT)
    assert ignored.returncode == 0, ".env is not git-ignored"
    example = dict(line.split("=", 1) for line in
                   (PROJECT_ROOT / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    for spec in fields():
        if spec.metadata["secret"]:
            assert example[spec.name.upper()] == "", spec.name
        if spec.metadata["mask"]:  # a URL that may hold a password holds none here
            value = example[spec.name.upper()]
            assert spec.metadata["mask"](value) == value, spec.name


# --- SASL ----------------------------------------------------------------------------------

USER = "pipeline"


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory):
    """A broker with a SASL_PLAINTEXT (PLAIN) listener for clients; the controller and
    the broker's own readiness check keep plaintext listeners on localhost."""
    work = tmp_path_factory.mktemp("sasl")
    port, sasl_port = free_port(consecutive=2), free_port()
    password = f"pw-{uuid.uuid4().hex}"
    jaas = ("org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="{USER}" password="{password}" user_{USER}="{password}";')
    broker = EmbeddedKafka(work / "data", work / "logs", port=port, heap="256m",
                           extra_properties={
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{port + 1},"
                     f"SASL_PLAINTEXT://127.0.0.1:{sasl_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{port},"
                                f"SASL_PLAINTEXT://127.0.0.1:{sasl_port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,"
                                          "SASL_PLAINTEXT:SASL_PLAINTEXT",
        "sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": jaas})
    broker.start(timeout=120)
    try:
        yield broker, f"127.0.0.1:{sasl_port}", password
    finally:
        broker.stop()


def sasl_settings(settings: Settings, bootstrap: str, password: str) -> Settings:
    return settings.replace(kafka_bootstrap_servers=bootstrap,
                            kafka_security_protocol="SASL_PLAINTEXT",
                            kafka_sasl_mechanism="PLAIN", kafka_sasl_username=USER,
                            kafka_sasl_password=password, price_source="simulated",
                            symbols=("BTCUSDT", "ETHUSDT"), poll_interval_seconds=0.2,
                            trigger_interval=Duration.parse("500 milliseconds"))


def run_producer(settings: Settings) -> tuple[ProducerApp, threading.Event, threading.Thread]:
    stop = threading.Event()
    source = build_source(settings)
    app = ProducerApp(settings, source, KafkaTickSink(settings, origin=source.origin))
    thread = threading.Thread(target=app.run, args=(stop,), daemon=True, name="producer")
    thread.start()
    return app, stop, thread


def test_sasl_settings_reach_producer_job_and_dashboard(sasl_broker, spark, settings):
    broker, bootstrap, password = sasl_broker
    settings = sasl_settings(settings, bootstrap, password)
    _, stop, producer = run_producer(settings)
    job = StreamingJob(spark, settings)
    feed = KafkaFeed(settings).start()
    try:
        wait_for(lambda: producer_status(settings.run_dir).ticks_sent >= 10, 60, "ticks over SASL")
        job.start()
        wait_for(lambda: read_topic(broker.bootstrap_servers, settings.output_topic,
                                    timeout=5, idle=0.2), 120, "aggregates over SASL")
        wait_for(lambda: feed.health().kafka == "ok" and len(feed.store.snapshot()), 60,
                 "the dashboard's feed to read them over SASL")
    finally:
        stop.set()
        producer.join(30)
        job.stop()
        feed.stop()


def test_a_wrong_sasl_password_is_named(sasl_broker, spark, settings):
    _, bootstrap, _ = sasl_broker
    settings = sasl_settings(settings, bootstrap, "not-the-password")
    _, stop, producer = run_producer(settings)
    try:
        assert run_to_the_end(StreamingJob(spark, settings), 180) == 1
        error = spark_status(settings.run_dir).last_error
        assert "authentication failed" in error.lower(), error
        error = wait_for(lambda: producer_status(settings.run_dir).last_error, 60,
                         "the producer's error")
        assert "refused the SASL credentials: check KAFKA_SASL_USERNAME (pipeline)" in error
        assert "not-the-password" not in error
    finally:
        stop.set()
        producer.join(30)


def test_kafkas_own_tools_get_the_sasl_settings(sasl_broker, settings, tmp_path):
    _, bootstrap, password = sasl_broker
    settings = sasl_settings(settings, bootstrap, password)
    ensure_topics(settings)

    def list_topics(settings: Settings) -> subprocess.CompletedProcess:
        return subprocess.run([str(PROJECT_ROOT / "scripts" / "kafka.sh"), "topics", "--list"],
                              env=process_env(settings, TMPDIR=str(tmp_path)),
                              capture_output=True, text=True, timeout=120)

    listed = list_topics(settings)
    assert listed.returncode == 0, listed.stderr
    assert settings.input_topic in listed.stdout.split()
    refused = list_topics(settings.replace(kafka_sasl_password="not-the-password"))
    assert refused.returncode != 0 and "Authentication failed" in refused.stderr, refused.stderr
    for result in (listed, refused):
        assert password not in result.stdout + result.stderr
    assert list(tmp_path.iterdir()) == [], "the client properties file was left behind"
