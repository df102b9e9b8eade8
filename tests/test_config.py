from pathlib import Path

import pytest
import yaml

from daemon.cli import main
from daemon.config import Config, apply_env_overrides, load_config, validate_config
from daemon.errors import ConfigError
from tests.processes import REPO_ROOT, run_daemon

ACCOUNT = {
    "name": "ali",
    "broker": "gs",
    "username": "0012345678",
    "password_env": "ALI_PW",
    "orders": [{"isin": "IRO1FOLD0001"}],
}


def write_config(path: Path, data: dict, mode: int = 0o600) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    path.chmod(mode)
    return path


def test_defaults_without_a_file():
    config = load_config()
    assert config.timezone == "Asia/Tehran"
    assert str(config.schedule.open) == "08:45:00"
    assert config.cache.ttl.tokens == 3600 and config.cache.ttl.order_params == 30
    assert config.schedule.trading_days == ["sat", "sun", "mon", "tue", "wed"]


def test_example_config_is_valid():
    data = yaml.safe_load((REPO_ROOT / "config.yaml.example").read_text())
    config = validate_config(data)
    assert config == Config()


def test_named_config_must_exist():
    with pytest.raises(ConfigError, match="not found"):
        load_config("missing.yaml")


def test_env_var_names_the_config(tmp_path):
    path = write_config(tmp_path / "other.yaml", {"cache": {"dir": "/tmp/x"}})
    config = load_config(environ={"OPENING_BELL_CONFIG": str(path)})
    assert config.cache.dir == Path("/tmp/x")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"accounts": [{**ACCOUNT, "orders": [{"isin": "IRO1FOLD0001", "side": "hold"}]}]},
            "accounts[0].orders[0].side",
        ),
        ({"accounts": [{**ACCOUNT, "orders": [{"isin": "nope"}]}]}, "accounts[0].orders[0].isin"),
        ({"cache": {"ttl": {"tokns": 5}}}, "cache.ttl.tokns: is not a known setting"),
        ({"cache": {"ttl": {"tokens": -1}}}, "cache.ttl.tokens"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"schedule": {"warmup": "09:00", "open": "08:45"}}, "warmup must come before open"),
        ({"accounts": [{**ACCOUNT, "password": "x"}]}, "exactly one of password_env"),
        ({"accounts": [{**ACCOUNT, "broker": "nobroker"}]}, "'nobroker'"),
        ({"accounts": [ACCOUNT, ACCOUNT]}, "used twice"),
        ({"captcha": {"solver": "command"}}, "captcha.command"),
        ({"brokers": {"gs": {"trading_url": "ftp://x"}}}, "brokers.gs.trading_url"),
        ({"executor": {"realtime": "yes"}}, "executor.realtime: Input should be 'auto', 'on' or 'off'"),
        ({"executor": {"realtime_priority": 0}}, "executor.realtime_priority: Input should be greater than or equal"),
        ({"executor": {"realtime_priority": 100}}, "executor.realtime_priority: Input should be less than or equal"),
        (
            {
                "accounts": [
                    {
                        **ACCOUNT,
                        "orders": [
                            {"isin": "IRO1FOLD0001"},
                            {"isin": "IRO1FOLD0002"},
                            {"isin": "IRO1FOLD0001", "side": "buy", "price": 5000},
                        ],
                    }
                ]
            },
            "accounts[0].orders[2]: has the same isin and side as orders[0] (IRO1FOLD0001, buy)",
        ),
        (
            {"accounts": [ACCOUNT, {**ACCOUNT, "name": "sara", "username": " 0012345678", "enabled": False}]},
            "accounts[1]: has the same broker and username as accounts[0] ('ali': gs, ' 0012345678')",
        ),
    ],
)
def test_bad_config_is_one_sentence_naming_the_field(data, expected):
    with pytest.raises(ConfigError) as caught:
        validate_config(data, source="config.yaml")
    message = str(caught.value)
    assert expected in message
    assert message.startswith("config.yaml: ") and message.endswith(".")
    assert "\n" not in message


