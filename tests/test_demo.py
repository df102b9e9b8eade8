"""The README's first command: a whole open against the embedded simulator, the fills its exchange makes after the
open seen by the tracker, the two summaries sent to a notification URL, and nothing secret in its output."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest

from daemon.platforms.easytrader import EasytraderToken
from daemon.platforms.exir import ExirToken
from daemon.platforms.onlineplus import OnlinePlusToken
from tests.processes import run_daemon

pytest.importorskip("ddddocr")
HOOK_TOKEN = "hook-7c1e93b0d2a64f58"  # stands in for a bot token in the notification URL


@contextmanager
def webhook() -> Iterator[tuple[int, list[dict]]]:
    """A JSON webhook on loopback in a thread of this process (the demo is a child process): the bodies it got."""
    got: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
            got.append({"path": self.path, **json.loads(self.rfile.read(int(self.headers["Content-Length"])))})
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], got
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_demo_fires_every_account_tracks_the_fills_notifies_and_leaks_no_secret(tmp_path):
    workdir = tmp_path / "demo"
    with webhook() as (port, got):
        url = f"json://127.0.0.1:{port}/{HOOK_TOKEN}"
        result = run_daemon("demo", "--accounts", "6", "--dir", str(workdir), "--json", "--notify", url, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    data = orjson.loads(result.stdout)
    summary = data["summary"]
    assert summary["accepted"] == summary["orders"] == 6
    assert summary["offset_error_ms"] < 25
    # one attempt on a quiet machine; on a loaded one a first send can reach the broker a hair before its open (the
    # offset is measured to within a few ms) and be refused "not yet", then sent again once: never more
    assert all(r["result"] == "accepted" and 1 <= r["attempts"] <= 2 for r in data["orders"])
    # every platform: Ephoenix, Exir, Online+ and Mofid on easytrader (its order a draft made at the arm, batched once)
    assert {r["broker"] for r in data["orders"]} == {"gs", "shahr", "bbi", "khobregan", "hafez", "mofid"}
    # after the open the simulator's exchange filled half of the Exir, Online+ and easytrader orders; the tracker saw it
    fills = {r["broker"]: (r["fill_state"], r["executed"], r["volume"]) for r in data["orders"]}
    assert summary["fills_made"] == summary["orders_seen_filled"] == 3
    for broker in ("khobregan", "hafez", "mofid"):
        state, executed, volume = fills[broker]
        assert (state, executed) == ("partly filled", volume // 2)
    assert {fills[b][0] for b in ("gs", "shahr", "bbi")} == {"queued"}
    assert summary["filled_shares"] == sum(fills[b][1] for b in ("khobregan", "hafez", "mofid"))
    assert 2 <= summary["tracking_beats"] <= 16  # bounded
    # the fire summary, then the fill summary, to the URL given
    assert [body["title"] for body in got] == [
        "opening-bell: 6/6 in",
        f"opening-bell: {summary['filled_shares']:,} shares filled",
    ]
    assert all(body["path"] == f"/{HOOK_TOKEN}" for body in got) and summary["notified"] == [
        "fire_summary",
        "fill_summary",
    ]
    assert HOOK_TOKEN not in result.stdout + result.stderr

    tokens = [orjson.loads(p.read_bytes())["data"]["token"] for p in (workdir / "cache").glob("token_*.json")]
    assert len(tokens) == 6
    sessions = [ExirToken.unpack(t) for t in tokens if '"nt"' in t]  # an Exir session: seed and cookies
    jars = [OnlinePlusToken.unpack(t) for t in tokens if '"api"' in t]  # an Online+ session: its cookies
    bearers = [EasytraderToken.unpack(t).access_token for t in tokens if '"easytrader"' in t]
    assert len(sessions) == len(jars) == len(bearers) == 1
    secrets = ["demo-pass-not-secret", *tokens, *(s.nt for s in sessions), *bearers]
    secrets += [value for s in [*sessions, *jars] for _, value, _ in s.cookies if len(value) > 8]
    journal = b"".join(p.read_bytes() for p in (workdir / "state").rglob("*.jsonl"))
    assert journal
    for where, text in {"stdout": result.stdout, "stderr": result.stderr, "journal": journal.decode()}.items():
        leaked = [s[:6] + "..." for s in secrets if s in text]
        assert not leaked, f"{where} holds a secret: {leaked}"


def test_demo_refuses_a_silly_account_count():
    result = run_daemon("demo", "--accounts", "0")
    assert result.returncode == 2 and "--accounts" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"nosuchservice://{HOOK_TOKEN}", "error: --notify is not a URL apprise can send to (scheme 'nosuchservice')"),
        ("  ", "error: --notify needs an apprise URL"),
    ],
)
def test_demo_refuses_a_notification_url_it_cannot_use_before_starting(url, expected):
    result = run_daemon("demo", "--notify", url)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(expected) and result.stderr.count("\n") == 1
    assert HOOK_TOKEN not in result.stderr
