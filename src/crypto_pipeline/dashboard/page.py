"""The dashboard page: sidebar controls, then live panels that refresh in a fragment:
the market overview of every symbol first, then cards and charts of the symbols chosen
(by default those SYMBOLS names, else the top movers).

Only the fragment reruns on the timer, so the page updates in place. Every panel is
drawn from one store snapshot and the feed's health; nothing here talks to Kafka. Each
run's server time goes to the metrics collector (page: a whole run, the first render of
a visitor; panels: the live panels, which is all a refresh runs).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pandas as pd
import streamlit as st

from crypto_pipeline.core import formatting as fmt
from crypto_pipeline.core.processes import pid_alive
from crypto_pipeline.core.settings import Settings
from crypto_pipeline.core.status import ProducerStatus, SparkStatus
from crypto_pipeline.dashboard import auth, charts, views
from crypto_pipeline.dashboard.feed import FeedHealth, KafkaFeed
from crypto_pipeline.dashboard.live_chart import live_chart
from crypto_pipeline.dashboard.metrics import DashboardCollector
from crypto_pipeline.dashboard.store import Snapshot

log = logging.getLogger(__name__)

MIN_REFRESH_SECONDS, MAX_REFRESH_SECONDS = 0.5, 300.0
DEFAULT_TIME_RANGE = "1 hour"
# The first visitor of a fresh server waits this long at most for the feed's first
# catch-up; a larger topic goes on loading behind a "loading" notice.
FIRST_ANSWER_TIMEOUT_SECONDS = 5.0
# KPIs side by side on a card: more would cut a BTC price short ("97,43…"), so a card of
# trades shows volume and VWAP in a second row.
KPIS_PER_ROW = len(views.KPIS)
OVERVIEW_HEIGHT = 420  # pixels: about a dozen rows, the rest a scroll away
ROW_HEIGHT = 35  # pixels of a row of st.dataframe: a short table takes no more room
# One format for a column of prices from BTC's to a coin's worth a millionth of it: eight
# significant digits (the values are rounded to the decimals their cards show).
PRICE_FORMAT = "%.8g"
OVERVIEW_CONFIG = {
    "symbol": st.column_config.TextColumn("Symbol", pinned=True),
    "last_price": st.column_config.NumberColumn("Last price", format=PRICE_FORMAT,
                                                help="close of the newest window"),
    "change_pct": st.column_config.NumberColumn("Change %", format="%+.2f%%"),
    "spread": st.column_config.NumberColumn("Spread", format=PRICE_FORMAT,
                                            help="max - min over the window"),
    "spread_pct": st.column_config.NumberColumn("Spread %", format="%.3f%%",
                                                help="spread as % of the average price"),
    "ticks": st.column_config.NumberColumn("Ticks", format="localized"),
    "volume": st.column_config.NumberColumn("Volume", format=PRICE_FORMAT,
                                            help="traded quantity, where ticks are trades"),
    "vwap": st.column_config.NumberColumn("VWAP", format=PRICE_FORMAT),
    "window_start": st.column_config.DatetimeColumn("Since (UTC)", format="HH:mm",
                                                    help="start of the window"),
}


@st.cache_resource(show_spinner="Reading the aggregates from Kafka…", max_entries=1,
                   validate=lambda feed: feed.alive, on_release=lambda feed: feed.stop())
def shared_feed(settings: Settings) -> KafkaFeed:
    """The one feed of this server process, shared by every session and rerun; other
    settings (a changed .env) replace it."""
    log.info("starting the dashboard feed: %s on %s", settings.output_topic,
             settings.kafka_bootstrap_servers)
    feed = KafkaFeed(settings).start()
    feed.wait_for_first_answer(FIRST_ANSWER_TIMEOUT_SECONDS)
    return feed


@dataclass(frozen=True)
class Controls:
    refresh_seconds: float
    time_range: str
    symbol_options: tuple[str, ...]
    symbols: tuple[str, ...]  # empty: the top movers


def run(settings: Settings, collector: DashboardCollector) -> None:
    began = time.perf_counter()
    try:
        _page(settings, collector)
    finally:
        collector.rendered("page", time.perf_counter() - began)


def _page(settings: Settings, collector: DashboardCollector) -> None:
    collector.logins = auth.logins_for(settings)
    if not auth.signed_in(settings):
        return
    feed = shared_feed(settings)
    collector.feed = feed
    controls = _sidebar(settings, feed.store.snapshot())
    st.title("Crypto prices")
    if settings.dashboard_exposed:
        _warn_exposed(settings.dashboard_address)
        st.warning(f"This dashboard listens on {settings.dashboard_address} without a "
                   f"password: anyone who reaches port {settings.dashboard_port} sees it. Set "
                   f"DASHBOARD_PASSWORD (python3 src/pipelinectl.py hash-password prints a "
                   f"hash to put there).", icon=":material/lock_open:")
    st.fragment(_live, run_every=controls.refresh_seconds)(settings, feed, controls,
                                                          collector)


@st.cache_resource(show_spinner=False)
def _warn_exposed(address: str) -> None:
    """Once per server process, not on every rerun."""
    log.warning("the dashboard listens on %s without a password (DASHBOARD_PASSWORD): "
                "anyone who reaches it sees it", address)


def _sidebar(settings: Settings, snapshot: Snapshot) -> Controls:
    options = tuple(sorted(set(settings.symbol_names) | set(snapshot.symbols)))
    with st.sidebar:
        st.header("View")
        symbols = st.multiselect("Symbols", options, default=settings.symbol_names,
                                 key="symbols", placeholder="Top movers",
                                 help="Cards and charts of these symbols; none chosen: the "
                                      "top movers of the overview")
        time_range = st.radio("Time range", list(views.TIME_RANGES),
                              index=list(views.TIME_RANGES).index(DEFAULT_TIME_RANGE),
                              key="time_range")
        refresh = st.number_input(
            "Refresh every (seconds)", min_value=MIN_REFRESH_SECONDS,
            max_value=MAX_REFRESH_SECONDS, step=0.5, key="refresh_seconds",
            value=min(MAX_REFRESH_SECONDS, max(MIN_REFRESH_SECONDS,
                                               settings.dashboard_refresh_seconds)))
        st.caption(f"Windows of {settings.window_duration} sliding every "
                   f"{settings.window_slide}, from {settings.output_topic}; 1-minute candles "
                   f"from {settings.candles_topic}; on {settings.kafka_bootstrap_servers}.")
    return Controls(refresh, time_range, options, tuple(symbols))


def _live(settings: Settings, feed: KafkaFeed, controls: Controls,
          collector: DashboardCollector) -> None:
    began = time.perf_counter()
    try:
        _panels(settings, feed, controls)
    finally:
        collector.rendered("panels", time.perf_counter() - began)


def _panels(settings: Settings, feed: KafkaFeed, controls: Controls) -> None:
    if auth.session_expired(settings):
        st.rerun(scope="app")  # to the password page
    snapshot = feed.store.snapshot()
    if not set(snapshot.symbols) <= set(controls.symbol_options):
        # A symbol appeared: the sidebar (outside this fragment) must list it.
        st.rerun(scope="app")
    health = feed.health()
    fresh = views.freshness(snapshot.newest_emitted_at, datetime.now(timezone.utc),
                            settings.stale_after_seconds)
    banner = views.source_banner(settings)
    if banner:
        with st.container(key="source-banner"):
            st.warning(banner, icon=":material/science:")
    notices = views.diagnose(
        settings, health, has_data=bool(len(snapshot)), stale=fresh.stale,
        producer=_reported(ProducerStatus.read(settings.run_dir)),
        spark=_reported(SparkStatus.read(settings.run_dir)))
    with st.container(key="notices"):
        for notice in notices:
            getattr(st, notice.level)(notice.text)
    _status_row(health, fresh, snapshot)
    if not len(snapshot):
        st.info("No aggregates to show yet: the overview, cards and charts appear with the "
                "first window.")
        return
    market = _overview(settings, views.market_frame(snapshot))
    symbols = controls.symbols or views.mover_symbols(market)
    st.subheader(", ".join(symbols) if controls.symbols else
                 "Top movers" + (f": {', '.join(symbols)}" if symbols else ""))
    if not controls.symbols:
        st.caption("Choose symbols in the sidebar to see them here instead.")
    cards = views.cards(snapshot, symbols, settings.partial_window_pct)
    if not cards:
        st.info("No windows of the chosen symbols yet.")
        return
    for card in cards:
        _card(card)
    alerts = feed.alerts.newest_first()
    _alert_feed(settings, views.alert_feed(alerts, symbols))
    since = views.range_start(snapshot, symbols, views.TIME_RANGES[controls.time_range])
    frame = views.windows_frame(snapshot, symbols, since,
                                slide=timedelta(seconds=settings.window_slide.seconds),
                                missing_pct=settings.partial_window_pct)
    markers = views.alert_markers(alerts, snapshot, symbols, since)
    band, candles, bars = st.tabs(["Average price", "Candlesticks", "Latest window"])
    with band:
        _chart(settings, charts.price_band(frame, markers), "chart-band")
    with candles:
        _candles(settings, feed, snapshot, symbols, since, markers)
    with bars:
        _chart(settings, charts.latest_bars(views.latest_frame(snapshot, symbols)),
               "chart-bars")


def _chart(settings: Settings, figure, key: str) -> None:
    """A chart that keeps the user's zoom, pan and legend choices across refreshes."""
    with st.container(key=key):
        live_chart(figure, f"{key}-frame", settings.run_dir)


