"""An error in one line, for logs, status files and the pages that show them."""

from __future__ import annotations

# Spark appends the query's plan to a query's error after this line.
_SPARK_PLAN_MARK = "\n=== Streaming Query ==="
_TRACEBACK = "Traceback (most recent call last):"


def one_line(error: BaseException | str, limit: int = 300, *, named: bool = False) -> str:
    """The message's first line; for a Python error raised inside a Spark batch, the
    traceback's last line, which names it. `named`: prefixed by the error's class unless
    the message starts with it (kafka-python's often do)."""
    message = str(error).split(_SPARK_PLAN_MARK)[0]
    if _TRACEBACK in message:
        message = _raised(message.rsplit(_TRACEBACK, 1)[1])
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    kind = type(error).__name__
    text = lines[0] if lines else kind
    if named and isinstance(error, BaseException) and not text.startswith(kind):
        text = f"{kind}: {text}"
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _raised(traceback: str) -> str:
    """From a Python traceback's text, the error it ends with: the first line after the
    last frame (frames are indented; a message may go on over several lines, as
    database drivers' do)."""
    lines = traceback.splitlines()
    frames = [i for i, line in enumerate(lines) if line.lstrip().startswith('File "')]
    rest = lines[frames[-1] + 1:] if frames else lines
    raised = [line for line in rest if line.strip() and not line.startswith("    ")]
    return raised[0] if raised else (lines[-1] if lines else "")
