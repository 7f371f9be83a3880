"""Every setting of the pipeline in one place: name, default, meaning and validation.

Each field of `Settings` is one environment variable (the field name in upper case).
Values come from the process environment first, then from `.env` in the project root,
then from the default declared here. `.env.example` and the README's configuration
table are checked against this module by the tests, so the three cannot drift.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, NoReturn
from urllib.parse import urlparse

from dotenv import dotenv_values

from crypto_pipeline.core.addresses import HostPort, is_loopback, parse_servers
from crypto_pipeline.core.history.url import mask_password, parse_history_url, sqlite_file
from crypto_pipeline.core.passwords import check_stored
from crypto_pipeline.core.paths import PROJECT_ROOT
from crypto_pipeline.core.schema import CANDLE_SECONDS
from crypto_pipeline.core.symbols import check_entry, matches, names, patterns


class SettingsError(ValueError):
    """A setting has a value the pipeline cannot run with; the message names it."""


CANDLE_MILLISECONDS = CANDLE_SECONDS * 1000

# --- value types -----------------------------------------------------------------------

_DURATION_UNITS = {
    "ms": 0.001, "millisecond": 0.001, "milliseconds": 0.001,
    "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*$")


@dataclass(frozen=True)
class Duration:
    """A span written as Spark writes intervals ("5 minutes"), with its length in seconds."""

    text: str
    seconds: float

    @classmethod
    def parse(cls, text: str) -> "Duration":
        match = _DURATION_RE.match(text)
        unit = _DURATION_UNITS.get(match.group(2).lower()) if match else None
        if unit is None:
            raise ValueError('expected a duration such as "30 seconds" or "5 minutes"')
        seconds = float(match.group(1)) * unit
        if seconds <= 0:
            raise ValueError("expected a duration greater than zero")
        return cls(text.strip(), seconds)

    @property
    def spark(self) -> str:
        """The interval in a form every Spark API accepts."""
        return f"{round(self.seconds * 1000)} milliseconds"

    def __str__(self) -> str:
        return self.text


# A symbol pattern: capital letters and digits with shell-style wildcards (`*`, `?`, `[...]`).


@dataclass(frozen=True)
class SymbolThresholds:
    """`PATTERN=NUMBER,...`: a number per symbol name or pattern (as in SYMBOLS); the
    first entry a symbol matches gives its number."""

    entries: tuple[tuple[str, float], ...]

    @classmethod
    def parse(cls, text: str) -> "SymbolThresholds":
        entries = []
        for item in (part.strip() for part in text.split(",")):
            pattern, equals, number = item.partition("=")
            if not equals:
                raise ValueError(f"{item!r}: expected PATTERN=PERCENT, e.g. BTCUSDT=0.5,*USDT=2")
            entries.append((check_entry(pattern), _number(0)(number.strip())))
        return cls(tuple(entries))

    def get(self, symbol: str, default: float) -> float:
        for pattern, value in self.entries:
            if matches(pattern, symbol):
                return value
        return default

    def __str__(self) -> str:
        return ",".join(f"{pattern}={value:g}" for pattern, value in self.entries)


def _symbols(text: str) -> tuple[str, ...]:
    symbols = tuple(check_entry(s) for s in text.split(",") if s.strip())
    if not symbols:
        raise ValueError("expected at least one symbol or pattern, e.g. BTCUSDT,ETHUSDT or "
                         "*USDT")
    if len(set(symbols)) != len(symbols):
        raise ValueError("a symbol is listed twice")
    return symbols


def _servers(text: str) -> str:
    return ",".join(map(str, parse_servers(text)))


def _number(minimum: float, *, inclusive: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError("expected a number") from None
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            raise ValueError(f"expected a number {'>=' if inclusive else '>'} {minimum:g}")
        return value

    return parse


def _integer(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError("expected a whole number") from None
        if value < minimum or (maximum is not None and value > maximum):
            upper = f" and <= {maximum}" if maximum is not None else ""
            raise ValueError(f"expected a whole number >= {minimum}{upper}")
        return value

    return parse


def _port(text: str) -> int:
    return _integer(1, 65535)(text)


def _port_or_off(text: str) -> int:
    return _integer(0, 65535)(text)


def _choice(*options: str) -> Callable[[str], str]:
    by_folded = {option.casefold(): option for option in options}

    def parse(text: str) -> str:
        value = by_folded.get(text.strip().casefold())
        if value is None:
            raise ValueError(f"expected one of {', '.join(options)}")
        return value

    return parse


def _jvm_size(text: str) -> str:
    if not re.fullmatch(r"\d+[kKmMgG]", text.strip()):
        raise ValueError("expected a JVM size such as 512m or 1g")
    return text.strip()


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _url(*schemes: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        parsed = urlparse(text.strip())
        if parsed.scheme not in schemes or not parsed.netloc:
            raise ValueError(f"expected a {' or '.join(schemes)} URL")
        return text.strip().rstrip("/")

    return parse


def _optional(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse_optional(text: str) -> Any:
        return parse(text) if text.strip() else None

    return parse_optional


def _path(text: str) -> Path:
    path = Path(text.strip()).expanduser()
    # Relative paths are anchored at the project, not the working directory: a
    # checkpoint that moves with `cd` silently loses the job's offsets.
    return path if path.is_absolute() else PROJECT_ROOT / path


def _location(text: str) -> Path | str:
    """A local path, or a URI any Spark worker can reach (hdfs://, s3a://, file:///...)."""
    return text.strip() if "://" in text else _path(text)


def _text(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text.strip()


def _password(text: str) -> str:
    """A plain password, or a hash that can be checked against (passwords.py)."""
    return check_stored(_text(text))


def _replication(text: str) -> int | None:
    return None if text.strip().lower() == "auto" else _integer(1, 5)(text)


def setting(default: str | None, help: str, parse: Callable[[str], Any] = _text,
            *, secret: bool = False, mask: Callable[[str], str] | None = None,
            group: str = "", alias: tuple[str, Callable[[str], Any]] | None = None) -> Any:
    """Declare one setting: its default as it would be written in `.env`, and its meaning.
    `secret`: the whole value is hidden wherever it is shown; `mask`: the value is shown
    through it (a URL with its password masked). `alias`: an older name and how its value
    is read, used when the setting itself is not set."""
    return field(default=None, metadata={
        "default": default, "help": help, "parse": parse, "secret": secret, "mask": mask,
        "group": group, "alias": alias})


def _shown(spec: dataclasses.Field, text: str) -> str:
    """A value as logs and pages may show it."""
    if spec.metadata["secret"]:
        return "***" if text else text
    return spec.metadata["mask"](text) if spec.metadata["mask"] else text


# --- the settings ----------------------------------------------------------------------

KAFKA, TOPICS, PRODUCER, SPARK, ALERTS, DASHBOARD, METRICS, GENERAL = (
    "Kafka", "Topics", "Producer", "Spark job", "Alerts and backfill", "Dashboard", "Metrics",
    "General")


@dataclass(frozen=True)
class Settings:
    # Kafka
    kafka_bootstrap_servers: str = setting(
        "localhost:9092", "one or more brokers, host:port, comma-separated", _servers, group=KAFKA)
    kafka_mode: str = setting(
        "embedded", "embedded (local KRaft broker from the official jars, no Docker), "
        "docker (docker/docker-compose.yml) or external (start nothing, use the servers above)",
        _choice("embedded", "docker", "external"), group=KAFKA)
    kafka_brokers: int = setting(
        "1", "number of brokers: the embedded cluster's size (1, or 3 for a KRaft cluster on "
        "this machine; node i listens on the first bootstrap port + 2i, its controller on the "
        "port after); 3 or more also makes topics replicated 3 times (min.insync.replicas 2)",
        _integer(1, 5), group=KAFKA)
    kafka_data_dir: Path = setting(
        "./data/kafka", "where the embedded broker keeps its log segments", _path, group=KAFKA)
    kafka_heap: str = setting(
        "512m", "JVM heap of each embedded broker (-Xmx)", _jvm_size, group=KAFKA)
    kafka_security_protocol: str = setting(
        "PLAINTEXT", "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL; passed to every client",
        _choice("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"), group=KAFKA)
    kafka_sasl_mechanism: str | None = setting(
        "", "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 when the protocol is SASL_*",
        _optional(_choice("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")), group=KAFKA)
    kafka_sasl_username: str | None = setting(
        "", "SASL user name", _optional(_text), group=KAFKA)
    kafka_sasl_password: str | None = setting(
        "", "SASL password (never logged)", _optional(_text), secret=True, group=KAFKA)
    kafka_ssl_cafile: Path | None = setting(
        "", "CA certificate (PEM) to verify the brokers with, for SSL and SASL_SSL",
        _optional(_path), group=KAFKA)

    # Topics
    input_topic: str = setting("crypto-topic", "normalized ticks", group=TOPICS)
    output_topic: str = setting(
        "crypto-aggregates", "window aggregates (compacted: latest value per key)", group=TOPICS)
    dlq_topic: str = setting("crypto-dlq", "rejected input, with the reason", group=TOPICS)
    alerts_topic: str = setting("crypto-alerts", "price spike alerts", group=TOPICS)
    candles_topic: str = setting(
        "crypto-candles", "1-minute candles (compacted: latest value per key)", group=TOPICS)
    topic_partitions: int = setting(
        "3", "partitions of each topic created by the pipeline", _integer(1, 1000), group=TOPICS)
    topic_replication_factor: int | None = setting(
        "auto", "replicas of each topic; auto = 3 on a cluster of 3 or more brokers, else 1",
        _replication, group=TOPICS)
    aggregates_retention: Duration = setting(
        "7 days", "how long superseded aggregates and alerts are kept (compact + delete)",
        Duration.parse, group=TOPICS)

    # Producer
    symbols: tuple[str, ...] = setting(
        "BTCUSDT,ETHUSDT", "any number of Binance symbols and shell-style patterns, "
        "comma-separated: *USDT (every USDT market), BTC*, * (every symbol); patterns are "
        "matched against the symbols exchangeInfo lists as TRADING, names are used as they "
        "are", _symbols, group=PRODUCER)
    symbols_refresh_seconds: float = setting(
        "3600", "how often patterns in SYMBOLS are matched again (new listings join, symbols "
        "that stop trading leave); a failed refresh keeps the last set", _number(0),
        group=PRODUCER)
    poll_interval_seconds: float = setting(
        "5", "producer polling period", _number(0), group=PRODUCER)
    price_source: str = setting(
        "binance", "binance (live REST), binance-ws (live trade stream), replay (a kline or "
        "tick file) or simulated (random walk); anything but binance* is labelled as such on "
        "the dashboard", _choice("binance", "binance-ws", "replay", "simulated"),
        group=PRODUCER)
    binance_base_url: str = setting(
        "https://api.binance.com", "REST base URL; also https://data-api.binance.vision, "
        "https://api.binance.us, or a local test server", _url("http", "https"),
        group=PRODUCER)
    binance_ws_url: str = setting(
        "wss://stream.binance.com:9443", "WebSocket base URL for binance-ws; also "
        "wss://data-stream.binance.vision", _url("ws", "wss"), group=PRODUCER)
    http_connect_timeout_seconds: float = setting(
        "3", "connect timeout of each Binance request and WebSocket handshake", _number(0),
        group=PRODUCER)
    http_read_timeout_seconds: float = setting(
        "10", "read timeout of each Binance request", _number(0), group=PRODUCER)
    replay_file: Path | None = setting(
        "", "kline file (Binance layout, with or without header) or tick file (JSON lines) "
        "for replay", _optional(_path), group=PRODUCER)
    replay_speed: float = setting(
        "1.0", "replay speed: 1 = real time, 60 = a minute per second, 0 = as fast as possible",
        _number(0, inclusive=True), group=PRODUCER)
    producer_transactional_id: str | None = setting(
        "", "Kafka transactional id of the producer (unset: crypto-pipeline-INPUT_TOPIC-"
        "PRICE_SOURCE); a producer started with the same id fences the one before it",
        _optional(_text), group=PRODUCER)
    producer_buffer_ticks: int = setting(
        "100000", "ticks held while Kafka is unreachable; beyond that the oldest are dropped "
        "and counted", _integer(1), group=PRODUCER)

    # Spark job
    spark_master: str = setting("local[*]", "any Spark master URL", group=SPARK)
    window_duration: Duration = setting(
        "5 minutes", "length of each window", Duration.parse, group=SPARK)
    window_slide: Duration = setting(
        "1 minute", "a new window starts every ...", Duration.parse, group=SPARK)
    watermark_delay: Duration = setting(
        "2 minutes", "how late a tick may arrive and still count", Duration.parse, group=SPARK)
    trigger_interval: Duration = setting(
        "1 second", "Spark micro-batch trigger: a tick waits half of it on average before its "
        "batch starts; a longer one spreads each batch's fixed cost over more ticks (higher "
        "throughput, later aggregates)", Duration.parse, group=SPARK)
    max_offsets_per_trigger: int = setting(
        "1000000", "most ticks read per micro-batch (bounds a catch-up batch)", _integer(1),
        group=SPARK)
    shuffle_partitions: int = setting(
        "2", "spark.sql.shuffle.partitions: about the number of cores (Spark's 200 is far "
        "too many; each is a state store committed every batch); fixed by the checkpoint",
        _integer(1, 10000), group=SPARK)
    max_clock_skew: Duration = setting(
        "1 minute", "ticks whose event time is further than this in the future are rejected "
        "(keep it below WATERMARK_DELAY: a future tick moves the watermark)", Duration.parse,
        group=SPARK)
    checkpoint_dir: Path | str = setting(
        "./checkpoints/crypto-aggregates", "Spark checkpoint of the aggregation query (the "
        "dead-letter query uses the same path with -dlq appended); on a cluster, a location "
        "every worker reaches (hdfs://..., s3a://..., a shared mount)", _location, group=SPARK)
    history_url: str = setting(
        "sqlite:///./data/history.sqlite", "the history store: every emitted aggregate "
        "(latest value per window) and the alerts sent, read by the dashboard on start; "
        "sqlite:///path (a file on this machine, relative to the project; sqlite:////path "
        "for an absolute one) or postgresql://user:password@host:port/database (the "
        "password is masked wherever settings are shown); HISTORY_DB, the old setting (a "
        "SQLite file path), still counts when this is not set", parse_history_url,
        mask=mask_password, alias=("HISTORY_DB", sqlite_file), group=SPARK)
    history_retention: Duration = setting(
        "30 days", "the history store keeps aggregates, candles and alerts this long (windows "
        "that ended longer ago are deleted when the Spark job starts, then daily)",
        Duration.parse, group=SPARK)
    history_connect_timeout: Duration = setting(
        "30 seconds", "how long the Spark job, starting, waits for a history database that "
        "does not answer (one restarting) before it stops with an error", Duration.parse,
        group=SPARK)
    spark_ui_port: int = setting("4040", "Spark UI port", _port, group=SPARK)
    spark_worker_cores: int = setting(
        "2", "cores of the worker `pipelinectl spark-cluster start` runs (SPARK_MASTER="
        "spark://...)", _integer(1, 1024), group=SPARK)
    spark_worker_memory: str = setting(
        "2g", "memory of that worker", _jvm_size, group=SPARK)

    # Alerts and backfill
    alert_pct_threshold: float = setting(
        "1.0", "alert when a window moves more than this many percent (close vs. open)",
        _number(0), group=ALERTS)
    alert_pct_thresholds: SymbolThresholds | None = setting(
        "", "per-symbol thresholds instead of ALERT_PCT_THRESHOLD: PATTERN=PERCENT, comma-"
        "separated, shell-style patterns (BTCUSDT=0.5,*USDT=2); the first that matches counts",
        _optional(SymbolThresholds.parse), group=ALERTS)
    alert_cooldown: Duration = setting(
        "15 minutes", "after an alert for a symbol and direction, the next one waits this long "
        "(in window time) unless its move exceeds the alerted one by more than the threshold",
        Duration.parse, group=ALERTS)
    alert_zscore_threshold: float = setting(
        "3.0", "alert when a window's return is this many standard deviations from recent ones",
        _number(0), group=ALERTS)
    alert_zscore_windows: int = setting(
        "60", "recent returns the z-score compares with: the pct_change of this many of the "
        "symbol's latest windows that ended by the window's start", _integer(2), group=ALERTS)
    alert_zscore_min_windows: int = setting(
        "20", "no z-score alert for a symbol with fewer such windows in the history store",
        _integer(2), group=ALERTS)
    alert_webhook_url: str | None = setting(
        "", "Slack-compatible webhook for alerts (unset: no webhook)",
        _optional(_url("http", "https")), secret=True, group=ALERTS)
    backfill_enabled: bool = setting(
        "true", "compute the last BACKFILL_HOURS of history from klines on start", _boolean,
        group=ALERTS)
    backfill_hours: float = setting(
        "24", "how much history the backfill fetches", _number(0), group=ALERTS)
    backfill_file: Path | None = setting(
        "", "read the backfill from this kline file instead of Binance", _optional(_path),
        group=ALERTS)

    # Dashboard
    dashboard_port: int = setting("8501", "dashboard port", _port, group=DASHBOARD)
    dashboard_address: str = setting(
        "127.0.0.1", "address the dashboard listens on (0.0.0.0 to expose it)", group=DASHBOARD)
    dashboard_password: str | None = setting(
        "", "unset: no login; set: a password page guards the dashboard. The password, or "
        "better a salted hash of it (scrypt$... or pbkdf2_sha256$..., printed by "
        "`pipelinectl.py hash-password`; single-quote it in .env)",
        _optional(_password), secret=True, group=DASHBOARD)
    dashboard_session_hours: float = setting(
        "12", "a sign-in lasts this long; then the page asks for the password again",
        _number(0), group=DASHBOARD)
    dashboard_login_max_failures: int = setting(
        "5", "wrong passwords in a row from one address before it is locked out (each "
        "answer waits twice as long as the one before, from 0.5 s)", _integer(1),
        group=DASHBOARD)
    dashboard_login_lockout: Duration = setting(
        "15 minutes", "how long a locked-out address gets no password checked; a success "
        "or this long without a failure clears an address's count", Duration.parse,
        group=DASHBOARD)
    dashboard_ssl_cert_file: Path | None = setting(
        "", "certificate (PEM) to serve the dashboard over HTTPS (Streamlit's "
        "server.sslCertFile; with DASHBOARD_SSL_KEY_FILE)", _optional(_path), group=DASHBOARD)
    dashboard_ssl_key_file: Path | None = setting(
        "", "its private key (server.sslKeyFile)", _optional(_path), group=DASHBOARD)
    dashboard_refresh_seconds: float = setting(
        "2", "how often the live panels refresh (adjustable in the sidebar)", _number(0),
        group=DASHBOARD)
    partial_window_pct: float = setting(
        "20", "a window or candle of a polling source missing more than this percent of its "
        "polls (POLL_INTERVAL_SECONDS) is marked partial on the page", _number(0, inclusive=True),
        group=DASHBOARD)
    stale_after_seconds: float = setting(
        "60", "the dashboard marks data stale when the newest aggregate is older than this",
        _number(0), group=DASHBOARD)
    dashboard_history_hours: float = setting(
        "24", "hours of windows the dashboard holds per symbol, counted back from the newest "
        "(its memory: about 136 bytes a window and 80 a candle; 2,000 symbols x 24 h is "
        "about 0.62 GB)",
        _number(0), group=DASHBOARD)

    # Metrics
    metrics_address: str = setting(
        "127.0.0.1", "address the /metrics endpoints listen on (0.0.0.0 inside a container)",
        group=METRICS)
    producer_metrics_port: int = setting(
        "8001", "the producer's Prometheus endpoint, http://METRICS_ADDRESS:PORT/metrics "
        "(0: off)", _port_or_off, group=METRICS)
    spark_metrics_port: int = setting(
        "8002", "the Spark job's (0: off)", _port_or_off, group=METRICS)
    dashboard_metrics_port: int = setting(
        "8003", "the dashboard's (0: off)", _port_or_off, group=METRICS)

    # General
    run_dir: Path = setting(
        "./logs/run", "pid files and each component's status file (read by status.sh and "
        "the dashboard)", _path, group=GENERAL)
    log_level: str = setting(
        "INFO", "DEBUG, INFO, WARNING or ERROR", _choice("DEBUG", "INFO", "WARNING", "ERROR"),
        group=GENERAL)
    chromium: Path = setting(
        "/usr/bin/chromium", "the Chromium the browser tests, the benchmark and "
        "scripts/screenshots.sh drive (Debian's chromium package)", _path, group=GENERAL)

    # --- reading and checking ----------------------------------------------------------

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None,
             env_file: Path | None = PROJECT_ROOT / ".env", **overrides: Any) -> "Settings":
        """Read every setting (explicit overrides > environment > .env > default)."""
        environ = os.environ if environ is None else environ
        from_file = dotenv_values(env_file) if env_file and env_file.is_file() else {}
        values: dict[str, Any] = {}
        for spec in fields():
            if spec.name in overrides:
                values[spec.name] = overrides[spec.name]
                continue
            name, raw, parse = _raw_value(spec, environ, from_file)
            try:
                values[spec.name] = parse(raw)
            except ValueError as err:
                shown = "***" if spec.metadata["secret"] else repr(_shown(spec, raw))
                raise SettingsError(f"{name}={shown}: {err}") from None
        settings = cls(**values)
        settings._check()
        return settings._with_cluster_bootstrap()

    def _with_cluster_bootstrap(self) -> "Settings":
        """An embedded cluster named by its first broker: clients get every broker, so they
        can still connect while that one is down."""
        servers = self.kafka_servers
        if self.kafka_mode != "embedded" or self.kafka_brokers == 1 or len(servers) > 1:
            return self
        host, port = servers[0]
        every = ",".join(f"{host}:{port + 2 * i}" for i in range(self.kafka_brokers))
        return self.replace(kafka_bootstrap_servers=every)

    @property
    def kafka_servers(self) -> tuple[HostPort, ...]:
        return parse_servers(self.kafka_bootstrap_servers)

    def _check(self) -> None:
        if self.window_slide.seconds > self.window_duration.seconds:
            raise SettingsError(
                f"WINDOW_SLIDE={self.window_slide}: must not exceed "
                f"WINDOW_DURATION={self.window_duration}")
        slide, duration = (round(d.seconds * 1000) for d in (self.window_slide,
                                                              self.window_duration))
        if CANDLE_MILLISECONDS % slide or duration % slide or duration < CANDLE_MILLISECONDS:
            # The job takes each 1-minute candle from the last minute of the window that
            # ends with it, so some window must end at every minute.
            raise SettingsError(
                f"WINDOW_SLIDE={self.window_slide}, WINDOW_DURATION={self.window_duration}: the "
                f"slide must divide one minute and the duration, and the duration be at least "
                f"a minute (candles are taken from the windows' last minute)")
        if self.price_source == "replay" and self.replay_file is None:
            raise SettingsError("REPLAY_FILE is required when PRICE_SOURCE=replay")
        if self.kafka_security_protocol.startswith("SASL_") and not (
                self.kafka_sasl_mechanism and self.kafka_sasl_username
                and self.kafka_sasl_password):
            raise SettingsError(
                f"KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are "
                f"required when KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol}")
        if (self.dashboard_ssl_cert_file is None) != (self.dashboard_ssl_key_file is None):
            raise SettingsError("DASHBOARD_SSL_CERT_FILE and DASHBOARD_SSL_KEY_FILE go together: "
                                "set both for HTTPS, or neither")

    @property
    def replication_factor(self) -> int:
        if self.topic_replication_factor is not None:
            return self.topic_replication_factor
        return 3 if self.kafka_brokers >= 3 else 1

    @property
    def dlq_checkpoint_dir(self) -> Path | str:
        if isinstance(self.checkpoint_dir, str):
            return self.checkpoint_dir.rstrip("/") + "-dlq"
        return self.checkpoint_dir.with_name(self.checkpoint_dir.name + "-dlq")

    @property
    def dashboard_exposed(self) -> bool:
        """Served beyond this machine without a password (said in the log and on the page)."""
        return not self.dashboard_password and not is_loopback(self.dashboard_address)

    @property
    def symbol_names(self) -> tuple[str, ...]:
        """The plain names of SYMBOLS (no patterns), in their order."""
        return names(self.symbols)

    @property
    def symbol_patterns(self) -> tuple[str, ...]:
        return patterns(self.symbols)

    @property
    def is_live_source(self) -> bool:
        return self.price_source in ("binance", "binance-ws")

    def value_text(self, name: str) -> str | None:
        """A setting's value as it would be written in `.env` (unset: ""); None when there
        is no setting of that name."""
        spec = _FIELDS_BY_NAME.get(name.lower())
        return None if spec is None else _as_text(getattr(self, spec.name))

    def shown(self, name: str) -> str:
        """A setting's value as logs and pages may show it (secrets masked)."""
        spec = _FIELDS_BY_NAME[name.lower()]
        return _shown(spec, _as_text(getattr(self, spec.name)))

    def describe(self) -> list[str]:
        """`NAME=value` lines for logs, secrets masked."""
        return [f"{spec.name.upper()}={self.shown(spec.name)}" for spec in fields()]

    def to_environ(self) -> dict[str, str]:
        """Environment variables that make another process load exactly these settings
        (every one set, so neither its environment nor a .env file can change them)."""
        # An optional setting left unset is written as its default, which means unset.
        return {spec.name.upper(): spec.metadata["default"] if getattr(self, spec.name) is None
                else self.value_text(spec.name) for spec in fields()}

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)


