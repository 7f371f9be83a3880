"""Small commands the scripts (and users) run against the pipeline's settings.

    python3 src/pipelinectl.py settings        every setting, secrets masked
    python3 src/pipelinectl.py env-example     .env.example, generated from the settings
    python3 src/pipelinectl.py topics          create the topics that are missing
    python3 src/pipelinectl.py wait-kafka [S]  wait up to S seconds for a produce/consume round trip
"""

import argparse
import logging
import sys

from crypto_pipeline import logs
from crypto_pipeline.kafka_clients import client_config, wait_until_ready
from crypto_pipeline.settings import env_example, load_or_exit
from crypto_pipeline.topics import ensure_topics

log = logging.getLogger("pipelinectl")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("settings")
    commands.add_parser("env-example")
    commands.add_parser("topics")
    wait = commands.add_parser("wait-kafka")
    wait.add_argument("timeout", nargs="?", type=float, default=60.0)
    args = parser.parse_args()

    if args.command == "env-example":
        sys.stdout.write(env_example())
        return 0
    settings = load_or_exit()
    logs.configure(settings.log_level)
    if args.command == "settings":
        print("\n".join(settings.describe()))
    elif args.command == "topics":
        created = ensure_topics(settings)
        print(f"created {', '.join(created)}" if created else "all topics exist")
    elif args.command == "wait-kafka":
        try:
            wait_until_ready(client_config(settings), args.timeout)
        except TimeoutError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
