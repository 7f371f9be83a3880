"""Settings: defaults per the contract, validation with one clear line, secrets masked."""

import subprocess
import sys
from pathlib import Path

import pytest

from crypto_pipeline.core.history import sqlite_url
from crypto_pipeline.core.paths import PROJECT_ROOT
from crypto_pipeline.core.settings import Settings, SettingsError, env_example, fields


def load(**env):
    return Settings.load(environ=env, env_file=None)


def test_defaults_are_the_contracts():
    s = load()
    assert s.kafka_bootstrap_servers == "localhost:9092"
    assert s.kafka_mode == "embedded"
    assert (s.input_topic, s.output_topic, s.dlq_topic) == (
        "crypto-topic", "crypto-aggregates", "crypto-dlq")
    assert s.symbols == ("BTCUSDT", "ETHUSDT")
    assert s.poll_interval_seconds == 5
    assert s.price_source == "binance"
    assert s.binance_base_url == "https://api.binance.com"
    assert s.replay_speed == 1.0
    assert (s.window_duration.seconds, s.window_slide.seconds, s.watermark_delay.seconds) == (
        300, 60, 120)
    assert s.trigger_interval.seconds <= 10
    assert s.checkpoint_dir == PROJECT_ROOT / "checkpoints" / "crypto-aggregates"
    assert s.spark_master == "local[*]"
    assert s.dashboard_port == 8501 and s.dashboard_password is None
    assert s.dashboard_address == "127.0.0.1"
    assert s.dashboard_session_hours == 12 and s.dashboard_login_max_failures == 5
    assert s.dashboard_login_lockout.seconds == 900
    assert s.candles_topic == "crypto-candles" and s.history_retention.seconds == 30 * 86400
    assert s.alert_cooldown.seconds == 900 and s.alert_pct_thresholds is None
    assert s.alert_pct_threshold == 1.0 and s.partial_window_pct == 20


def test_thresholds_per_symbol_pattern_read_back_as_written():
    s = load(ALERT_PCT_THRESHOLDS=" btcusdt=0.5, *USDT=2 ,ETH?BTC=1.25")
    assert s.alert_pct_thresholds.entries == (("BTCUSDT", 0.5), ("*USDT", 2.0),
                                              ("ETH?BTC", 1.25))
    assert s.value_text("ALERT_PCT_THRESHOLDS") == "BTCUSDT=0.5,*USDT=2,ETH?BTC=1.25"
    assert load(**{"ALERT_PCT_THRESHOLDS": s.value_text("ALERT_PCT_THRESHOLDS")}) == s


@pytest.mark.parametrize("name,value,message", [
    ("POLL_INTERVAL_SECONDS", "abc", "POLL_INTERVAL_SECONDS='abc': expected a number"),
    ("POLL_INTERVAL_SECONDS", "0", "POLL_INTERVAL_SECONDS='0': expected a number > 0"),
    ("KAFKA_MODE", "k8s", "KAFKA_MODE='k8s': expected one of embedded, docker, external"),
    ("SYMBOLS", "BTC-USDT", "SYMBOLS='BTC-USDT': 'BTC-USDT' is not a Binance symbol"),
    ("WINDOW_DURATION", "5 parsecs", "WINDOW_DURATION='5 parsecs': expected a duration"),
    ("KAFKA_BOOTSTRAP_SERVERS", "localhost", "KAFKA_BOOTSTRAP_SERVERS='localhost': "),
    ("DASHBOARD_PORT", "70000", "DASHBOARD_PORT='70000': expected a whole number"),
    ("BINANCE_BASE_URL", "api.binance.com", "BINANCE_BASE_URL='api.binance.com': expected"),
    ("ALERT_PCT_THRESHOLDS", "BTCUSDT:0.5", "ALERT_PCT_THRESHOLDS='BTCUSDT:0.5': 'BTCUSDT:0.5'"
                                            ": expected PATTERN=PERCENT"),
    ("ALERT_PCT_THRESHOLDS", "BTCUSDT=-1", "ALERT_PCT_THRESHOLDS='BTCUSDT=-1': expected a"),
    ("HISTORY_RETENTION", "forever", "HISTORY_RETENTION='forever': expected a duration"),
])
def test_a_bad_value_names_the_variable(name, value, message):
    with pytest.raises(SettingsError) as err:
        load(**{name: value})
    assert str(err.value).startswith(message)