def test_bad_config_exits_2_without_traceback(tmp_path):
    path = write_config(tmp_path / "c.yaml", {"schedule": {"open": "25:00"}})
    result = run_daemon("--config", str(path), "cache", "stats")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "schedule.open" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_buy_and_a_sell_of_one_isin_and_one_username_at_two_brokers_are_allowed():
    orders = [{"isin": "IRO1FOLD0001", "side": "buy"}, {"isin": "IRO1FOLD0001", "side": "sell", "volume": 10}]
    config = validate_config(
        {"accounts": [{**ACCOUNT, "orders": orders}, {**ACCOUNT, "name": "sara", "broker": "bbi"}]}
    )
    assert [(o.isin, o.side) for o in config.accounts[0].orders] == [("IRO1FOLD0001", "buy"), ("IRO1FOLD0001", "sell")]
    assert [(a.broker, a.username) for a in config.accounts] == [("gs", "0012345678"), ("bbi", "0012345678")]


@pytest.mark.parametrize(
    ("accounts", "expected"),
    [
        (
            [{**ACCOUNT, "orders": [{"isin": "IRO1FOLD0001"}, {"isin": "IRO1FOLD0001", "share": 0.5}]}],
            "accounts[0].orders[1]: has the same isin and side as orders[0]",
        ),
        (
            [ACCOUNT, {**ACCOUNT, "name": "sara", "orders": [{"isin": "IRO1KHODRO01"}]}],
            "accounts[1]: has the same broker and username as accounts[0] ('ali': gs, 0012345678)",
        ),
    ],
)
def test_a_twin_order_or_account_exits_2_naming_it(tmp_path, accounts, expected):
    path = write_config(tmp_path / "c.yaml", {"accounts": accounts})
    result = run_daemon("--config", str(path), "fire", "--dry-run")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: {path}: {expected}") and result.stderr.endswith(".\n")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr and result.stdout == ""


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("cache:\n  dir: [unclosed\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+"):
        load_config(path)


@pytest.mark.parametrize("size", [1_000_001, 5_000_000])
def test_a_config_over_1_mb_is_refused_before_it_is_parsed(tmp_path, size):
    path = tmp_path / "big.yaml"
    path.write_bytes(b"[" * size)  # as YAML, nested far too deep: only a refusal before parsing names the size
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(caught.value) == (
        f"config file {path} is over 1 MB, and a config is a few kilobytes; check that --config names the right file."
    )


def test_an_endless_config_is_cut_at_the_limit_and_exits_2():
    result = run_daemon("--config", "/dev/zero", "warmup")  # read whole, it would never end
    assert result.returncode == 2 and result.stderr.startswith("error: config file /dev/zero is over 1 MB")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_a_config_of_exactly_1_mb_is_read(tmp_path):
    path = tmp_path / "padded.yaml"
    head = b"cache:\n  dir: /tmp/padded\r\n"
    path.write_bytes(head + b"#" * (1_000_000 - len(head) - 1) + b"\n")
    assert load_config(path).cache.dir == Path("/tmp/padded")


def test_top_level_must_be_a_mapping(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)


def test_env_overrides_any_field(tmp_path):
    path = write_config(tmp_path / "c.yaml", {"accounts": [ACCOUNT]})
    config = load_config(
        path,
        environ={
            "OPENING_BELL__CACHE__DIR": "/var/cache/ob",
            "OPENING_BELL__CACHE__TTL__MARKET": "120",
            "OPENING_BELL__SCHEDULE__OPEN": "08:45:00.250",
            "OPENING_BELL__ACCOUNTS__0__USERNAME": "0099",
            "OPENING_BELL__SCHEDULE__TRADING_DAYS": "[sat, sun]",
        },
    )
    assert config.cache.dir == Path("/var/cache/ob")
    assert config.cache.ttl.market == 120
    assert config.schedule.open.microsecond == 250_000
    assert config.accounts[0].username == "0099"
    assert config.schedule.trading_days == ["sat", "sun"]


