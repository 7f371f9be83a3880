"""A real Kafka (KRaft) broker, or a small cluster, from the official jars: no Docker.

Used by `./start.sh kafka` (through `src/kafka_server.py`) and by the test fixtures.
Node i of an n-node cluster runs broker and controller in one JVM, listening on
`port + 2i` (clients) and `port + 2i + 1` (controller), with its own data directory.
"""

from __future__ import annotations

import base64
import logging
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from crypto_pipeline.core.paths import KAFKA_JARS_DIR, KAFKA_LOG4J_CONFIG
from crypto_pipeline.core.processes import die_with_parent
from crypto_pipeline.kafka_io.clients import wait_until_ready

log = logging.getLogger(__name__)

STOP_TIMEOUT_SECONDS = 30.0


class KafkaNotInstalled(RuntimeError):
    pass


@dataclass
class KafkaNode:
    node_id: int
    host: str
    port: int
    controller_port: int
    data_dir: Path
    log_file: Path
    process: subprocess.Popen | None = field(default=None, repr=False)
    log_handle: IO[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class EmbeddedKafka:
    """Format, start, wait for and stop a KRaft cluster of `nodes` combined-mode nodes."""

    def __init__(self, data_dir: Path, log_dir: Path, *, port: int = 9092, nodes: int = 1,
                 host: str = "127.0.0.1", heap: str = "512m",
                 jars_dir: Path = KAFKA_JARS_DIR, extra_properties: dict[str, str] | None = None):
        if not any(jars_dir.glob("kafka_2.13-*.jar")):
            raise KafkaNotInstalled(
                f"no Kafka jars in {jars_dir}: run scripts/setup.sh (or ./start.sh) first")
        self.jars_dir = jars_dir
        self.heap = heap
        self.extra_properties = extra_properties or {}
        self.nodes = [
            KafkaNode(node_id=i + 1, host=host, port=port + 2 * i,
                      controller_port=port + 2 * i + 1,
                      data_dir=Path(data_dir) / f"node-{i + 1}",
                      log_file=Path(log_dir) / (f"kafka-node-{i + 1}.log" if nodes > 1
                                                else "kafka-broker.log"))
            for i in range(nodes)
        ]

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.address for node in self.nodes)

    def properties(self, node: KafkaNode) -> dict[str, str]:
        replicas = str(min(3, len(self.nodes)))
        min_isr = "2" if len(self.nodes) >= 3 else "1"
        voters = ",".join(f"{n.node_id}@{n.host}:{n.controller_port}" for n in self.nodes)
        return {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "listeners": f"PLAINTEXT://{node.host}:{node.port},"
                         f"CONTROLLER://{node.host}:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{node.address}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.quorum.voters": voters,
            "log.dirs": str(node.data_dir / "log"),
            "offsets.topic.replication.factor": replicas,
            "transaction.state.log.replication.factor": replicas,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": replicas,
            "share.coordinator.state.topic.min.isr": min_isr,
            "default.replication.factor": replicas,
            "group.initial.rebalance.delay.ms": "0",
            **self.extra_properties,
        }

    def _java(self, main_class: str, *args: str) -> list[str]:
        return ["java", f"-Xmx{self.heap}", f"-Xms{self.heap}", "-XX:+UseG1GC",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={KAFKA_LOG4J_CONFIG}",
                "-cp", str(self.jars_dir / "*"), main_class, *args]

    def _config_file(self, node: KafkaNode) -> Path:
        return node.data_dir / "server.properties"

    def format(self) -> None:
        """Write each node's config; format its storage unless it already holds data."""
        cluster_id = None
        for node in self.nodes:
            node.data_dir.mkdir(parents=True, exist_ok=True)
            self._config_file(node).write_text(
                "".join(f"{k}={v}\n" for k, v in self.properties(node).items()))
            if (node.data_dir / "log" / "meta.properties").exists():
                continue
            if cluster_id is None:
                cluster_id = self._existing_cluster_id() or random_cluster_id()
            formatted = subprocess.run(
                self._java("kafka.tools.StorageTool", "format", "-t", cluster_id,
                           "-c", str(self._config_file(node))),
                capture_output=True, text=True)
            if formatted.returncode != 0:
                raise RuntimeError(f"formatting {node.data_dir} for Kafka failed: "
                                   f"{(formatted.stderr or formatted.stdout).strip()}")

    def _existing_cluster_id(self) -> str | None:
        for node in self.nodes:
            meta = node.data_dir / "log" / "meta.properties"
            if meta.exists():
                for line in meta.read_text().splitlines():
                    if line.startswith("cluster.id="):
                        return line.split("=", 1)[1].strip()
        return None

    def start(self, timeout: float = 90.0) -> "EmbeddedKafka":
        """Start every node and return once a produce/consume round trip works."""
        self.format()
        for node in self.nodes:
            self.start_node(node)
        self.wait_until_ready(timeout)
        return self

    def start_node(self, node: KafkaNode) -> None:
        if node.running:
            return
        node.log_file.parent.mkdir(parents=True, exist_ok=True)
        node.log_handle = open(node.log_file, "ab")
        node.process = subprocess.Popen(
            self._java("kafka.Kafka", str(self._config_file(node))),
            stdout=node.log_handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent)
        log.info("Kafka node %d starting on %s (pid %d, log %s)",
                 node.node_id, node.address, node.process.pid, node.log_file)

    def wait_until_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for node in self.nodes:
            if node.process is not None and node.process.poll() is not None:
                raise RuntimeError(self._died(node))
        try:
            wait_until_ready({"bootstrap_servers": self.bootstrap_servers.split(",")},
                             max(1.0, deadline - time.monotonic()))
        except TimeoutError as err:
            dead = [self._died(n) for n in self.nodes
                    if n.process is not None and n.process.poll() is not None]
            raise RuntimeError("; ".join(dead) or str(err)) from err

    def _died(self, node: KafkaNode) -> str:
        tail = node.log_file.read_text(errors="replace").splitlines()[-5:] \
            if node.log_file.exists() else []
        return (f"Kafka node {node.node_id} exited with code {node.process.returncode}; "
                f"last lines of {node.log_file}:\n  " + "\n  ".join(tail))

    def stop_node(self, node: KafkaNode, *, kill: bool = False,
                  timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Stop one node: SIGTERM (controlled shutdown) or, with kill, SIGKILL."""
        if node.process is not None and node.process.poll() is None:
            node.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                node.process.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("Kafka node %d ignored SIGTERM for %.0fs; killing it",
                            node.node_id, timeout)
                node.process.kill()
                node.process.wait()
        if node.log_handle is not None:
            node.log_handle.close()
            node.log_handle = None

    def stop(self) -> None:
        # With the quorum shrinking, the last nodes of a cluster cannot finish a controlled
        # shutdown; they get a shorter grace period before SIGKILL.
        timeout = STOP_TIMEOUT_SECONDS if len(self.nodes) == 1 else 10.0
        for node in reversed(self.nodes):
            self.stop_node(node, timeout=timeout)

    def __enter__(self) -> "EmbeddedKafka":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def random_cluster_id() -> str:
    """16 random bytes in URL-safe base64 without padding, as `kafka-storage random-uuid`
    prints them; like Kafka's Uuid.randomUuid, never one starting with "-", which the
    storage tool's command line would take for an option."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id

