"""docker/docker-compose.yml stays consistent with the jars and the settings (Docker itself
cannot run here, so this checks what can be checked: parse, services, ports, wiring)."""

import re

import yaml

from crypto_pipeline.paths import PROJECT_ROOT
from crypto_pipeline.settings import Settings

COMPOSE = PROJECT_ROOT / "docker" / "docker-compose.yml"


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_kafka_image_is_the_version_of_the_embedded_broker():
    pom = (PROJECT_ROOT / "jvm" / "pom.xml").read_text()
    version = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom).group(1)
    assert compose()["services"]["kafka"]["image"] == f"apache/kafka:{version}"


def test_kafka_is_reachable_from_the_host_and_from_containers():
    kafka = compose()["services"]["kafka"]
    default = Settings.load(environ={}, env_file=None).kafka_bootstrap_servers
    host_port = default.rpartition(":")[2]
    assert f"127.0.0.1:{host_port}:{host_port}" in kafka["ports"]
    advertised = kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert f"localhost:{host_port}" in advertised  # clients on the host
    assert "kafka:19092" in advertised  # clients on the compose network
    listeners = kafka["environment"]["KAFKA_LISTENERS"]
    for name in re.findall(r"(\w+)://", advertised):
        assert f"{name}://" in listeners
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
