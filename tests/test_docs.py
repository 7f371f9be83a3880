"""The README stays true: every setting, command, file and picture it names exists, and
its configuration table is the one generated from the settings module."""

import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from crypto_pipeline.core.history import open_history
from crypto_pipeline.core.paths import PROJECT_ROOT
from crypto_pipeline.core.settings import Settings, fields, settings_table
from crypto_pipeline.core.status import COMPONENTS

README = (PROJECT_ROOT / "README.md").read_text()
# A setting's older name (HISTORY_DB) still works, so the README may name it.
SETTINGS = {spec.name.upper() for spec in fields()} | {
    spec.metadata["alias"][0] for spec in fields() if spec.metadata["alias"]}
# Variables that are not the pipeline's settings: Spark's own, the shell's, the tests'
# (SOAK_MINUTES: the soak's length) and an error class quoted in the troubleshooting table.
OTHER_VARIABLES = {"SPARK_LOCAL_IP", "JAVA_HOME", "PYTHONPATH",
                   "TEST_KAFKA_BOOTSTRAP", "KAFKA_DATA_LOSS", "SOAK_MINUTES"}


def between(name: str) -> str:
    match = re.search(rf"<!-- {name}:begin[^>]*-->\n(.*?)<!-- {name}:end -->", README, re.S)
    assert match, f"README lacks the {name} markers"
    return match.group(1)


def test_the_configuration_table_is_generated_from_the_settings():
    assert between("settings-table") == settings_table(), (
        "regenerate it: python3 src/pipelinectl.py settings-table, between the markers")


def test_every_variable_named_is_a_setting():
    # The generated table's texts name values too (SASL_SSL); its names are checked above.
    prose = README.replace(between("settings-table"), "")
    named = set(re.findall(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]*[A-Z0-9]\b", prose))
    named |= set(re.findall(r"\b([A-Z][A-Z0-9_]{2,})=", prose))
    unknown = named - SETTINGS - OTHER_VARIABLES
    assert not unknown, f"the README names variables that do not exist: {sorted(unknown)}"


def test_every_file_and_script_named_exists():
    paths = set(re.findall(r"(?<![.\w])((?:src|scripts|docker|tests|jvm|docs|bench)/"
                           r"[\w./-]*\w)", README))
    paths |= {name for name in re.findall(r"\./([\w-]+\.sh)\b", README)}
    missing = [path for path in sorted(paths)
               if "<" not in path and not (PROJECT_ROOT / path).exists()]
    assert not missing, f"the README names files that do not exist: {missing}"
    for script in re.findall(r"\./([\w-]+\.sh)\b", README):
        assert (PROJECT_ROOT / script).stat().st_mode & 0o111, f"{script} is not executable"


def test_every_picture_is_in_docs():
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README)
    assert pictures, "the README shows no screenshots"
    for picture in pictures:
        assert (PROJECT_ROOT / picture).is_file(), f"missing picture {picture}"


def test_pipelinectl_commands_named_exist():
    usage = subprocess.run([sys.executable, str(PROJECT_ROOT / "src" / "pipelinectl.py"),
                            "--help"], capture_output=True, text=True, check=True).stdout
    for command in set(re.findall(r"pipelinectl\.py ([a-z-]+)", README)):
        assert command in usage, f"pipelinectl.py has no command {command!r}"


def test_pytest_markers_named_exist(request):
    markers = {line.split(":")[0].strip() for line in request.config.getini("markers")}
    for marker in set(re.findall(r"-m (\w+)", README)):
        assert marker in markers, f"no pytest marker {marker!r}"


@pytest.mark.parametrize("component", COMPONENTS)
def test_every_component_is_named(component):
    assert f"`{component}`" in README


def test_the_prometheus_scrape_configs_scrape_the_default_ports():
    import yaml

    block = re.search(r"```yaml\n(scrape_configs:.*?)```", README, re.S)
    assert block, "the README lacks the Prometheus scrape_configs"
    targets = {target for job in yaml.safe_load(block.group(1))["scrape_configs"]
               for group in job["static_configs"] for target in group["targets"]}
    defaults = Settings.load(environ={}, env_file=None)
    assert targets == {f"localhost:{port}" for port in (
        defaults.producer_metrics_port, defaults.spark_metrics_port,
        defaults.dashboard_metrics_port, defaults.spark_ui_port)}


def test_the_psql_examples_run_and_find_what_they_say(postgres_url):
    """The README's SQL against a history the store wrote: the last hour of BTCUSDT, and
    the symbols of the last hour ordered by how far they moved."""
    queries = re.findall(r"```sql\n(.*?)```", README, re.S)
    assert len(queries) == 2, "the README shows two psql examples"
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    rows = []
    for symbol, move in (("BTCUSDT", 0.1), ("ETHUSDT", -0.3), ("SOLUSDT", 0.2)):
        for minutes in range(90, 0, -1):
            start = now - timedelta(minutes=minutes)
            price = 100.0 + move * (90 - minutes)
            rows.append({"symbol": symbol, "window_start": start,
                         "window_end": start + timedelta(minutes=5), "avg_price": price,
                         "min_price": price, "max_price": price, "count": 1, "spread": 0.0,
                         "open_price": price, "close_price": price + move,
                         "pct_change": 100 * move / price, "last_event_time": start,
                         "emitted_at": start})
    with open_history(postgres_url) as history:
        history.upsert(rows)
    with psycopg.connect(postgres_url) as connection:
        last_hour = connection.execute(queries[0]).fetchall()
        movers = connection.execute(queries[1]).fetchall()
    # Windows every minute; now() is a little past the minute the newest one started.
    assert len(last_hour) in (59, 60) and last_hour == sorted(last_hour)
    assert all(row[0] >= now - timedelta(hours=1) for row in last_hour)
    assert [row[0] for row in movers] == ["ETHUSDT", "SOLUSDT", "BTCUSDT"]
