"""The figures against their targets: the table printed, the JSON saved, the README's table."""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.plan import GIB, RESULTS_DIR

log = logging.getLogger(__name__)

def table(results: dict[str, Any]) -> str:
    """The figures against the targets, as a Markdown table."""
    ceiling, drain, best = results["ceiling"], results["drain"], results["sustained"]
    latency, memory = results["latency"], results["memory_bytes"]
    agg, page = latency["tick_to_aggregate_seconds"], latency["tick_to_page_seconds"]
    per_poll = {count: r["requests_per_poll"]
                for count, r in results["producer_requests"].items()}

    def met(ok: bool) -> str:
        return "yes" if ok else "**no**"

    def pcts(p: dict) -> str:
        return f"{p['p50']} / {p['p95']} / {p['p99']} s (n={p['n']:,})"

    components = ", ".join(f"{name} {rss / GIB:.2f}" for name, rss in memory.items()
                           if name != "total")
    rows = [
        (f"Spark's ceiling: the job's aggregation (dedupe, windows), rate source → noop, "
         f"{ceiling['rows_per_batch']:,} ticks per batch",
         "—", f"{ceiling['rows_per_second']:,} ticks/s", "—", ceiling["load_average"]),
        (f"Catch-up: the job drains {drain['ticks']:,} ticks over {drain['symbols']} symbols",
         "—", f"{drain['rows_per_second']:,} ticks/s ({drain['percent_of_ceiling']} % of "
         f"ceiling)", "—", drain["load_average"]),
        *((f"Live: {live['offered_per_second']:,} ticks/s for {live['seconds']:.0f} s, event "
           f"time now, trigger {live['trigger']}",
           "keeps up", f"processed {live['processed_per_second']:,}/s, backlog "
           f"{live['backlog_first']:,} → {live['backlog_last']:,}, median batch "
           f"{live['batch_seconds_median']} s, {live['state_rows_last']:,} state rows",
           "yes" if live["keeps_up"] else "no", live["load_average"])
          for live in results["live"]),
        ("Sustained throughput: the highest live rate kept up",
         "≥ 200,000 ticks/s and ≥ 40 % of ceiling",
         f"{best['ticks_per_second']:,} ticks/s ({best['percent_of_ceiling']} % of ceiling)"
         if best["ticks_per_second"] else "none of the rates tried",
         met(bool(best["ticks_per_second"]) and best["ticks_per_second"] >= 200_000
             and best["percent_of_ceiling"] >= 40), "—"),
        (f"Tick → aggregate p50/p95/p99 at {latency['rate']:,.0f}/s, trigger "
         f"{latency['trigger']}", "p95 ≤ 2 s", pcts(agg),
         met(agg["p95"] is not None and agg["p95"] <= 2), latency["load_average"]),
        (f"Tick → page p50/p95/p99 (refresh {latency['page_refresh_seconds']:g} s)",
         "p95 ≤ 3 s", pcts(page), met(page["p95"] is not None and page["p95"] <= 3),
         latency["load_average"]),
        ("Peak RSS, whole stack (GiB)", "≤ 2.5 GB",
         f"{memory['total'] / GIB:.2f} ({components})", met(memory["total"] <= 2.5e9),
         latency["load_average"]),
        ("Producer requests per poll (2 / 200 symbols)", "independent of symbols",
         " / ".join(str(v) for v in per_poll.values()), met(len(set(per_poll.values())) == 1),
         "—"),
    ]
    lines = ["| figure | target | measured | met | load avg |", "|---|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows]
    return "\n".join(lines)


def save(results: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromisoformat(results["started_at"]).strftime("%Y%m%d-%H%M%S")
    path = RESULTS_DIR / f"bench-{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def readme_with_table(readme: str, results: dict[str, Any], results_path: str) -> str:
    """The README with the table between its bench-table markers replaced."""
    machine = results["machine"]
    section = (f"Last full run: {results['started_at'][:16].replace('T', ' ')} UTC on "
               f"{machine['cpus']} cores, load average {machine['load_average_at_start']} "
               f"at the start (the machine may be shared); all figures in "
               f"`{results_path}`.\n\n{table(results)}\n")
    pattern = re.compile(r"(<!-- bench-table:begin -->\n).*?(<!-- bench-table:end -->)", re.S)
    if not pattern.search(readme):
        raise ValueError("the README lacks the bench-table markers")
    return pattern.sub(lambda match: match.group(1) + section + match.group(2), readme)