def test_cross_field_rules():
    with pytest.raises(SettingsError, match="WINDOW_SLIDE"):
        load(WINDOW_SLIDE="10 minutes")
    # Candles come from the windows' last minute: some window must end at every minute.
    for slide, duration in (("2 minutes", "10 minutes"), ("40 seconds", "4 minutes"),
                            ("30 seconds", "45 seconds"), ("20 seconds", "70 seconds")):
        with pytest.raises(SettingsError, match="the slide must divide one minute"):
            load(WINDOW_SLIDE=slide, WINDOW_DURATION=duration)
    assert load(WINDOW_SLIDE="30 seconds", WINDOW_DURATION="90 seconds").window_slide.seconds == 30
    with pytest.raises(SettingsError, match="REPLAY_FILE is required"):
        load(PRICE_SOURCE="replay")
    with pytest.raises(SettingsError, match="DASHBOARD_SSL_CERT_FILE and DASHBOARD_SSL_KEY_FILE"):
        load(DASHBOARD_SSL_CERT_FILE="cert.pem")


def test_metrics_ports_default_to_8001_8003_and_0_turns_one_off():
    s = load()
    assert (s.producer_metrics_port, s.spark_metrics_port, s.dashboard_metrics_port) == (
        8001, 8002, 8003)
    assert s.metrics_address == "127.0.0.1"
    assert load(SPARK_METRICS_PORT="0").spark_metrics_port == 0
    with pytest.raises(SettingsError, match="DASHBOARD_PORT='0'"):
        load(DASHBOARD_PORT="0")


def test_the_dashboard_is_exposed_when_served_beyond_localhost_without_a_password():
    assert not load().dashboard_exposed
    assert load(DASHBOARD_ADDRESS="0.0.0.0").dashboard_exposed
    assert not load(DASHBOARD_ADDRESS="0.0.0.0", DASHBOARD_PASSWORD="s3cret").dashboard_exposed
    assert not load(DASHBOARD_ADDRESS="::1").dashboard_exposed


def test_symbols_are_normalized():
    assert load(SYMBOLS=" btcusdt, ETHUSDT ,solusdt").symbols == ("BTCUSDT", "ETHUSDT", "SOLUSDT")