def test_env_override_of_missing_list_item_is_clear():
    with pytest.raises(ConfigError, match="OPENING_BELL__ACCOUNTS__3__USERNAME"):
        apply_env_overrides({"accounts": []}, {"OPENING_BELL__ACCOUNTS__3__USERNAME": "x"})


def test_env_override_is_validated():
    with pytest.raises(ConfigError, match="^OPENING_BELL__CACHE__TTL__MARKET: Input should be a valid number"):
        load_config(environ={"OPENING_BELL__CACHE__TTL__MARKET": "soon"})


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (
            {"OPENING_BELL__EXECUTOR__MAX_ATTEMPTS": "many"},
            "OPENING_BELL__EXECUTOR__MAX_ATTEMPTS: Input should be a valid integer, unable to parse string as an integer.",
        ),
        (
            {"OPENING_BELL__EXECUTOR": "{max_attempts: 0}", "OPENING_BELL__CACHE__DIR": "/tmp/x"},
            "OPENING_BELL__EXECUTOR: max_attempts: Input should be greater than 0.",
        ),
        ({"OPENING_BELL__EXECUTOR__MAX_ATTEMPT": "5"}, "OPENING_BELL__EXECUTOR__MAX_ATTEMPT: is not a known setting"),
        (
            {"OPENING_BELL__ACCOUNTS__0__ORDERS__0__ISIN": "bad", "OPENING_BELL__ACCOUNTS__0__ORDERS": "[{isin: x}]"},
            "OPENING_BELL__ACCOUNTS__0__ORDERS__0__ISIN: 'bad' is not an ISIN",
        ),
    ],
)
def test_an_env_override_error_names_the_variable_not_the_file(tmp_path, environ, expected):
    path = write_config(tmp_path / "c.yaml", {"accounts": [ACCOUNT]})
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ=environ)
    assert str(caught.value).startswith(expected) and str(path) not in str(caught.value)


def test_an_error_in_a_section_an_override_changed_names_the_file_and_the_variable(tmp_path):
    path = write_config(tmp_path / "c.yaml", {"schedule": {"open": "08:45"}, "accounts": [ACCOUNT]})
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={"OPENING_BELL__SCHEDULE__WARMUP": "09:00", "OPENING_BELL__CACHE__DIR": "/tmp/x"})
    assert str(caught.value) == f"{path} with OPENING_BELL__SCHEDULE__WARMUP: schedule: warmup must come before open."


def test_an_error_in_the_file_still_names_the_file_beside_unrelated_overrides(tmp_path):
    path = write_config(tmp_path / "c.yaml", {"fees": {"buy": 2}, "accounts": [ACCOUNT]})
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={"OPENING_BELL__FEES__SELL": "0.01", "OPENING_BELL__CACHE__DIR": "/tmp/x"})
    assert str(caught.value) == f"{path}: fees.buy: Input should be less than 1."


def test_an_env_override_error_exits_2_in_one_line(tmp_path):
    path = write_config(tmp_path / "c.yaml", {"accounts": [ACCOUNT]})
    result = run_daemon(
        "--config", str(path), "fire", "--dry-run", env={"OPENING_BELL__EXECUTOR__MAX_ATTEMPTS": "many"}
    )
    assert result.returncode == 2
    assert result.stderr == (
        "error: OPENING_BELL__EXECUTOR__MAX_ATTEMPTS: "
        "Input should be a valid integer, unable to parse string as an integer.\n"
    )