def _candles(settings: Settings, feed: KafkaFeed, snapshot: Snapshot, symbols, since,
             markers) -> None:
    """1-minute candles rolled up to the timeframe picked above the chart."""
    timeframe = st.radio("Timeframe", list(views.TIMEFRAMES), horizontal=True,
                         key="timeframe")
    frame = views.candles_frame(feed.candles.snapshot(), symbols, since,
                                views.TIMEFRAMES[timeframe], settings.poll_interval_seconds,
                                views.newest_ticks(snapshot, symbols),
                                settings.partial_window_pct)
    if frame.empty:
        st.info(f"No candles yet: they come from {settings.candles_topic}, written by the "
                f"Spark job with the windows.")
        return
    _chart(settings, charts.candles(frame, markers), "chart-candles")


def _overview(settings: Settings, market: pd.DataFrame) -> pd.DataFrame:
    """Every symbol in one sortable table with a search box, and the top movers in words
    (the table is a canvas: a screen reader reads the words)."""
    with st.container(key="overview"):
        st.subheader("Market")
        search, order = st.columns([2, 1])
        text = search.text_input("Search symbols", key="overview-search",
                                 placeholder="BTC, ETHUSDT, *USDT …")
        sort = order.selectbox("Sort by", list(views.SORTS), key="overview-sort",
                               index=list(views.SORTS).index(views.DEFAULT_SORT))
        gainers, losers = views.movers(market)
        span = f"over the last {settings.window_duration}"
        with st.container(key="top-gainers"):
            st.markdown(f"**Top gainers** {span}: "
                        + (", ".join(m.text for m in gainers) or "none"))
        with st.container(key="top-losers"):
            st.markdown(f"**Top losers** {span}: "
                        + (", ".join(m.text for m in losers) or "none"))
        shown = views.sort_market(views.search(market, text), sort)
        with st.container(key="overview-count"):
            st.caption(f"{fmt.count(len(shown))} of {fmt.count(len(market))} symbols · "
                       f"change and spread over each symbol's latest {settings.window_duration}"
                       f" window, last price its newest close")
        st.dataframe(shown, hide_index=True, column_config=OVERVIEW_CONFIG,
                     height=min(OVERVIEW_HEIGHT, ROW_HEIGHT * (len(shown) + 1) + 3),
                     key="overview-table",
                     alt=f"Market overview: {len(shown)} symbols, sorted by {sort.lower()}")
    return market


