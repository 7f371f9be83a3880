"""The benchmark: how many ticks and symbols this machine takes, and how fresh the numbers are.

    PYTHONPATH=src:tests python -m bench [--quick] [--only pipeline|market]   (./bench.sh)

Prints a table of the figures against the targets and writes every figure as JSON under
bench/results/; a full run also puts the table in the README. --quick runs smaller phases
(a smoke run, not a measurement); --only pipeline runs phases 1-6, --only market the
market phases alone (2,000 symbols through producer, job and dashboard); each puts its
table in the README.
"""

import argparse
import logging
import sys

from bench import report
from bench.plan import QUICK, README, Plan
from bench.run import PARTS, run
from crypto_pipeline.core import logs
from crypto_pipeline.core.paths import PROJECT_ROOT
from crypto_pipeline.core.settings import load_or_exit

log = logging.getLogger("bench")


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small phases, for a smoke run")
    parser.add_argument("--only", choices=PARTS, default="all",
                        help="only these phases (pipeline: 1-6; market: 2,000 symbols end to end)")
    args = parser.parse_args()
    logs.configure(load_or_exit().log_level)
    results = run(QUICK if args.quick else Plan(), args.only)
    path = report.save(results).relative_to(PROJECT_ROOT)
    if "ceilings" in results:
        print(report.table(results))
    if "market" in results:
        print(report.market_table(results))
    print(f"\nAll figures: {path}")
    if not args.quick:
        readme = README.read_text()
        if "ceilings" in results:
            readme = report.readme_with_table(readme, results, str(path))
        if "market" in results:
            readme = report.readme_with_market_table(readme, results, str(path))
        README.write_text(readme)
        log.info("the README's benchmark tables are updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
