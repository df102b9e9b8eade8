"""Config fuzzing: any YAML, any value at any real field, missing and extra keys, any environment override.

`load_config` returns a Config or raises ConfigError with one line that names the file, or the variable
that set the bad value (and the field, when it is about one), and ends with a period; never another exception.
"""

from __future__ import annotations

import copy
import math
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from daemon.config import ENV_PREFIX, Config, load_config
from daemon.errors import ConfigError

VALID: dict[str, Any] = {
    "timezone": "Asia/Tehran",
    "schedule": {"warmup": "08:20", "open": "08:45:00", "holidays": ["1405-01-01"], "open_days": []},
    "cache": {"dir": ".cache", "ttl": {"tokens": 3600}},
    "brokers": {"gs": {"identity_url": "https://identity-gs.example", "trading_url": "https://api-gs.example"}},
    "captcha": {"solver": "ocr"},
    "client": {"timeout_s": 5, "retry": {"attempts": 3}},
    "accounts": [
        {
            "name": "ali",
            "broker": "gs",
            "username": "0012345678",
            "password": "pw-fuzz",
            "orders": [{"isin": "IRO1FOLD0001", "side": "buy", "price": "max", "volume": "auto", "share": 0.5}],
        }
    ],
}


def field_paths(model: type[BaseModel], prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every setting's path in the Config model (lists at index 0, mappings under a broker code)."""
    paths = []
    for name, info in model.model_fields.items():
        path = (*prefix, name)
        paths.append(path)
        annotation = info.annotation
        args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
        for arg in args:
            origin, inner = typing.get_origin(arg), typing.get_args(arg)
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                paths += field_paths(arg, path)
            elif origin is list and inner and isinstance(inner[0], type) and issubclass(inner[0], BaseModel):
                paths += field_paths(inner[0], (*path, 0))
            elif origin is dict and inner and isinstance(inner[1], type) and issubclass(inner[1], BaseModel):
                paths += field_paths(inner[1], (*path, "gs"))
    return paths


PATHS = field_paths(Config)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**20, max_value=10**60),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1e300, -1e300, 86400, 86401, 0.0001]),
    st.text(max_size=20),
    st.sampled_from(
        [
            "08:45",
            "25:00",
            "9:30",
            "1405-12-30",
            "2026-02-30",
            "IRO1FOLD0001",
            "max",
            "auto",
            "\x00",
            "a\nb",
            "$CREDENTIALS_DIRECTORY/x",
            "../../etc",
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
mutations = st.lists(
    st.tuples(
        st.sampled_from(["set", "delete", "extra"]), st.sampled_from(PATHS), values, st.text(min_size=1, max_size=8)
    ),
    min_size=1,
    max_size=4,
)


def mutate(data: dict[str, Any], kind: str, path: tuple[Any, ...], value: Any, extra_key: str) -> None:
    node: Any = data
    for part in path[:-1]:
        if isinstance(node, dict) and isinstance(node.get(part), (dict, list)):
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            return  # an earlier mutation replaced a section: nothing to reach
    if not isinstance(node, dict):
        return
    last = path[-1]
    if kind == "set":
        node[last] = value
    elif kind == "delete":
        node.pop(last, None)
    elif isinstance(node.get(last), dict):
        node[last][extra_key] = value
    else:
        node[extra_key] = value


def check(path: Path, environ: dict[str, str] | None = None) -> Config | None:
    try:
        return load_config(path, environ=environ or {}, require_file=True)
    except ConfigError as exc:
        message = str(exc)
        assert message.isprintable() and message.endswith("."), repr(message)
        from_env = any(message.startswith((f"{name}: ", f"{name!r}: ")) for name in environ or {})  # a variable's value
        assert str(path) in message or "environment variable" in message or from_env, message
        return None


def write(directory: Path, text: str) -> Path:
    path = directory / "config.yaml"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)
    return path


SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@SETTINGS
@given(changes=mutations)
def test_random_values_at_real_fields(tmp_path: Path, changes) -> None:
    data = copy.deepcopy(VALID)
    for change in changes:
        mutate(data, *change)
    check(write(tmp_path, yaml.safe_dump(data, allow_unicode=True)))


@SETTINGS
@given(document=values)
def test_random_yaml_documents(tmp_path: Path, document) -> None:
    check(write(tmp_path, yaml.safe_dump(document, allow_unicode=True)))


yaml_tokens = st.sampled_from(
    [
        ":",
        " ",
        "\n",
        "  ",
        "- ",
        "[",
        "]",
        "{",
        "}",
        ",",
        "&a ",
        "*a",
        "!!int ",
        "!!float ",
        "!!str ",
        "!!binary ",
        "!!timestamp ",
        "!!set ",
        "!!python/object:os.system ",
        "? ",
        "|",
        ">",
        "'",
        '"',
        "\t",
        "#",
        "%YAML 1.1\n",
        "---",
        "...",
        "0x",
        "0o7",
        "1e9999",
        "9" * 5000,
        ".nan",
        ".inf",
        "08:45",
        "accounts",
        "schedule",
        "open",
        "cache",
        "dir",
        "ttl",
        "tokens",
        "orders",
        "isin",
        "\ufeff",
        "\x85",
        "null",
        "~",
        "yes",
        "no",
        "<<",
        "=",
    ]
)


@SETTINGS
@given(
    text=st.one_of(
        st.text(max_size=200),
        st.lists(yaml_tokens, max_size=40).map("".join),
        st.integers(1, 600).map(lambda n: "a: " + "[" * n + "]" * n),
        st.just("a: &x [*x]"),
        st.just("accounts: &x [*x, *x]"),
    )
)
def test_random_yaml_text(tmp_path: Path, text: str) -> None:
    check(write(tmp_path, text))


env_names = st.lists(
    st.one_of(
        st.sampled_from([str(p).upper() for path in PATHS for p in path] + ["0", "1", "99"]),
        st.text(min_size=0, max_size=6),
    ),
    min_size=1,
    max_size=5,
).map(lambda parts: ENV_PREFIX + "__".join(parts))
env_values = st.one_of(
    st.text(max_size=30),
    scalars.map(str),
    values.map(lambda v: yaml.safe_dump(v)),
    st.sampled_from(["!!int x", "[", "{a: 1", "&a [*a]", "9" * 5000, "!!python/name:os.system"]),
)


@SETTINGS
@given(environ=st.dictionaries(env_names, env_values, min_size=1, max_size=4), with_file=st.booleans())
def test_random_environment_overrides(tmp_path: Path, environ: dict[str, str], with_file: bool) -> None:
    environ = {k: v for k, v in environ.items() if "\x00" not in k + v and "=" not in k}
    path = write(tmp_path, yaml.safe_dump(VALID) if with_file else "")
    config = check(path, environ)
    if config is not None:
        assert all(not isinstance(v, float) or math.isfinite(v) for v in config.client.retry.model_dump().values())


KNOWN = {  # crashes the fuzzing found, kept as plain cases: the text, and what the message must name
    "arm before midnight": ("schedule: {warmup: '00:00:10', open: '00:00:30'}", "schedule: arm_before_s"),
    "a huge duration": ("schedule: {arm_before_s: 1.0e+300}", "schedule.arm_before_s"),
    "an infinite ttl": ("cache: {ttl: {tokens: .inf}}", "cache.ttl.tokens"),
    "a NaN timeout": ("client: {timeout_s: .nan}", "client.timeout_s"),
    "an overlong zone name": (f"timezone: {'a' * 5000}", "timezone"),
    "a NUL in a path": ('cache: {dir: "a\\0b"}', "cache.dir"),
    "a control character in a key": ('schedule: {"\\x1f": 1}', "schedule.'\\x1f'"),
    "a bare int tag": ("a: !!int", "does not read as its type"),
    "a self-containing list": ("accounts: &x [*x]", "accounts[0]"),
    "a list as a holiday": ("schedule: {holidays: [[2026, 3, 21]]}", "schedule.holidays[0]"),
}


@pytest.mark.parametrize(("text", "named"), KNOWN.values(), ids=KNOWN.keys())
def test_cases_the_fuzzing_found(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text), environ={}, require_file=True)
    assert named in str(caught.value) and str(caught.value).isprintable()