def _status_row(health: FeedHealth, fresh: views.Freshness, snapshot: Snapshot) -> None:
    label, colour = views.live_state(health, fresh)
    age, dead, skipped, held = st.columns(4)
    with age.container(key="freshness"):
        st.metric("Newest aggregate", fresh.text)
        st.badge(label, color=colour)
    with dead.container(key="dead-letters"):
        st.metric("Dead letters", "—" if health.dead_letters is None
                  else fmt.count(health.dead_letters))
    with skipped.container(key="malformed"):
        st.metric("Malformed records skipped", fmt.count(health.malformed))
    with held.container(key="windows"):
        st.metric("Windows held", fmt.count(len(snapshot)))



def _card(card: views.Card) -> None:
    with st.container(border=True, key=f"card-{card.symbol}"):
        partial = f" · :orange[partial: {card.partial}]" if card.partial else ""
        st.markdown(f"**{card.symbol}** · {card.window} · {card.move}{partial}")
        for start in range(0, len(card.kpis), KPIS_PER_ROW):
            row = card.kpis[start:start + KPIS_PER_ROW]
            for column, kpi in zip(st.columns(KPIS_PER_ROW), row):
                with column.container(key=f"kpi-{card.symbol}-{kpi.name}"):
                    st.metric(kpi.label, kpi.value, kpi.delta, delta_color=kpi.delta_color,
                              chart_data=card.trend if kpi.name == "avg_price" else None)


def _alert_feed(settings: Settings, lines: list[views.AlertLine]) -> None:
    with st.container(border=True, key="alert-feed"):
        st.markdown("**Alerts** · newest first")
        if not lines:
            st.caption(f"No price spikes. An alert fires when a window moves more than "
                       f"±{settings.alert_pct_threshold:g}% or its return lies more than "
                       f"{settings.alert_zscore_threshold:g}σ from those of the last "
                       f"{settings.alert_zscore_windows} windows.")
        for line in lines:
            icon = (":green[:material/trending_up:]" if line.rising
                    else ":red[:material/trending_down:]")
            with st.container(key=f"alert-{line.key}"):
                st.markdown(f"{icon} {line.text} · detected {line.detected}")


def _reported(status: ProducerStatus | SparkStatus | None) -> views.Reported | None:
    """A status file, and whether the process that wrote it runs."""
    if status is None:
        return None
    return views.Reported(status, pid_alive(status.pid) if status.pid else True)
