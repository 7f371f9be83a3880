"""Plotly figures of the dashboard, from the frames of `views`: one panel per symbol,
because BTC and a coin worth cents share no useful price axis. Alerted windows carry a
marker (a triangle pointing the way the price moved) on the price charts."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from crypto_pipeline.core import formatting as fmt

PANEL_HEIGHT = 260
BARS_PER_ROW = 4
BAND_COLOUR = "rgba(99, 110, 250, 0.18)"
AVG_COLOUR = "rgb(99, 110, 250)"
ALERT_COLOUR = "#d62728"
ALERT_TRACE = "alert"


def _panels(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame, int]]:
    """(symbol, its rows, price decimals) per symbol, in the frame's order."""
    return [(symbol, rows, fmt.price_decimals(rows["avg_price"].iloc[-1]))
            for symbol, rows in frame.groupby("symbol", sort=False)]


def _stacked(frame: pd.DataFrame) -> tuple[go.Figure, list]:
    panels = _panels(frame)
    figure = make_subplots(rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.06,
                           subplot_titles=[symbol for symbol, _, _ in panels])
    figure.update_layout(height=PANEL_HEIGHT * len(panels), margin=dict(t=40, b=20, l=10, r=10),
                         showlegend=False, hovermode="x unified",
                         # Keeps zoom and pan when the live panel redraws the figure.
                         uirevision="keep")
    return figure, panels


def _alert_markers(figure: go.Figure, row: int, symbol: str, markers: pd.DataFrame | None,
                   decimals: int) -> None:
    mine = markers[markers["symbol"] == symbol] if markers is not None else ()
    if len(mine):
        figure.add_trace(go.Scatter(
            x=mine["window_start"], y=mine["price"], name=ALERT_TRACE, mode="markers",
            marker=dict(symbol=["triangle-up" if up else "triangle-down" for up in mine["rising"]],
                        size=14, color=ALERT_COLOUR, line=dict(color="white", width=1)),
            text=mine["label"],
            hovertemplate=f"%{{text}}<br>avg %{{y:{fmt.plotly_price_format(decimals)}}}"
                          f"<extra>alert</extra>"), row=row, col=1)


def price_band(frame: pd.DataFrame, markers: pd.DataFrame | None = None) -> go.Figure:
    """Average price per window inside its min–max band; alerted windows marked."""
    figure, panels = _stacked(frame)
    for row, (symbol, rows, decimals) in enumerate(panels, start=1):
        price = fmt.plotly_price_format(decimals)
        figure.add_trace(go.Scatter(
            x=rows["window_start"], y=rows["max_price"], name="max", mode="lines",
            line=dict(width=0), hovertemplate=f"max %{{y:{price}}}<extra></extra>"), row=row, col=1)
        figure.add_trace(go.Scatter(
            x=rows["window_start"], y=rows["min_price"], name="min", mode="lines",
            line=dict(width=0), fill="tonexty", fillcolor=BAND_COLOUR,
            hovertemplate=f"min %{{y:{price}}}<extra></extra>"), row=row, col=1)
        figure.add_trace(go.Scatter(
            x=rows["window_start"], y=rows["avg_price"], name="avg", mode="lines+markers",
            line=dict(color=AVG_COLOUR, width=2), marker=dict(size=4),
            hovertemplate=f"avg %{{y:{price}}}<extra>{symbol}</extra>"), row=row, col=1)
        _alert_markers(figure, row, symbol, markers, decimals)
        figure.update_yaxes(tickformat=price, row=row, col=1)
    return figure


def candles(frame: pd.DataFrame, markers: pd.DataFrame | None = None) -> go.Figure:
    """Open/high/low/close of each window; alerted windows marked."""
    figure, panels = _stacked(frame)
    for row, (symbol, rows, decimals) in enumerate(panels, start=1):
        figure.add_trace(go.Candlestick(
            x=rows["window_start"], open=rows["open_price"], high=rows["max_price"],
            low=rows["min_price"], close=rows["close_price"], name=symbol), row=row, col=1)
        _alert_markers(figure, row, symbol, markers, decimals)
        figure.update_yaxes(tickformat=fmt.plotly_price_format(decimals), row=row, col=1)
    figure.update_xaxes(rangeslider_visible=False)
    return figure


def latest_bars(latest: pd.DataFrame) -> go.Figure:
    """Min, average and max of each symbol's latest window."""
    panels = _panels(latest)
    rows = -(-len(panels) // BARS_PER_ROW)
    cols = min(len(panels), BARS_PER_ROW)
    figure = make_subplots(rows=rows, cols=cols,
                           subplot_titles=[symbol for symbol, _, _ in panels])
    for index, (symbol, record, decimals) in enumerate(panels):
        values = [record[name].iloc[0] for name in ("min_price", "avg_price", "max_price")]
        figure.add_trace(go.Bar(
            x=["min", "avg", "max"], y=values, name=symbol,
            text=[fmt.price(value, decimals) for value in values], textposition="outside",
            marker_color=["#ef553b", AVG_COLOUR, "#00cc96"],
            hovertemplate=f"%{{x}} %{{y:{fmt.plotly_price_format(decimals)}}}"
                          f"<extra>{symbol}</extra>"),
            row=index // BARS_PER_ROW + 1, col=index % BARS_PER_ROW + 1)
        low, high = min(values), max(values)
        # Bars from zero would make a 0.01 % spread invisible: zoom to the window's range.
        margin = (high - low) * 0.6 or abs(high) * 0.001 or 1
        figure.update_yaxes(range=[low - margin, high + margin],
                            tickformat=fmt.plotly_price_format(decimals),
                            row=index // BARS_PER_ROW + 1, col=index % BARS_PER_ROW + 1)
    figure.update_layout(height=PANEL_HEIGHT * rows + 40, showlegend=False,
                         margin=dict(t=40, b=20, l=10, r=10), uirevision="keep")
    return figure
