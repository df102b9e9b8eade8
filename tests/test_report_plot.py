"""`report --plot FILE.png`: first sends and answers against the open, one row per account, coloured by result;
the file private (0600); one sentence and exit 2 without matplotlib or a writable place."""

from __future__ import annotations

import os
import stat
import sys
from datetime import date
from io import BytesIO

import numpy
import pytest
from PIL import Image

from daemon.cli import main
from daemon.cli._plot import COLOURS, figure, marks, render
from daemon.firing import ReportRow
from tests.test_report_cli import SUNDAY, TUESDAY, config, write_journal  # noqa: F401  (config: a fixture)

PLOT_RIGHT = 850
"""Pixels left of this are the plot's; the legend's swatches sit right of it (in 1000 px of width)."""


def row(account, state="accepted", send=0.5, answer=8.0):
    return ReportRow(
        account=account, broker="gs", isin="IRO1FOLD0001", state=state, first_send_ms=send, first_answer_ms=answer
    )


def test_each_account_is_a_row_and_each_day_a_place_within_it():
    days = [
        (SUNDAY, [row("ali", send=-2.0, answer=6.0), row("sara", "rejected")]),
        (TUESDAY, [row("reza", "not sent", send=None, answer=None), row("ali", send=1.0, answer=None)]),
    ]
    accounts, drawn = marks(days)
    assert accounts == ["ali", "sara", "reza"]  # the order the journals first name them
    assert [(m.account, m.row, m.offset, m.day, m.send_ms, m.answer_ms, m.colour) for m in drawn] == [
        ("ali", 0, -0.15, SUNDAY, -2.0, 6.0, COLOURS["accepted"]),
        ("sara", 1, -0.15, SUNDAY, 0.5, 8.0, COLOURS["rejected"]),
        ("ali", 0, 0.15, TUESDAY, 1.0, None, COLOURS["accepted"]),
    ]  # reza was never sent: nothing to draw on his row


def pixels_like(png: bytes, colour: str, tolerance: int = 12) -> list[tuple[int, int]]:
    """(x, y) of every pixel within `tolerance` of `colour` on each channel."""
    image = numpy.asarray(Image.open(BytesIO(png)).convert("RGB"), dtype=int)
    want = numpy.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
    ys, xs = numpy.nonzero((abs(image - want) <= tolerance).all(axis=2))
    return list(zip(xs.tolist(), ys.tolist()))


def test_the_picture_colours_each_order_by_its_result_first_account_on_top():
    png = render([(TUESDAY, [row("ali"), row("sara", "rejected")])], "test")
    image = Image.open(BytesIO(png))
    assert image.format == "PNG" and image.size[0] == 1000
    green, red = pixels_like(png, COLOURS["accepted"]), pixels_like(png, COLOURS["rejected"])
    assert green and red and not pixels_like(png, COLOURS["unknown"])
    plot_green = [y for x, y in green if x < PLOT_RIGHT]
    plot_red = [y for x, y in red if x < PLOT_RIGHT]
    assert max(plot_green) < min(plot_red)  # ali (accepted) is the top row, sara (rejected) below


def test_the_plot_file_is_private_and_replaces_what_was_there(config, capsys, tmp_path):
    write_journal(config.parent / "state", TUESDAY, [{"account": "ali"}, {"account": "sara", "code": 1011}])
    target = tmp_path / "open.png"
    target.write_bytes(b"old")
    target.chmod(0o644)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(b"keep")
    link = tmp_path / "link.png"
    link.symlink_to(elsewhere)
    before = sorted(os.listdir(tmp_path))
    old_umask = os.umask(0)
    try:
        for path in (target, link):
            assert main(["report", "--config", str(config), "--date", "2026-12-01", "--plot", str(path)]) == 0
    finally:
        os.umask(old_umask)
    assert "1 of 2 orders accepted" in capsys.readouterr().out
    for path in (target, link):
        assert not path.is_symlink() and path.read_bytes()[:4] == b"\x89PNG"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert elsewhere.read_bytes() == b"keep"  # the symlink was replaced, never followed
    assert sorted(os.listdir(tmp_path)) == before  # no temporary file left beside them


def test_a_range_is_drawn_too(config, capsys, tmp_path):
    write_journal(config.parent / "state", SUNDAY, [{"account": "ali"}])
    write_journal(config.parent / "state", TUESDAY, [{"account": "ali", "code": 1011}])
    target = tmp_path / "week.png"
    argv = ["report", "--config", str(config), "--date", "2026-12-01", "--days", "3", "--plot", str(target)]
    assert main(argv) == 0
    png = target.read_bytes()
    assert pixels_like(png, COLOURS["accepted"]) and pixels_like(png, COLOURS["rejected"])


def test_without_matplotlib_it_is_one_sentence_and_nothing_else(config, capsys, tmp_path, monkeypatch):
    write_journal(config.parent / "state", TUESDAY, [{"account": "ali"}])
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what `import matplotlib` sees when it is not installed
    target = tmp_path / "open.png"
    code = main(["report", "--config", str(config), "--date", "2026-12-01", "--plot", str(target)])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and not target.exists()
    assert err == "error: --plot needs matplotlib: install the plot extra (pip install 'opening-bell[plot]').\n"


@pytest.mark.parametrize("where", ["missing/open.png", "."])
def test_a_plot_that_cannot_be_written_is_one_sentence(config, capsys, tmp_path, where):
    write_journal(config.parent / "state", TUESDAY, [{"account": "ali"}])
    target = tmp_path / where
    before = sorted(os.listdir(tmp_path))
    code = main(["report", "--config", str(config), "--date", "2026-12-01", "--json", "--plot", str(target)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith(f"error: --plot {target}: cannot write it (") and err.endswith(
        "; give a file in a directory you can write.\n"
    )
    assert err.count("\n") == 1 and sorted(os.listdir(tmp_path)) == before  # no temporary file left behind


def test_a_plot_before_the_open_is_drawn_left_of_it():
    """An order sent before the open (a negative first send) lies left of the open's line: x means ms after it."""
    early = render([(date(2026, 12, 1), [row("ali", send=-40.0, answer=-35.0)])], "early")
    late = render([(date(2026, 12, 1), [row("ali", send=35.0, answer=40.0)])], "late")
    early_x = [x for x, _ in pixels_like(early, COLOURS["accepted"]) if x < PLOT_RIGHT]
    late_x = [x for x, _ in pixels_like(late, COLOURS["accepted"]) if x < PLOT_RIGHT]
    open_early, open_late = _open_line_x(early), _open_line_x(late)
    assert max(early_x) < open_early and min(late_x) > open_late


def _open_line_x(png: bytes) -> int:
    """The open's black vertical line: the column (inside the plot) with the most black pixels."""
    dark = numpy.asarray(Image.open(BytesIO(png)).convert("L"))[:, 100:PLOT_RIGHT] < 40
    return 100 + int(dark.sum(axis=0).argmax())


def test_many_orders_are_a_few_collections_not_an_artist_each():
    """An artist per order made a year of 20 accounts (5560 orders) take 503 s to draw; collections take seconds."""
    days = [(date(2026, 12, 1), [row(f"a{i % 20}", send=i / 100, answer=i / 100 + 8) for i in range(2000)])]
    (axes,) = figure(days, "many").axes
    assert len(axes.collections) == 3  # the send-answer segments, the first sends, the first answers
    assert len(axes.lines) == 1  # the open
    assert [len(c.get_offsets()) for c in axes.collections[1:]] == [2000, 2000]