def test_literal_password_in_readable_file_is_refused(tmp_path):
    account = {k: v for k, v in ACCOUNT.items() if k != "password_env"} | {"password": "hunter2-secret"}
    path = write_config(tmp_path / "c.yaml", {"accounts": [account]}, mode=0o644)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert f"chmod 600 {path}" in str(caught.value)
    assert "hunter2-secret" not in str(caught.value)
    path.chmod(0o600)
    assert load_config(path).accounts[0].resolve_password() == "hunter2-secret"


def test_password_sources(tmp_path, monkeypatch):
    secret_file = tmp_path / "creds" / "ali"
    secret_file.parent.mkdir()
    secret_file.write_text("from-file-pw\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(secret_file.parent))
    monkeypatch.setenv("ALI_PW", "from-env-pw")
    by_env = validate_config({"accounts": [ACCOUNT]}).accounts[0]
    assert by_env.resolve_password() == "from-env-pw"
    by_file = validate_config(
        {
            "accounts": [
                {
                    **{k: v for k, v in ACCOUNT.items() if k != "password_env"},
                    "password_file": "$CREDENTIALS_DIRECTORY/ali",
                }
            ]
        }
    ).accounts[0]
    assert by_file.resolve_password() == "from-file-pw"


def test_missing_password_source_is_a_config_error(monkeypatch):
    monkeypatch.delenv("ALI_PW", raising=False)
    account = validate_config({"accounts": [ACCOUNT]}).accounts[0]
    with pytest.raises(ConfigError, match="ALI_PW is not set"):
        account.resolve_password()


def test_password_never_in_repr():
    account = {k: v for k, v in ACCOUNT.items() if k != "password_env"} | {"password": "hunter2-secret"}
    config = validate_config({"accounts": [account]})
    assert "hunter2-secret" not in repr(config)


def test_broker_urls_default_to_the_pattern_and_can_be_overridden():
    config = validate_config(
        {"brokers": {"ib": {"identity_url": "https://identity.ibtrader.ir/", "trading_url": "https://api.ibtrader.ir"}}}
    )
    gs = config.broker("gs")
    assert gs.identity_url == "https://identity-gs.ephoenix.ir"
    assert gs.trading_url == "https://api-gs.ephoenix.ir"
    assert gs.market_data_url == "https://marketdatagw.ephoenix.ir"
    ib = config.broker("ib")
    assert ib.identity_url == "https://identity.ibtrader.ir"
    assert ib.backoffice_url == "https://backofficeexternal-ib.ephoenix.ir"


def test_select_accounts(monkeypatch):
    sara = {**ACCOUNT, "name": "sara", "username": "0087654321", "enabled": False}
    config = validate_config({"accounts": [ACCOUNT, sara]})
    assert [a.name for a in config.select_accounts()] == ["ali"]
    assert [a.name for a in config.select_accounts(["sara"])] == ["sara"]
    with pytest.raises(ConfigError, match="'nobody'"):
        config.select_accounts(["nobody"])


def test_bad_cli_argument_exits_2(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["no-such-command"])
    assert caught.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_unquoted_yaml_times_are_times_of_day(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("schedule:\n  warmup: 08:20\n  open: 08:45:00.5\n")
    config = load_config(path)
    assert str(config.schedule.warmup) == "08:20:00"
    assert str(config.schedule.open) == "08:45:00.500000"


def test_unquoted_numeric_username_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "accounts:\n  - name: ali\n    broker: gs\n    username: 0012345670\n    password_env: X\n"
        "    orders: [{isin: IRO1FOLD0001}]\n"
    )  # all octal digits: YAML 1.1 reads an octal number
    with pytest.raises(ConfigError, match=r"accounts\[0\]\.username: write it in quotes"):
        load_config(path)


def test_unquoted_non_octal_username_keeps_its_zeros(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(
        "accounts:\n  - name: ali\n    broker: gs\n    username: 0012345678\n    password_env: X\n"
        "    orders: [{isin: IRO1FOLD0001}]\n"
    )
    assert load_config(path).accounts[0].username == "0012345678"
