"""The benchmark: how many ticks and symbols this machine takes, and how fresh the numbers are.

    python3 src/benchmark.py [--quick]        (what ./bench.sh runs)

Prints a table of the figures against the targets and writes every figure as JSON under
bench/results/. --quick runs smaller phases (a smoke run, not a measurement).
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
    plan = benchmark.Plan(throughput_ticks=300_000, ceiling_rows_per_batch=200_000,
                          ceiling_batches=3, latency_seconds=15) if args.quick \
        else benchmark.Plan()
    results = benchmark.run(plan)
    path = benchmark.save(results)
    print(benchmark.table(results))
    print(f"\nAll figures: {path.relative_to(benchmark.PROJECT_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
