"""The README's first command: a whole open against the embedded simulator, and nothing secret in its output."""

from __future__ import annotations

import orjson
import pytest

from daemon.platforms.easytrader import EasytraderToken
from daemon.platforms.exir import ExirToken
from daemon.platforms.onlineplus import OnlinePlusToken
from tests.processes import run_daemon

pytest.importorskip("ddddocr")


def test_demo_fires_every_account_and_leaks_no_secret(tmp_path):
    workdir = tmp_path / "demo"
    result = run_daemon("demo", "--accounts", "6", "--dir", str(workdir), "--json", timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    data = orjson.loads(result.stdout)
    summary = data["summary"]
    assert summary["accepted"] == summary["orders"] == 6
    assert summary["offset_error_ms"] < 25
    assert all(r["result"] == "accepted" and r["attempts"] == 1 for r in data["orders"])
    # every platform: Ephoenix, Exir, Online+ and Mofid on easytrader (its order a draft made at the arm, batched once)
    assert {r["broker"] for r in data["orders"]} == {"gs", "shahr", "bbi", "khobregan", "hafez", "mofid"}

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
