import io
import json

import pytest
import structlog

from daemon.errors import UserError
from daemon.logs import REDACTED, configure_logging, get_logger, register_secret, scrub


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
