import io
import json
import random
from datetime import timedelta

import pytest
import structlog
from cryptography.fernet import Fernet

from daemon import logs
from daemon.cache import Cache
from daemon.clock import FakeClock
from daemon.config import CacheSettings
from daemon.errors import UserError
from daemon.logs import REDACTED, configure_logging, get_logger, register_secret, scrub, token_slot
from daemon.store import TokenCipher


@pytest.fixture
def captured():
    stream = io.StringIO()
    configure_logging("debug", stream=stream, json=True)
    yield stream
    structlog.reset_defaults()


def lines(stream):
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_with_level_and_timestamp(captured):
    get_logger().info("warmup.done", accounts=3)
    (event,) = lines(captured)
    assert event["event"] == "warmup.done" and event["accounts"] == 3
    assert event["level"] == "info" and "timestamp" in event


def test_secret_keys_are_redacted_anywhere(captured):
    get_logger().info(
        "login",
        password="pw-123456",
        token="eyJ.abc.def",
        headers={"authorization": "Bearer eyJ.abc.def", "accept": "json"},
        captcha_answer="12345",
        attempts=[{"access_token": "tok-zzzz"}],
        token_expires_at="2026-11-25T08:00:00+03:30",
    )
    (event,) = lines(captured)
    text = captured.getvalue()
    for secret in ("pw-123456", "eyJ.abc.def", "12345", "tok-zzzz"):
        assert secret not in text
    assert event["password"] == REDACTED
    assert event["headers"]["accept"] == "json"
    assert event["token_expires_at"].startswith("2026")


def test_registered_secret_values_are_removed_from_messages(captured):
    register_secret("s3cret-value-99")
    get_logger().error("broker said: bad token s3cret-value-99", detail=["x s3cret-value-99 y"])
    try:
        raise RuntimeError("leak s3cret-value-99")
    except RuntimeError:
        get_logger().exception("failed")
    assert "s3cret-value-99" not in captured.getvalue()
    assert scrub("a s3cret-value-99 b") == f"a {REDACTED} b"


def test_a_token_in_a_slot_is_forgotten_once_the_next_one_replaces_it():
    slot, other = token_slot("slot-user", "gs"), token_slot("slot-user", "bbi")
    register_secret("slot-token-first", slot=slot)
    register_secret("slot-token-other", slot=other)
    register_secret("slot-token-second", slot=slot)
    assert scrub("slot-token-first") == "slot-token-first"
    assert scrub("slot-token-second slot-token-other") == f"{REDACTED} {REDACTED}"
    register_secret("slot-token-second", slot=slot)  # the same token again (a cache read) keeps it
    assert scrub("slot-token-second") == REDACTED


def test_a_value_registered_without_a_slot_outlives_a_slot_that_held_it_too():
    register_secret("shared-value-77")
    register_secret("shared-value-77", slot=token_slot("shared-user", "gs"))
    register_secret("shared-value-78", slot=token_slot("shared-user", "gs"))
    assert scrub("shared-value-77 shared-value-78") == f"{REDACTED} {REDACTED}"


def test_a_day_of_logins_leaves_one_secret_per_account():
    before = len(logs._longest_first)
    for login in range(200):
        for account in ("day-a", "day-b", "day-c"):
            register_secret(f"day-token-{account}-{login:03d}", slot=token_slot(account, "gs"))
    assert len(logs._longest_first) == before + 3
    assert scrub("day-token-day-a-198") == "day-token-day-a-198"
    assert scrub("day-token-day-b-199") == REDACTED


