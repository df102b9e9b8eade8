"""`report --plot FILE.png`: the day's (or range's) first sends and first answers against the open, one row per
account, for people who would rather look than read.

matplotlib is the optional extra `plot`, imported here only when a plot is asked for, drawn on its Agg canvas (no
display, no pyplot state). The picture names accounts, so its file is private like the state files: written 0600
through a temporary file beside it and renamed, never through a symlink."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from daemon.errors import UserError
from daemon.firing import ReportRow

COLOURS = {
    "accepted": "#2ca02c",
    "rejected": "#d62728",
    "not placed": "#ff7f0e",
    "unknown": "#9467bd",
    "not sent": "#7f7f7f",
}
SEND_MARKER, ANSWER_MARKER = "o", "D"
DPI = 100
ROW_INCHES = 0.32
MANY = 400
"""Past this many orders the markers get smaller and see-through, so a range's days stay apart."""
MAX_INCHES = 60.0  # ~6000 px: past a few hundred accounts the rows get thin rather than the file huge


@dataclass(frozen=True)
class Mark:
    """One order on the picture: its account's row (0 at the top), where within it (a range spreads its days),
    its first send and first answer in ms after the open, and the colour of its state."""

    account: str
    row: int
    offset: float
    day: date
    send_ms: float | None
    answer_ms: float | None
    state: str

    @property
    def colour(self) -> str:
        return COLOURS.get(self.state, COLOURS["unknown"])


def marks(days: Sequence[tuple[date, Sequence[ReportRow]]]) -> tuple[list[str], list[Mark]]:
    """The accounts (rows, in the order the journals first name them) and the orders to draw; an order never sent
    has no send to draw and is left out (the title counts them)."""
    accounts: dict[str, int] = {}
    for _, rows in days:
        for row in rows:
            accounts.setdefault(row.account, len(accounts))
    spread = 0.6 / len(days) if len(days) > 1 else 0.0
    found = []
    for index, (day, rows) in enumerate(days):
        offset = (index - (len(days) - 1) / 2) * spread
        for row in rows:
            if row.first_send_ms is None and row.first_answer_ms is None:
                continue
            found.append(
                Mark(row.account, accounts[row.account], offset, day, row.first_send_ms, row.first_answer_ms, row.state)
            )
    return list(accounts), found


def draw(path: Path, days: Sequence[tuple[date, Sequence[ReportRow]]], title: str) -> None:
    """Draw `days` to the PNG `path`; one sentence (UserError) when matplotlib is missing or the file cannot be
    written."""
    png = render(days, title)
    write_private(path, png)


def render(days: Sequence[tuple[date, Sequence[ReportRow]]], title: str) -> bytes:
    buffer = io.BytesIO()
    figure(days, title).savefig(buffer, format="png")
    return buffer.getvalue()


def figure(days: Sequence[tuple[date, Sequence[ReportRow]]], title: str) -> Any:
    """The matplotlib Figure of `days` (on an Agg canvas), before it is saved."""
    figure_class, canvas_class, line_class = _matplotlib()
    accounts, drawn = marks(days)
    not_drawn = sum(len(rows) for _, rows in days) - len(drawn)
    height = min(MAX_INCHES, 1.6 + ROW_INCHES * max(len(accounts), 3))
    drawing = figure_class(figsize=(10, height), dpi=DPI, layout="constrained")
    canvas_class(drawing)
    axes = drawing.add_subplot()
    axes.axvline(0, color="black", linewidth=1.2, zorder=1)
    # one collection per kind of mark, not an artist per order: a year of 20 accounts is 5000+ orders
    segments = [
        ((m.send_ms, m.row + m.offset), (m.answer_ms, m.row + m.offset))
        for m in drawn
        if m.send_ms is not None and m.answer_ms is not None
    ]
    colours = [m.colour for m in drawn if m.send_ms is not None and m.answer_ms is not None]
    axes.add_collection(line_class(segments, colors=colours, linewidths=1, alpha=0.6, zorder=2))
    many = len(drawn) > MANY
    for marker, field in ((SEND_MARKER, "send_ms"), (ANSWER_MARKER, "answer_ms")):
        shown = [m for m in drawn if getattr(m, field) is not None]
        if shown:
            axes.scatter(
                [getattr(m, field) for m in shown],
                [m.row + m.offset for m in shown],
                marker=marker,
                s=10 if many else 30,
                alpha=0.5 if many else 1.0,
                c=[m.colour for m in shown],
                zorder=3,
            )
    placed = {mark.account for mark in drawn}
    for row, account in enumerate(accounts):
        if account not in placed:  # none of its orders was sent (in this journal): said on its row, not left blank
            axes.text(
                0.01,
                row,
                "no send",
                transform=axes.get_yaxis_transform(),
                color=COLOURS["not sent"],
                fontsize=8,
                fontstyle="italic",
                va="center",
            )
    axes.set_yticks(range(len(accounts)), accounts, fontsize=8 if len(accounts) < 60 else 6)
    axes.set_ylim(len(accounts) - 0.5, -0.5)  # the first account at the top, as in the table
    axes.set_xlabel("ms after the open (negative: before it)")
    axes.grid(axis="x", alpha=0.3)
    suffix = f" ({not_drawn} without a send, not drawn)" if not_drawn else ""
    axes.set_title(title + suffix, fontsize=10)
    axes.legend(handles=_legend({m.state for m in drawn}), loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
    return drawing


def _legend(states: set[str]) -> list[Any]:
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], color="black", linewidth=1.2, label="the open"),
        Line2D([], [], marker=SEND_MARKER, linestyle="", color="black", label="first send"),
        Line2D([], [], marker=ANSWER_MARKER, linestyle="", color="black", label="first answer"),
    ]
    handles += [
        Line2D([], [], marker="s", linestyle="", color=colour, label=state)
        for state, colour in COLOURS.items()
        if state in states
    ]
    return handles


def _matplotlib() -> tuple[Any, Any, Any]:
    try:
        import matplotlib  # noqa: F401  (first: a missing package fails here even if a submodule was cached)
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.collections import LineCollection
        from matplotlib.figure import Figure
    except ImportError:
        raise UserError("--plot needs matplotlib: install the plot extra (pip install 'opening-bell[plot]').") from None
    return Figure, FigureCanvasAgg, LineCollection


def write_private(path: Path, data: bytes) -> None:
    """`data` to `path`, mode 0600 whatever umask says: a temporary file beside it (O_EXCL, never followed), then
    renamed over it (a symlink there is replaced, never followed), so a reader never sees half a picture."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise UserError(
            f"--plot {path}: cannot write it ({exc.strerror or exc}); give a file in a directory you can write."
        ) from None
