"""Small commands the scripts (and users) run against the pipeline.

    python3 src/pipelinectl.py settings            every setting, secrets masked
    python3 src/pipelinectl.py get NAME            one setting's value (for the scripts)
    python3 src/pipelinectl.py env-example         .env.example, generated from the settings
    python3 src/pipelinectl.py settings-table      the README's configuration table
    python3 src/pipelinectl.py topics              create the topics that are missing
    python3 src/pipelinectl.py wait-kafka [S]      wait up to S s for a produce/consume round trip
    python3 src/pipelinectl.py running NAME        exit 0 when NAME's supervisor is running
    python3 src/pipelinectl.py ports NAME          exit 1 (and say which) when NAME's ports are taken
    python3 src/pipelinectl.py wait NAME S         wait up to S s for NAME to be healthy
    python3 src/pipelinectl.py stop NAME           stop NAME gracefully (SIGKILL after a timeout)
    python3 src/pipelinectl.py status [NAME...]    one line per component; exit 1 if one is down
"""

import argparse
import logging
import sys

from crypto_pipeline import control, logs
from crypto_pipeline.components import ORDER, components
from crypto_pipeline.kafka_clients import client_config, wait_until_ready
from crypto_pipeline.settings import env_example, load_or_exit, settings_table
from crypto_pipeline.status import read_status
from crypto_pipeline.topics import ensure_topics

log = logging.getLogger("pipelinectl")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("settings")
    commands.add_parser("get").add_argument("name")
    commands.add_parser("env-example")
    commands.add_parser("settings-table")
    commands.add_parser("topics")
    commands.add_parser("wait-kafka").add_argument("timeout", nargs="?", type=float, default=60)
    for name in ("running", "ports", "stop"):
        commands.add_parser(name).add_argument("component", choices=ORDER)
    wait = commands.add_parser("wait")
    wait.add_argument("component", choices=ORDER)
    wait.add_argument("timeout", type=float)
    # No `choices` here: argparse rejects an empty list against choices (bpo-9625).
    commands.add_parser("status").add_argument("expected", nargs="*", metavar="COMPONENT")
    args = parser.parse_args()

    if args.command == "env-example":
        sys.stdout.write(env_example())
        return 0
    if args.command == "settings-table":
        sys.stdout.write(settings_table())
        return 0
    settings = load_or_exit()
    logs.configure("WARNING" if args.command in ("status", "running", "ports") else
                   settings.log_level)

    if args.command == "settings":
        print("\n".join(settings.describe()))
    elif args.command == "get":
        value = getattr(settings, args.name.lower(), None)
        if value is None and args.name.lower() not in settings.__dataclass_fields__:
            print(f"error: no setting named {args.name}", file=sys.stderr)
            return 1
        print(",".join(value) if isinstance(value, tuple) else "" if value is None else value)
    elif args.command == "topics":
        created = ensure_topics(settings)
        print(f"created {', '.join(created)}" if created else "all topics exist")
    elif args.command == "wait-kafka":
        try:
            wait_until_ready(client_config(settings), args.timeout)
        except TimeoutError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    elif args.command == "running":
        return 0 if control.supervisor_pid(settings, args.component) else 1
    elif args.command == "ports":
        busy = control.busy_ports(components(settings)[args.component])
        if busy:
            print(f"port {', '.join(map(str, busy))} already in use by another program")
            return 1
    elif args.command == "wait":
        reason = control.wait_started(settings, args.component, args.timeout)
        if reason:
            print(reason)
            return 1
        print("  ".join(control.component_detail(settings, args.component)))
        error = (read_status(settings.run_dir, args.component) or {}).get("last_error")
        if error:
            print(f"    warning: {error}")
    elif args.command == "stop":
        print(control.stop(settings, args.component))
    elif args.command == "status":
        unknown = sorted(set(args.expected) - set(ORDER))
        if unknown:
            parser.error(f"unknown component {', '.join(unknown)} (expected: {', '.join(ORDER)})")
        lines, healthy = control.status_lines(settings, args.expected or None)
        print("\n".join(lines))
        return 0 if healthy else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