def fields() -> tuple[dataclasses.Field, ...]:
    """The declared settings, in order."""
    return dataclasses.fields(Settings)


_FIELDS_BY_NAME = {spec.name: spec for spec in fields()}


def _raw_value(spec: dataclasses.Field, environ: Mapping[str, str],
               from_file: Mapping[str, str | None]) -> tuple[str, str, Callable[[str], Any]]:
    """(the name it was found under, its text, how to parse it): the environment before
    .env, in each the setting's name before its alias, then the default."""
    name, parse = spec.name.upper(), spec.metadata["parse"]
    names = [(name, parse)]
    if spec.metadata["alias"]:
        names.append(spec.metadata["alias"])
    for source in (environ, from_file):
        for found, parse_found in names:
            if source.get(found) is not None:
                return found, source[found], parse_found
    return name, spec.metadata["default"], parse


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    return ",".join(value) if isinstance(value, tuple) else str(value)


# Exit status of a process stopped by its configuration (a bad setting, an unknown
# symbol): the supervisor does not restart it, since a restart cannot fix it.
EXIT_CONFIG_ERROR = 2


def exit_config_error(message: str) -> NoReturn:
    """End the process with one line on stderr and EXIT_CONFIG_ERROR."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(EXIT_CONFIG_ERROR)


def load_or_exit(**overrides: Any) -> Settings:
    """Settings for an entry point: a bad value ends the process with one line naming it."""
    try:
        return Settings.load(**overrides)
    except SettingsError as err:
        exit_config_error(str(err))


def settings_table() -> str:
    """The README's configuration table (Markdown): every setting, default and meaning."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    group = None
    for spec in fields():
        if spec.metadata["group"] != group:
            group = spec.metadata["group"]
            lines.append(f"| **{group}** | | |")
        default = spec.metadata["default"]
        shown = f"`{default}`" if default else "unset"
        meaning = spec.metadata["help"].replace("|", "\\|")
        lines.append(f"| `{spec.name.upper()}` | {shown} | {meaning} |")
    return "\n".join(lines) + "\n"


def env_example() -> str:
    """The text of `.env.example`: every setting, grouped, with its meaning and default."""
    lines = ["# Settings of the crypto price pipeline, with their defaults.",
             "# Copy to .env and change what you need; the environment overrides .env.",
             "# Generated by `python3 src/pipelinectl.py env-example`; a test keeps it in sync."]
    group = None
    for spec in fields():
        if spec.metadata["group"] != group:
            group = spec.metadata["group"]
            lines += ["", f"# --- {group} ---"]
        lines.append(f"# {spec.metadata['help']}")
        lines.append(f"{spec.name.upper()}={spec.metadata['default'] or ''}")
    return "\n".join(lines) + "\n"
