"""Regenerate the README's screenshots from a running pipeline (what scripts/screenshots.sh runs).

    python3 src/screenshots.py
"""

import sys

from crypto_pipeline import logs, screenshots
from crypto_pipeline.paths import PROJECT_ROOT
from crypto_pipeline.settings import load_or_exit


def main() -> int:
    logs.configure(load_or_exit().log_level)
    for path in screenshots.take():
        print(path.relative_to(PROJECT_ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
