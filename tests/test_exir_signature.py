"""Exir's X-App-N (daemon/platforms/exir/_signature.py) on the doc's worked examples, at second boundaries."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from daemon.platforms.exir import SeedError, Signer, x_app_n
from daemon.platforms.exir._signature import day_second, target_sum

DOC_NT = "07" + "3141592653589793238462643383279502884197"  # exir-api.md, Worked example
OPEN = datetime(2026, 6, 2, 5, 15, 0, tzinfo=UTC)  # 08:45:00 Tehran


def epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def reference(nt: str, target: str, t: int) -> str:
    """The doc's definition written out step by step, the yardstick for the precomputed signer."""
    n0, digits = int(nt[:2]), nt[2:]
    s = sum(ord(c) for c in target)
    idx = abs((t % (len(digits) - 5)) - n0)
    w = int(digits[idx : idx + 5])
    return f"{w * t * s}.{t * s}"


def test_the_doc_worked_example_at_the_open_and_one_second_before() -> None:
    assert target_sum("/api/v1/order") == 1162
    assert day_second(epoch(OPEN)) == 18900
    assert x_app_n(DOC_NT, "/api/v1/order", epoch(OPEN)) == "1435379324400.21961800"
    assert x_app_n(DOC_NT, "/api/v1/order", epoch(OPEN) - 1) == "720199123210.21960638"


def test_the_reference_repos_own_vector() -> None:
    ten_past_midnight = datetime(2026, 6, 2, 0, 0, 10, tzinfo=UTC)
    assert x_app_n("0034567890123", "/a", epoch(ten_past_midnight)) == "113617440.1440"


def test_midnight_is_zero_and_the_day_wraps() -> None:
    midnight = epoch(datetime(2026, 6, 3, tzinfo=UTC))
    assert x_app_n(DOC_NT, "/api/v1/order", midnight) == "0.0"
    # the last second of the day and the first of the next differ; the date itself plays no part
    assert x_app_n(DOC_NT, "/x", midnight - 1) == reference(DOC_NT, "/x", 86399)
    assert x_app_n(DOC_NT, "/x", midnight + 1) == x_app_n(DOC_NT, "/x", midnight + 1 - 86400 * 400)


def test_the_query_is_signed_and_changes_the_value() -> None:
    bare = "/api/v1/user/orderbookReport"
    full = bare + "?size=1000&startDate=1405/03/01&mmtpTypeId=null&endDate=1405/03/12"
    assert x_app_n(DOC_NT, bare, epoch(OPEN)) != x_app_n(DOC_NT, full, epoch(OPEN))
    assert x_app_n(DOC_NT, full, epoch(OPEN)) == reference(DOC_NT, full, 18900)


def test_the_precomputed_signer_agrees_with_the_definition_for_random_seeds_and_seconds() -> None:
    rng = random.Random(1405)
    for _ in range(300):
        nt = "".join(rng.choice("0123456789") for _ in range(rng.choice([104, 130, 131])))
        target = rng.choice(["/api/v1/order", "/api/v1/user/stockInfo", "/api/v2/wages/instrument/IRO1XXXX0001"])
        second = rng.randrange(1_700_000_000, 1_900_000_000)
        signer = Signer(nt).for_target(target)
        assert signer.value(second) == reference(nt, target, second % 86400)


def test_a_130_digit_seed_never_runs_out_of_window() -> None:
    rng = random.Random(7)
    nt = "99" + "".join(rng.choice("0123456789") for _ in range(128))
    signer = Signer(nt).for_target("/api/v1/order")
    for t in range(0, 86400, 1):
        a, b = signer.value(t).split(".")
        assert int(b) == t * 1162 and int(a) % max(int(b), 1) == 0


@pytest.mark.parametrize(
    "nt, why",
    [("0712345", "at least 8"), ("07abc12345678", "decimal digits"), ("", "decimal digits"), ("9912345678", "n0")],
)
def test_a_seed_that_cannot_sign_is_refused_with_a_reason(nt: str, why: str) -> None:
    with pytest.raises(SeedError, match=why):
        Signer(nt)
