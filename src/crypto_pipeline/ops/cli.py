"""pipelinectl: every command of the pipeline besides its three entry points.

    python3 src/pipelinectl.py start [NAME...]     what ./start.sh runs (after set-up)
    python3 src/pipelinectl.py stop [NAME...]      what ./stop.sh runs
    python3 src/pipelinectl.py status [--json] [NAME...]
                                                   one line per component (what ./status.sh
                                                   runs); exit 1 if one that should run is down
    python3 src/pipelinectl.py settings            every setting, secrets masked
    python3 src/pipelinectl.py get NAME            one setting's value (for scripts)
    python3 src/pipelinectl.py hash-password [--scheme S]
                                                   a salted hash for DASHBOARD_PASSWORD (reads
                                                   the password without echo, or from stdin)
    python3 src/pipelinectl.py kafka-client-properties
                                                   Kafka's Java client properties for these
                                                   settings, secrets included (scripts/kafka.sh)
    python3 src/pipelinectl.py env-example         .env.example, generated from the settings
    python3 src/pipelinectl.py settings-table      the README's configuration table
    python3 src/pipelinectl.py alerts-backtest [--hours H]
                                                   per symbol, the alerts the alert settings
                                                   would have raised on the history store's
                                                   last H hours of windows (24)
    python3 src/pipelinectl.py topics              create the topics that are missing
    python3 src/pipelinectl.py wait-kafka [S]      wait up to S s for a produce/consume round trip
    python3 src/pipelinectl.py supervise NAME      run NAME under a supervisor (start runs this)
    python3 src/pipelinectl.py kafka-server        the embedded broker in the foreground
    python3 src/pipelinectl.py spark-cluster start|stop
                                                   a local Spark standalone cluster
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import sys

from crypto_pipeline.alerts import backtest
from crypto_pipeline.alerts.rules import AlertRules
from crypto_pipeline.core import logs, passwords
from crypto_pipeline.core.history import open_history, problem
from crypto_pipeline.core.settings import Settings, env_example, load_or_exit, settings_table
from crypto_pipeline.core.status import COMPONENTS
from crypto_pipeline.core.waiting import WaitTimeout
from crypto_pipeline.kafka_io.clients import (
    client_config,
    java_client_properties,
    properties_file_text,
    wait_until_ready,
)
from crypto_pipeline.kafka_io.topics import ensure_topics
from crypto_pipeline.ops import control, launcher
from crypto_pipeline.ops.components import components
from crypto_pipeline.ops.kafka_server import serve
from crypto_pipeline.ops.spark_cluster import run_command
from crypto_pipeline.ops.supervisor import Supervisor

log = logging.getLogger(__name__)

# Commands a person or script reads the output of: the log shows only what went wrong.
_QUIET = ("status", "start", "stop", "get", "kafka-client-properties", "alerts-backtest")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pipelinectl", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    commands = parser.add_subparsers(dest="command", required=True)
    # No `choices` for component lists: argparse rejects an empty list against choices
    # (bpo-9625); names are checked by launcher.unknown_components.
    for name in ("start", "stop"):
        commands.add_parser(name).add_argument("components", nargs="*", metavar="COMPONENT")
    status = commands.add_parser("status")
    status.add_argument("--json", action="store_true", help="the same facts as JSON")
    status.add_argument("components", nargs="*", metavar="COMPONENT")
    commands.add_parser("settings")
    commands.add_parser("get").add_argument("name")
    commands.add_parser("hash-password").add_argument(
        "--scheme", choices=passwords.SCHEMES, default=passwords.SCRYPT)
    commands.add_parser("kafka-client-properties")
    commands.add_parser("env-example")
    commands.add_parser("settings-table")
    commands.add_parser("alerts-backtest").add_argument("--hours", type=float, default=24.0)
    commands.add_parser("topics")
    commands.add_parser("wait-kafka").add_argument("timeout", nargs="?", type=float, default=60)
    commands.add_parser("supervise").add_argument("component", choices=COMPONENTS)
    commands.add_parser("kafka-server")
    commands.add_parser("spark-cluster").add_argument("action", choices=("start", "stop"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "env-example":
        sys.stdout.write(env_example())
        return 0
    if args.command == "settings-table":
        sys.stdout.write(settings_table())
        return 0
    if args.command == "hash-password":
        return _hash_password(args.scheme)
    names = getattr(args, "components", None) or []
    usage = launcher.unknown_components(names)
    if usage:
        print(usage, file=sys.stderr)
        return launcher.EXIT_USAGE
    settings = load_or_exit()
    logs.configure("WARNING" if args.command in _QUIET else settings.log_level)
    return COMMANDS[args.command](settings, args)


def _start(settings: Settings, args: argparse.Namespace) -> int:
    return launcher.Launch(settings, args.components or COMPONENTS).run()


def _stop(settings: Settings, args: argparse.Namespace) -> int:
    return launcher.stop(settings, args.components or COMPONENTS)


def _status(settings: Settings, args: argparse.Namespace) -> int:
    report = control.status_report(settings, args.components or None)
    if args.json:
        print(json.dumps(control.status_json(report), indent=2, default=str))
    else:
        print("\n".join(control.status_lines(report)))
    return 0 if report.healthy else 1


def _settings(settings: Settings, _args: argparse.Namespace) -> int:
    print("\n".join(settings.describe()))
    return 0


def _get(settings: Settings, args: argparse.Namespace) -> int:
    value = settings.value_text(args.name)
    if value is None:
        print(f"error: no setting named {args.name}", file=sys.stderr)
        return 1
    print(value)
    return 0


def _hash_password(scheme: str) -> int:
    """Asked twice without echo on a terminal; otherwise stdin's first line (a script's)."""
    if sys.stdin.isatty():
        password = getpass.getpass("Dashboard password: ")
        if password != getpass.getpass("Again: "):
            print("error: the two passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("error: empty password", file=sys.stderr)
        return 1
    print(passwords.hash_password(password, scheme))
    return 0


def _kafka_client_properties(settings: Settings, _args: argparse.Namespace) -> int:
    sys.stdout.write(properties_file_text(java_client_properties(settings)))
    return 0


def _alerts_backtest(settings: Settings, args: argparse.Namespace) -> int:
    history = open_history(settings.history_url)
    try:
        since = backtest.range_start(history, args.hours)
        results = backtest.backtest(history, AlertRules.from_settings(settings), since)[0] \
            if since is not None else {}
    except history.errors as err:
        print(f"error: {problem(settings.history_url, err)}", file=sys.stderr)
        return 1
    finally:
        history.close()
    print("\n".join(backtest.report(results, args.hours, since)))
    return 0


def _topics(settings: Settings, _args: argparse.Namespace) -> int:
    created = ensure_topics(settings)
    print(f"created {', '.join(created)}" if created else "all topics exist")
    return 0


def _wait_kafka(settings: Settings, args: argparse.Namespace) -> int:
    try:
        wait_until_ready(client_config(settings), args.timeout)
    except WaitTimeout as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def _supervise(settings: Settings, args: argparse.Namespace) -> int:
    log.info("supervising %s", args.component)
    return Supervisor(components(settings)[args.component], settings.run_dir).run()


COMMANDS = {
    "start": _start, "stop": _stop, "status": _status, "settings": _settings, "get": _get,
    "kafka-client-properties": _kafka_client_properties,
    "alerts-backtest": _alerts_backtest,
    "topics": _topics, "wait-kafka": _wait_kafka, "supervise": _supervise,
    "kafka-server": lambda settings, _args: serve(settings),
    "spark-cluster": lambda settings, args: run_command(settings, args.action),
}