def test_environment_beats_dotenv_beats_default(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("POLL_INTERVAL_SECONDS=7\nSYMBOLS=SOLUSDT\n")
    s = Settings.load(environ={"POLL_INTERVAL_SECONDS": "9"}, env_file=env_file)
    assert s.poll_interval_seconds == 9
    assert s.symbols == ("SOLUSDT",)
    assert s.input_topic == "crypto-topic"


def test_secrets_are_masked_in_descriptions_and_errors():
    s = load(DASHBOARD_PASSWORD="hunter2", KAFKA_SASL_PASSWORD="pw",
             KAFKA_SECURITY_PROTOCOL="SASL_SSL", KAFKA_SASL_MECHANISM="PLAIN",
             KAFKA_SASL_USERNAME="u")
    text = "\n".join(s.describe())
    assert "hunter2" not in text and "DASHBOARD_PASSWORD=***" in text
    assert "KAFKA_SASL_PASSWORD=***" in text
    with pytest.raises(SettingsError) as err:
        load(ALERT_WEBHOOK_URL="not a url with a token")
    assert "token" not in str(err.value)


def test_relative_paths_are_anchored_at_the_project():
    assert load(CHECKPOINT_DIR="ck").checkpoint_dir == PROJECT_ROOT / "ck"
    assert load(CHECKPOINT_DIR="/tmp/ck").checkpoint_dir == Path("/tmp/ck")


def test_env_example_is_generated_from_the_settings():
    committed = (PROJECT_ROOT / ".env.example").read_text()
    assert committed == env_example(), \
        "regenerate: python3 src/pipelinectl.py env-example > .env.example"
    for spec in fields():
        assert f"\n{spec.name.upper()}=" in committed
    assert "hunter2" not in committed


def test_an_entry_point_stops_with_one_line_naming_the_setting():
    result = subprocess.run(
        [sys.executable, str(PROJECT_ROOT / "src" / "api_producer.py")],
        env={"POLL_INTERVAL_SECONDS": "abc", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip() == "error: POLL_INTERVAL_SECONDS='abc': expected a number"
    assert result.stdout == ""


def test_a_checkpoint_can_be_a_location_every_worker_reaches():
    s = load(CHECKPOINT_DIR="hdfs://namenode:8020/crypto/checkpoints")
    assert s.checkpoint_dir == "hdfs://namenode:8020/crypto/checkpoints"
    assert s.dlq_checkpoint_dir == "hdfs://namenode:8020/crypto/checkpoints-dlq"
    assert load().dlq_checkpoint_dir == PROJECT_ROOT / "checkpoints" / "crypto-aggregates-dlq"


def test_the_history_url_defaults_to_the_sqlite_file_history_db_named():
    default = sqlite_url(PROJECT_ROOT / "data" / "history.sqlite")
    assert load().history_url == default
    # HISTORY_DB, the old setting, still works: a SQLite path, relative to the project.
    assert load(HISTORY_DB="./data/history.sqlite").history_url == default
    assert load(HISTORY_DB="/tmp/h.sqlite").history_url == "sqlite:////tmp/h.sqlite"
    assert load(HISTORY_URL="sqlite:///data/h.sqlite").history_url == sqlite_url(
        PROJECT_ROOT / "data" / "h.sqlite")


def test_history_url_wins_over_history_db_and_the_environment_over_dotenv(tmp_path):
    postgres = "postgresql://crypto:pw@db.internal:5432/crypto"
    assert load(HISTORY_URL=postgres, HISTORY_DB="/tmp/old.sqlite").history_url == postgres
    env_file = tmp_path / ".env"
    env_file.write_text(f"HISTORY_URL={postgres}\n")
    s = Settings.load(environ={"HISTORY_DB": "/tmp/old.sqlite"}, env_file=env_file)
    assert s.history_url == "sqlite:////tmp/old.sqlite"
    assert Settings.load(environ={}, env_file=env_file).history_url == postgres


@pytest.mark.parametrize("value,problem", [
    ("mysql://u:hunter2@h/db", "expected sqlite:///path/to/file.sqlite or postgresql://"),
    ("localhost:5432/crypto", "expected sqlite:///"),
    ("postgresql://u:hunter2@h:port/db", "Port could not be cast"),
    ("postgresql://u:hunter2@h:5432", "no database name"),
    ("sqlite://host/file.sqlite", "sqlite:/// then the file's path"),
])
def test_a_bad_history_url_is_named_with_its_password_masked(value, problem):
    with pytest.raises(SettingsError) as err:
        load(HISTORY_URL=value)
    assert str(err.value).startswith("HISTORY_URL='") and problem in str(err.value)
    assert "hunter2" not in str(err.value)


def test_the_history_password_is_masked_wherever_settings_are_shown():
    url = "postgresql://crypto:hunter2@db.internal:5432/crypto?sslmode=require"
    s = load(HISTORY_URL=url)
    assert "HISTORY_URL=postgresql://crypto:***@db.internal:5432/crypto?sslmode=require" in \
        s.describe()
    assert "hunter2" not in "\n".join(s.describe())
    assert s.shown("history_url") == "postgresql://crypto:***@db.internal:5432/crypto" \
                                     "?sslmode=require"
    # Another process gets the URL itself.
    assert Settings.load(environ=s.to_environ(), env_file=None).history_url == url
    assert load(HISTORY_URL="postgresql://crypto@db/crypto?password=hunter2").shown(
        "history_url") == "postgresql://crypto@db/crypto?password=***"
