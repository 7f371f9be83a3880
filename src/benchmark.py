"""The benchmark: how many ticks and symbols this machine takes, and how fresh the numbers are.

    python3 src/benchmark.py [--quick]        (what ./bench.sh runs)

Prints a table of the figures against the targets and writes every figure as JSON under
bench/results/; a full run also puts the table in the README. --quick runs smaller phases
(a smoke run, not a measurement).
"""

import argparse
import logging
import sys

from crypto_pipeline import benchmark, logs
from crypto_pipeline.settings import load_or_exit

log = logging.getLogger("benchmark")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small phases, for a smoke run")
    args = parser.parse_args()
    settings = load_or_exit()
    logs.configure(settings.log_level)
    results = benchmark.run(benchmark.QUICK if args.quick else benchmark.Plan())
    path = benchmark.save(results).relative_to(benchmark.PROJECT_ROOT)
    print(benchmark.table(results))
    print(f"\nAll figures: {path}")
    if not args.quick:
        benchmark.README.write_text(benchmark.readme_with_table(
            benchmark.README.read_text(), results, str(path)))
        log.info("the README's benchmark table is updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
