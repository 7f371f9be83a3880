"""docker/docker-compose.yml and docker/Dockerfile stay consistent with the jars, the
settings and the entry points. Docker itself cannot run here, so this checks what can be
checked: the file parses, the services and profiles exist, ports are published on
localhost only, every service is wired to Kafka and to the shared state, and the cluster
profile (docker/cluster.env) puts the history in its PostgreSQL service."""

import re
from urllib.parse import urlsplit

import pytest
import yaml

from crypto_pipeline.core.history import sqlite_url
from crypto_pipeline.core.paths import PROJECT_ROOT
from crypto_pipeline.core.settings import Settings, SettingsError, fields

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
        for path_setting in ("RUN_DIR", "CHECKPOINT_DIR"):
            assert environment[path_setting].startswith("/state/")
        assert environment["HISTORY_URL"] == "${HISTORY_URL:-sqlite:////state/history.sqlite}"
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


def interpolated(text: str, variables: dict[str, str]) -> str:
    """Compose's ${NAME} and ${NAME:-default}, as it reads both files."""
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}",
                  lambda m: variables.get(m.group(1)) or (m.group(2) or ""), text)


def env_file(path) -> dict[str, str]:
    variables: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            variables[name] = interpolated(value, variables)
    return variables


def test_the_history_is_a_sqlite_file_on_the_shared_state_by_default(compose):
    environment = compose["x-pipeline-environment"]
    settings = Settings.load(environ={"HISTORY_URL": interpolated(environment["HISTORY_URL"], {})},
                             env_file=None)
    assert settings.history_url == sqlite_url("/state/history.sqlite")


def test_the_cluster_profile_puts_the_history_in_its_postgres_service(compose):
    postgres = compose["services"]["postgres"]
    assert re.fullmatch(r"postgres:\d+", postgres["image"]), "the official image, a major tag"
    assert postgres["profiles"] == ["cluster"]
    assert postgres["ports"] == ["127.0.0.1:5432:5432"]
    assert "pg_isready" in postgres["healthcheck"]["test"][1]
    assert "postgres-data" in compose["volumes"]

    cluster = env_file(DOCKER / "cluster.env")
    assert cluster["COMPOSE_PROFILES"] == "cluster" and cluster["KAFKA_BROKERS"] == "3"
    url = urlsplit(cluster["HISTORY_URL"])
    service = {name: interpolated(value, cluster)
               for name, value in postgres["environment"].items()}
    assert (url.scheme, url.hostname, url.port) == ("postgresql", "postgres", 5432)
    assert (url.username, url.password, url.path) == (
        service["POSTGRES_USER"], service["POSTGRES_PASSWORD"], f"/{service['POSTGRES_DB']}")

    # Every service of the run is pointed at it, and waits for it when it runs.
    environment = compose["x-pipeline-environment"]
    shown = Settings.load(environ={"HISTORY_URL": interpolated(environment["HISTORY_URL"],
                                                               cluster)}, env_file=None)
    assert shown.history_url == cluster["HISTORY_URL"]
    assert "HISTORY_URL=postgresql://crypto:***@postgres:5432/crypto" in shown.describe()
    for name in ("spark", "dashboard"):
        assert compose["services"][name]["depends_on"]["postgres"] == {
            "condition": "service_healthy", "required": False}
    with pytest.raises(SettingsError):
        Settings.load(environ={"HISTORY_URL": "postgres:5432/crypto"}, env_file=None)
