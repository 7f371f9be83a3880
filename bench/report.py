"""The figures against their targets: the table printed, the JSON saved, the README's table."""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.plan import GB, RESULTS_DIR

log = logging.getLogger(__name__)

def table(results: dict[str, Any]) -> str:
    """The figures against the targets, as a Markdown table."""
    ceilings, drain, best = results["ceilings"], results["drain"], results["sustained"]
    agg = results["latency"]["tick_to_aggregate_seconds"]
    page = results["page_latency"]["tick_to_page_seconds"]
    per_poll = {count: r["requests_per_poll"]
                for count, r in results["producer_requests"].items()}
    seed, job = ceilings["seed"], ceilings["job"]

    def met(ok: bool) -> str:
        return "yes" if ok else "**no**"

    def pcts(p: dict) -> str:
        return f"{p['p50']} / {p['p95']} / {p['p99']} s (n={p['n']:,})"

    def gb(memory: dict[str, int] | None) -> str:
        if not memory:
            return "—"
        parts = ", ".join(f"{name} {rss / GB:.2f}" for name, rss in memory.items()
                          if name != "total")
        return f"{memory['total'] / GB:.2f} GB ({parts})"

    share = best["percent_of_ceiling"] or {}
    rows = [
        (f"Spark's ceiling, the seed's aggregation (avg/min/max/count, sliding windows), "
         f"rate source → noop, {seed['rows_per_batch']:,} ticks per batch", "—",
         f"{seed['rows_per_second']:,} ticks/s", "—", seed["load_average"]),
        ("Spark's ceiling, the job's aggregation (every statistic), rate source → noop", "—",
         f"{job['rows_per_second']:,} ticks/s", "—", job["load_average"]),
        (f"Catch-up: the job (both queries) drains {drain['ticks']:,} ticks over "
         f"{drain['symbols']} symbols", "—",
         f"{drain['rows_per_second']:,} ticks/s "
         f"({100 * drain['rows_per_second'] / seed['rows_per_second']:.1f} % of the seed's "
         f"ceiling)", "—", drain["load_average"]),
        *((f"Live: {live['offered_per_second']:,} ticks/s for {live['seconds']:.0f} s, event "
           f"time now, trigger {live['trigger']}", "keeps up",
           f"processed {live['processed_per_second']:,}/s, backlog {live['backlog_first']:,} "
           f"→ {live['backlog_last']:,}, median batch {live['batch_seconds_median']} s, "
           f"{live['state_rows_last']:,} state rows",
           "yes" if live["keeps_up"] else "no", live["load_average"])
          for live in results["live"]),
        ("Sustained throughput, live: the highest rate kept up (and the first above it "
         "that was not)", "≥ 100,000 ticks/s",
         (f"{best['ticks_per_second']:,} ticks/s ({share.get('seed')} % of the seed's ceiling, "
          f"{share.get('job')} % of the job's)" if best["ticks_per_second"]
          else "none of the rates tried")
         + (f"; {best['first_not_kept_up']:,}/s not" if best["first_not_kept_up"] else ""),
         met(bool(best["ticks_per_second"]) and best["ticks_per_second"] >= 100_000), "—"),
        ("Peak RSS during that live phase (broker, job, load generator)", "≤ 2.5 GB",
         gb(best["memory_bytes"]),
         met(bool(best["memory_bytes"]) and best["memory_bytes"]["total"] <= 2.5 * GB), "—"),
        (f"Tick → aggregate p50/p95/p99 at {results['latency']['rate']:,.0f}/s, trigger "
         f"{results['latency']['trigger']}, no browser", "p95 ≤ 1.5 s", pcts(agg),
         met(agg["p95"] is not None and agg["p95"] <= 1.5), results["latency"]["load_average"]),
        (f"Tick → page p50/p95/p99 (refresh {results['page_latency']['page_refresh_seconds']:g}"
         f" s, Chromium on the same cores)", "p95 ≤ 2.5 s", pcts(page),
         met(page["p95"] is not None and page["p95"] <= 2.5),
         results["page_latency"]["load_average"]),
        ("Peak RSS, whole stack with the dashboard (phases 4-5)", "≤ 2.5 GB",
         gb(results["stack_memory_bytes"]),
         met(results["stack_memory_bytes"]["total"] <= 2.5 * GB), "—"),
        ("Producer requests per poll (2 / 200 symbols)", "independent of symbols",
         " / ".join(str(v) for v in per_poll.values()), met(len(set(per_poll.values())) == 1),
         "—"),
    ]
    lines = ["| figure | target | measured | met | load avg |", "|---|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows]
    return "\n".join(lines)


def market_table(results: dict[str, Any]) -> str:
    """The market phases' figures against their targets, as a Markdown table."""
    market = results["market"]
    rest, ws, stack = market["rest"], market["ws"], market["stack"]
    backfill, page = stack["backfill"], stack["dashboard"]
    restarted, memory = stack["dashboard_restarted"], market["memory_bytes"]
    refresh = page["refresh"]

    def met(ok: bool) -> str:
        return "yes" if ok else "**no**"

    def gb(value: int) -> str:
        return f"{value / GB:.2f} GB"

    first, second = page["first_visitor"], page["next_visitor"]
    hours = results["plan"]["market"]["backfill_hours"]
    meanwhile = backfill["live_batches_meanwhile"]
    after = stack["batches_after_backfill"]
    drains = ", ".join(f"{d:g} s" if d is not None else "never" for d in
                       ws["burst_drain_seconds"])
    components = ", ".join(f"{name} {rss / GB:.2f}" for name, rss in memory.items()
                           if name != "total")
    rows = [
        (f"Producer, REST: {rest['symbols']:,} symbols (SYMBOLS=*USDT) every "
         f"{rest['poll_seconds']:g} s", "one request per poll",
         f"{rest['ticks_per_second']:,} ticks/s, {rest['requests_per_poll']} requests per "
         f"poll, {rest['rate_limited']} × 429, CPU {rest['producer_cpu_percent']} %, RSS "
         f"{gb(rest['producer_rss_bytes'])}", met(rest["requests_per_poll"] == 1.0),
         rest["load_average"]),
        (f"Producer, trade streams: {ws['symbols']:,} symbols at "
         f"{ws['offered_per_second']:,.0f} trades/s, bursts of {ws['burst_trades']:,}",
         "every trade, once", f"{ws['steady_ticks_per_second']:,} ticks/s steady, peak "
         f"{ws['peak_ticks_per_second']:,}/s, bursts through in {drains}, "
         f"{ws['connections']} connections, {ws['trades_lost']:,} lost of "
         f"{ws['trades_served']:,}, CPU {ws['producer_cpu_percent']} %",
         met(ws["trades_lost"] == 0), ws["load_average"]),
        (f"Backfill: {backfill['symbols']:,} symbols × {hours:g} h, "
         f"{backfill['klines_requests']:,} requests (weight {backfill['weight']:,}) while live "
         f"batches go on", "no 429", f"{backfill['seconds']:,} s, "
         f"{backfill['rate_limited']} × 429, {backfill['windows_written']:,} windows; live "
         f"meanwhile: {meanwhile['batches']} batches, median {meanwhile['median_seconds']} s",
         met(backfill["rate_limited"] == 0 and backfill["state"] == "finished"),
         stack["load_average"]),
        (f"Job at {stack['symbols']:,} symbols, 400 ticks/s, after the backfill", "—",
         f"median batch {after['median_seconds']} s (max {after['max_seconds']}), "
         f"{after['state_rows']:,} state rows", "—", stack["load_average"]),
        ("Dashboard: first render, server time (new visitor / first visitor of a cold "
         "server)", "≤ 5 s", f"{second['server_seconds']} s / {first['server_seconds']} s",
         met(second["server_seconds"] <= 5), stack["load_average"]),
        ("Dashboard: each live refresh, server time (mean / p95 / max)", "≤ 1 s",
         f"{refresh['mean_seconds']} / {refresh['p95_seconds']} / {refresh['max_seconds']} s "
         f"(n={refresh['runs']})", met(refresh["p95_seconds"] <= 1), stack["load_average"]),
        (f"Dashboard RSS holding {page['windows_held']:,} windows "
         f"({stack['symbols']:,} symbols × {hours:g} h of backfill and live)", "bounded",
         f"{gb(page['rss_bytes_after_refreshes'])}; after a restart (the windows read back "
         f"from the history store in {restarted['all_windows_held_seconds']} s) "
         f"{gb(restarted['rss_bytes'])}", "—", stack["load_average"]),
        ("Peak RSS, whole stack (GB)", "—", f"{memory['total'] / GB:.2f} ({components})",
         "—", stack["load_average"]),
    ]
    lines = ["| figure | target | measured | met | load avg |", "|---|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows]
    return "\n".join(lines)


def readme_with_market_table(readme: str, results: dict[str, Any], results_path: str) -> str:
    """The README with the table between its bench-market markers replaced."""
    return _with_section(readme, "bench-market", "Last run", market_table(results), results,
                         results_path)


def save(results: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromisoformat(results["started_at"]).strftime("%Y%m%d-%H%M%S")
    kind = "bench" if "ceilings" in results else "bench-market"
    path = RESULTS_DIR / f"{kind}-{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def readme_with_table(readme: str, results: dict[str, Any], results_path: str) -> str:
    """The README with the table between its bench-table markers replaced."""
    return _with_section(readme, "bench-table", "Last full run", table(results), results,
                         results_path)


def _with_section(readme: str, marker: str, heading: str, table_text: str,
                  results: dict[str, Any], results_path: str) -> str:
    """The README with what stands between its `marker` begin and end comments replaced
    by the run's machine line and `table_text`."""
    machine = results["machine"]
    section = (f"{heading}: {results['started_at'][:16].replace('T', ' ')} UTC on "
               f"{machine['cpus']} cores, load average {machine['load_average_at_start']} "
               f"at the start (the machine may be shared); all figures in "
               f"`{results_path}`.\n\n{table_text}\n")
    pattern = re.compile(rf"(<!-- {marker}:begin -->\n).*?(<!-- {marker}:end -->)", re.S)
    if not pattern.search(readme):
        raise ValueError(f"the README lacks the {marker} markers")
    return pattern.sub(lambda match: match.group(1) + section + match.group(2), readme)
