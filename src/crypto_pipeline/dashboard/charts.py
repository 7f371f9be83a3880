"""Plotly figures of the dashboard, from the frames of `views`: one panel per symbol,
because BTC and a coin worth cents share no useful price axis. Alerted windows carry a
marker (a triangle pointing the way the price moved) on the price charts, partial
windows and candles an open circle.

What the user did to a chart (zoom, pan, legend choices) survives the live refresh:
each figure has a `uirevision` of its own that stays the same across reruns (plotly
keeps the view while it does), and each trace a `uid` of its symbol and role, so a
trace that comes or goes (a first alert) does not hand its legend state to another.
"""

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
PARTIAL_COLOUR = "#ff7f0e"
ALERT_TRACE = "alert"
PARTIAL_TRACE = "partial"
BAND_TRACE = "min–max"
RISING_COLOUR, FALLING_COLOUR = "#26a69a", "#ef5350"


def _panels(frame: pd.DataFrame, price: str = "avg_price") -> list[tuple[str, pd.DataFrame, int]]:
    """(symbol, its rows, price decimals) per symbol, in the frame's order."""
    return [(symbol, rows, fmt.price_decimals(rows[price].dropna().iloc[-1]))
            for symbol, rows in frame.groupby("symbol", sort=False)]


def _stacked(frame: pd.DataFrame, revision: str,
             price: str = "avg_price") -> tuple[go.Figure, list]:
    panels = _panels(frame, price)
    figure = make_subplots(rows=len(panels), cols=1, shared_xaxes=True, vertical_spacing=0.06,
                           subplot_titles=[symbol for symbol, _, _ in panels])
    figure.update_layout(height=PANEL_HEIGHT * len(panels), margin=dict(t=60, b=20, l=10, r=10),
                         hovermode="x unified", uirevision=revision, template="plotly_white",
                         # Top left: the mode bar takes the top right.
                         legend=dict(orientation="h", yanchor="bottom", y=1.04, x=0,
                                     xanchor="left"))
    # Room for the price labels, however wide (l=10 is only the least margin).
    figure.update_yaxes(automargin=True)
    return figure, panels


def _in_legend(row: int) -> bool:
    """A role is listed once, by the first panel's trace: its legend entry toggles every
    panel's trace of that role (a legend group)."""
    return row == 1


def _alert_markers(figure: go.Figure, row: int, symbol: str, markers: pd.DataFrame | None,
                   decimals: int) -> None:
    mine = markers[markers["symbol"] == symbol] if markers is not None else ()
    if len(mine):
        figure.add_trace(go.Scatter(
            x=mine["window_start"], y=mine["price"], name=ALERT_TRACE, mode="markers",
            uid=f"{symbol}-{ALERT_TRACE}", legendgroup=ALERT_TRACE, showlegend=_in_legend(row),
            marker=dict(symbol=["triangle-up" if up else "triangle-down" for up in mine["rising"]],
                        size=14, color=ALERT_COLOUR, line=dict(color="white", width=1)),
            text=mine["label"],
            hovertemplate=f"%{{text}}<br>avg %{{y:{fmt.plotly_price_format(decimals)}}}"
                          f"<extra>alert</extra>"), row=row, col=1)


def _partial_markers(figure: go.Figure, row: int, symbol: str, rows: pd.DataFrame, x: str,
                     y: str, decimals: int) -> None:
    """An open circle on each partial window or candle, its completeness on hover."""
    partial = rows[rows["partial"].eq(True)]
    if len(partial):
        figure.add_trace(go.Scatter(
            x=partial[x], y=partial[y], name=PARTIAL_TRACE, mode="markers",
            uid=f"{symbol}-{PARTIAL_TRACE}", legendgroup=PARTIAL_TRACE,
            showlegend=_in_legend(row),
            marker=dict(symbol="circle-open", size=12, color=PARTIAL_COLOUR,
                        line=dict(width=2)),
            text=partial["completeness"],
            hovertemplate=f"partial: %{{text}}<br>%{{y:{fmt.plotly_price_format(decimals)}}}"
                          f"<extra>{symbol}</extra>"), row=row, col=1)


def price_band(frame: pd.DataFrame, markers: pd.DataFrame | None = None) -> go.Figure:
    """Average price per window inside its min–max band; alerted and partial windows
    marked; a window missing (a row of nothing but its start) breaks the lines."""
    figure, panels = _stacked(frame, "chart-band")
    for row, (symbol, rows, decimals) in enumerate(panels, start=1):
        price = fmt.plotly_price_format(decimals)
        legend = _in_legend(row)
        figure.add_trace(go.Scatter(
            x=rows["window_start"], y=rows["max_price"], name="max", mode="lines",
            uid=f"{symbol}-max", legendgroup="band", showlegend=False,
            line=dict(width=0), hovertemplate=f"max %{{y:{price}}}<extra></extra>"), row=row, col=1)
        figure.add_trace(go.Scatter(
            x=rows["window_start"], y=rows["min_price"], name=BAND_TRACE, mode="lines",
            uid=f"{symbol}-min", legendgroup="band", showlegend=legend,
            line=dict(width=0), fill="tonexty", fillcolor=BAND_COLOUR,
            hovertemplate=f"min %{{y:{price}}}<extra></extra>"), row=row, col=1)
        figure.add_trace(go.Scatter(
            x=rows["window_start"], y=rows["avg_price"], name="avg", mode="lines+markers",
            uid=f"{symbol}-avg", legendgroup="avg", showlegend=legend,
            line=dict(color=AVG_COLOUR, width=2), marker=dict(size=4),
            hovertemplate=f"avg %{{y:{price}}}<extra>{symbol}</extra>"), row=row, col=1)
        _partial_markers(figure, row, symbol, rows, "window_start", "avg_price", decimals)
        _alert_markers(figure, row, symbol, markers, decimals)
        figure.update_yaxes(tickformat=price, row=row, col=1)
    return figure


def candles(frame: pd.DataFrame, markers: pd.DataFrame | None = None) -> go.Figure:
    """Open/high/low/close of each candle (a frame of `views.candles_frame`); alerted
    windows and partial candles marked."""
    figure, panels = _stacked(frame, "chart-candles", price="close")
    for row, (symbol, rows, decimals) in enumerate(panels, start=1):
        figure.add_trace(go.Candlestick(
            x=rows["open_time"], open=rows["open"], high=rows["high"], low=rows["low"],
            close=rows["close"], name=symbol, uid=f"{symbol}-candles", showlegend=False,
            increasing=dict(line=dict(color=RISING_COLOUR), fillcolor=RISING_COLOUR),
            decreasing=dict(line=dict(color=FALLING_COLOUR), fillcolor=FALLING_COLOUR)),
            row=row, col=1)
        _partial_markers(figure, row, symbol, rows, "open_time", "high", decimals)
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
                         template="plotly_white", margin=dict(t=40, b=20, l=10, r=10),
                         uirevision="chart-bars")
    figure.update_yaxes(automargin=True)
    return figure
