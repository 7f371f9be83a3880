"""docker/docker-compose.yml and docker/Dockerfile stay consistent with the jars, the
settings and the entry points. Docker itself cannot run here, so this checks what can be
checked: the file parses, the services and profiles exist, ports are published on
localhost only, and every service is wired to Kafka and to the shared state."""

import re

import pytest
import yaml

from crypto_pipeline.core.paths import PROJECT_ROOT
from crypto_pipeline.core.settings import Settings, fields

DOCKER = PROJECT_ROOT / "docker"
DEFAULTS = Settings.load(environ={}, env_file=None)
SETTING_NAMES = {spec.name.upper() for spec in fields()}
# Spark's own variable: which address the driver (and its UI) binds.
SPARK_VARIABLES = {"SPARK_LOCAL_IP"}
APP_SERVICES = ("producer", "spark", "dashboard")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "docker-compose.yml").read_text())


def pom_version(name: str) -> str:
    pom = (PROJECT_ROOT / "jvm" / "pom.xml").read_text()
    return re.search(rf"<{re.escape(name)}>([^<]+)</{re.escape(name)}>", pom).group(1)


def test_images_match_the_versions_the_scripts_use(compose):
    kafka_image = f"apache/kafka:{pom_version('kafka.version')}"
    for name in ("kafka", "kafka-2", "kafka-3"):
        assert compose["services"][name]["image"] == kafka_image
    pyspark = re.search(r"^pyspark==(\S+)$", (PROJECT_ROOT / "requirements.txt").read_text(),
                        re.M).group(1)
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert f"ARG SPARK_VERSION={pyspark}\n" in dockerfile
    assert "FROM apache/spark:${SPARK_VERSION}-python3 AS spark-job" in dockerfile
    # The connector comes from the same Maven file as the scripts' jars.
    assert "-P spark-connector -Dspark.version=${SPARK_VERSION}" in dockerfile


def test_kafka_is_reachable_from_the_host_and_from_containers(compose):
    kafka = compose["services"]["kafka"]
    host_port = DEFAULTS.kafka_bootstrap_servers.rpartition(":")[2]
    assert f"127.0.0.1:{host_port}:{host_port}" in kafka["ports"]
    advertised = kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    assert f"localhost:{host_port}" in advertised  # clients on the host
    assert "kafka:19092" in advertised  # clients on the compose network
    for name in re.findall(r"(\w+)://", advertised):
        assert f"{name}://" in kafka["environment"]["KAFKA_LISTENERS"]
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_the_cluster_profile_adds_brokers_to_the_same_quorum(compose):
    for number in (2, 3):
        broker = compose["services"][f"kafka-{number}"]
        assert broker["profiles"] == ["cluster"]
        assert broker["environment"]["KAFKA_NODE_ID"] == number
        assert broker["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
        assert broker["environment"]["KAFKA_ADVERTISED_LISTENERS"] == (
            f"PLAINTEXT://kafka-{number}:19092")


def test_every_pipeline_service_is_wired_to_kafka_and_the_shared_state(compose):
    services = compose["services"]
    for name in APP_SERVICES:
        service = services[name]
        environment = service["environment"]
        assert environment["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:19092"
        assert environment["KAFKA_MODE"] == "external"
        assert set(environment) <= SETTING_NAMES | SPARK_VARIABLES, \
            set(environment) - SETTING_NAMES - SPARK_VARIABLES
        assert "pipeline-state:/state" in service["volumes"]
        for path_setting in ("RUN_DIR", "HISTORY_DB", "CHECKPOINT_DIR"):
            assert environment[path_setting].startswith("/state/")
        assert service["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert service["build"]["dockerfile"] == "docker/Dockerfile"
        assert f"AS {service['build']['target']}" in (DOCKER / "Dockerfile").read_text()


def test_published_ports_are_the_settings_defaults_on_localhost(compose):
    def on_localhost(*ports):
        return [f"127.0.0.1:{port}:{port}" for port in ports]

    services = compose["services"]
    assert services["dashboard"]["ports"] == on_localhost(DEFAULTS.dashboard_port,
                                                          DEFAULTS.dashboard_metrics_port)
    assert services["spark"]["ports"] == on_localhost(DEFAULTS.spark_ui_port,
                                                      DEFAULTS.spark_metrics_port)
    assert services["producer"]["ports"] == on_localhost(DEFAULTS.producer_metrics_port)
    for name in APP_SERVICES:
        assert services[name]["environment"]["METRICS_ADDRESS"] == "0.0.0.0"


def test_commands_run_the_entry_points(compose):
    services = compose["services"]
    assert services["producer"]["command"] == ["python", "src/api_producer.py"]
    assert services["dashboard"]["command"][:4] == ["python", "-m", "streamlit", "run"]
    assert "src/dashboard.py" in services["dashboard"]["command"]
    assert "src/streaming_app.py" in (DOCKER / "Dockerfile").read_text()
    for script in ("api_producer.py", "dashboard.py", "streaming_app.py"):
        assert (PROJECT_ROOT / "src" / script).is_file()