def test_with_a_thousand_tokens_registered_every_secret_in_a_text_is_still_replaced_longest_first():
    """Past a few secrets scrub tries only those whose first characters occur in the text, and remembers short
    texts it scrubbed: a secret registered after a text was remembered is still replaced in it."""
    for n in range(1000):
        register_secret(f"many-token-{n:04d}-tail", slot=token_slot(f"many-{n}", "gs"))
    assert len(logs._longest_first) > 1000
    register_secret("many-token-0007-tail-longer")  # shares its head and its start with a shorter one
    assert scrub("x many-token-0007-tail-longer y many-token-0999-tail") == f"x {REDACTED} y {REDACTED}"
    assert scrub("executor.outcome") == scrub("executor.outcome") == "executor.outcome"
    assert scrub("mtok") == "mtok"
    late = token_slot("many-late", "gs")
    register_secret("xecutor.outc", slot=late)
    try:
        assert scrub("executor.outcome") == f"e{REDACTED}ome"
    finally:
        register_secret("many-late-forgotten", slot=late)  # the rest of the session logs executor.outcome
    assert scrub("executor.outcome") == "executor.outcome"
    assert scrub("a" * 200 + "many-token-0500-tail") == "a" * 200 + REDACTED


def test_the_indexed_scrub_replaces_what_testing_every_secret_in_turn_does():
    """Seeded random secrets of 4 to 30 characters over a small alphabet (so they overlap and nest) in random
    texts: scrub's pieces at one position per stride find every one the plain loop over all secrets finds."""
    rng = random.Random(18)
    alphabet = "ẞẟǂǁ01"  # nothing else in the session logs these
    secrets = {"".join(rng.choice(alphabet) for _ in range(rng.randint(4, 30))) for _ in range(300)}
    for n, secret in enumerate(secrets):
        register_secret(secret, slot=token_slot(f"indexed-{n}", "gs"))
    in_turn = logs._longest_first  # what scrub tested in turn before it had an index
    for _ in range(300):
        parts = [rng.choice(list(secrets)) if rng.random() < 0.3 else rng.choice(alphabet) for _ in range(40)]
        text = "".join(parts)
        expected = text
        for secret in in_turn:
            if secret in expected:
                expected = expected.replace(secret, REDACTED)
        assert scrub(text) == expected
    for n in range(len(secrets)):
        register_secret(f"indexed-forgotten-{n:04d}", slot=token_slot(f"indexed-{n}", "gs"))


@pytest.mark.parametrize("sealed", [False, True])
async def test_the_cache_registers_tokens_per_account_so_a_new_login_forgets_the_old(tmp_path, sealed):
    clock = FakeClock()
    cipher = TokenCipher(Fernet.generate_key().decode(), "test") if sealed else None
    cache = Cache(CacheSettings(dir=tmp_path), clock, cipher=cipher)
    old, new, kept = (f"cache-token-{name}-{sealed}" for name in ("old", "new", "kept"))
    until = clock.now() + timedelta(hours=1)
    await cache.save_token("cache-u1", "gs", old, until)
    await cache.save_token("cache-u2", "gs", kept, until)
    fresh = Cache(CacheSettings(dir=tmp_path), clock, cipher=cipher)  # a restart reads them back
    assert (await fresh.get_token("cache-u1", "gs"))["token"] == old
    await fresh.check_token_key()
    assert scrub(old) == REDACTED
    await fresh.save_token("cache-u1", "gs", new, until)
    assert scrub(f"{old} {new} {kept}") == f"{old} {REDACTED} {REDACTED}"
    await cache.aclose()
    await fresh.aclose()


def test_console_renderer_on_request():
    stream = io.StringIO()
    configure_logging("info", stream=stream, json=False)
    get_logger().info("hello", password="pw-abcdef")
    structlog.reset_defaults()
    assert "hello" in stream.getvalue() and "pw-abcdef" not in stream.getvalue()


def test_level_filters_and_bad_level_is_a_user_error():
    stream = io.StringIO()
    configure_logging("warning", stream=stream, json=True)
    get_logger().info("quiet")
    get_logger().warning("loud")
    structlog.reset_defaults()
    assert [e["event"] for e in lines(stream)] == ["loud"]
    with pytest.raises(UserError, match="--log-level"):
        configure_logging("chatty")
