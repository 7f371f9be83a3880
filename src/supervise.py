"""Run one pipeline component under supervision (what ./start.sh starts in the background).

    python3 src/supervise.py kafka|producer|spark|dashboard

Restarts the component after a crash with backoff; SIGTERM stops it cleanly.
"""

import logging
import sys

from crypto_pipeline import logs
from crypto_pipeline.components import components
from crypto_pipeline.settings import exit_config_error, load_or_exit
from crypto_pipeline.supervisor import Supervisor


def main() -> int:
    settings = load_or_exit()
    logs.configure(settings.log_level)
    available = components(settings)
    if len(sys.argv) != 2 or sys.argv[1] not in available:
        exit_config_error(f"usage: supervise.py {'|'.join(available)}")
    logging.getLogger("supervise").info("supervising %s", sys.argv[1])
    return Supervisor(available[sys.argv[1]], settings.run_dir).run()


if __name__ == "__main__":
    sys.exit(main())
