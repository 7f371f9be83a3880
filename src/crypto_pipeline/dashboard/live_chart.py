"""A Plotly chart that keeps what the user did to it across live refreshes.

`st.plotly_chart` identifies its element by the figure itself: new data is a new element,
drawn from scratch, and the zoom, pan and legend choices of the one before are lost at
every refresh, whatever the figure's `uirevision` says. This chart is a Streamlit
component whose identity is its key alone: its frame (`live_chart/index.html`) stays and
redraws the figure in place with `Plotly.react`, which keeps the user's view while the
figure's `uirevision` stays the same (charts.py gives each chart one of its own).

The frame loads plotly.js from the plotly package installed (nothing from the internet):
both files are copied once into a folder of RUN_DIR that the component is served from.
"""

from __future__ import annotations

import filecmp
import shutil
from functools import cache
from pathlib import Path
from typing import Any, Callable

import plotly
import plotly.graph_objects as go

FRAME = Path(__file__).with_name("live_chart") / "index.html"
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


@cache
def _component(run_dir: Path) -> Callable[..., Any]:
    """The component, declared once per server process and served from `run_dir`."""
    from streamlit.components import v1 as components

    served = run_dir / f"live-chart-{plotly.__version__}"
    served.mkdir(parents=True, exist_ok=True)
    for source in (FRAME, PLOTLY_JS):
        target = served / source.name
        if not target.exists() or not filecmp.cmp(source, target, shallow=False):
            shutil.copyfile(source, target)
    return components.declare_component("live_chart", path=str(served))


def live_chart(figure: go.Figure, key: str, run_dir: Path) -> None:
    """Draw `figure` in the page's chart of this key (the same key on every rerun)."""
    _component(run_dir)(figure=figure.to_json(), key=key, default=None)
