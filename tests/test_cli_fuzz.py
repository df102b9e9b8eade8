"""CLI input fuzz: random argv for the cache, schedule and report commands.

Every run ends with exit code 0, 1 or 2, and a failure says one sentence on stderr (`error: ... .`);
never a traceback. Options come from a fixed vocabulary (so no random `--out` path can write outside the
test's directory); words in between are any text, bytes that are not UTF-8 included, as a shell passes them.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.cli import main

TYPES = ["tokens", "market", "buying_power", "order_params", "holdings", "buying", "orders", "bp", "params"]
ACTIONS = ["stats", "clean", "clear", "list", "show", "keygen"]

# Words a shell can pass: any text without NUL, and lone surrogates (Python's view of non-UTF-8 bytes).
words = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12),
    st.sampled_from(
        [
            "\udcff",
            "a\udc80b",
            "..",
            "/",
            "../../etc/passwd",
            "u1_gs",
            "IRO1FOLD0001",
            "a\nb",
            " ",
            "%2F",
            "x" * 300,
            "1405-01-01",
            "2026-02-30",
            "0",
            "-1",
            "99999999999999999999",
            "1e9",
            "nan",
        ]
    ),
    st.sampled_from(TYPES + ACTIONS),
).filter(lambda w: not w.startswith("-"))  # options only come from the vocabulary below


def options(files: dict[str, str]) -> st.SearchStrategy[list[str]]:
    return st.one_of(
        st.sampled_from([["--json"], ["--yes"], ["--reveal"], ["--help"], ["-h"], ["--version"], ["--bogus"], ["--"]]),
        st.tuples(st.just("--config"), st.sampled_from(sorted(files.values()))).map(list),
        st.tuples(
            st.just("--log-level"), st.sampled_from(["debug", "info", "warning", "error", "loud", ""]) | words
        ).map(list),
        st.tuples(st.just("--days"), words | st.integers(-2, 12).map(str) | st.sampled_from(["366", "367"])).map(list),
        st.tuples(st.just("--date"), words).map(list),
        st.tuples(st.just("--out"), st.sampled_from(["key-a", "key-b", "sub/key", "no-dir/key", "."])).map(list),
        st.just(["--config"]),
        st.just(["--days"]),
    )


def argvs(files: dict[str, str]) -> st.SearchStrategy[list[str]]:
    pieces = st.lists(st.one_of(options(files), words.map(lambda w: [w])), max_size=5)
    heads = st.one_of(
        st.tuples(st.just("cache"), st.sampled_from(ACTIONS) | words).map(list),
        st.just(["schedule"]),
        st.just(["report"]),
        st.just(["cache"]),
        st.tuples(st.sampled_from(["cache", "schedule", "report"]), options(files)).map(lambda p: [p[0], *p[1]]),
    )
    return st.tuples(options(files) | st.just([]), heads, pieces).map(
        lambda t: t[0] + t[1] + [w for piece in t[2] for w in piece]
    )


@pytest.fixture(scope="module")
def config_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("cli-fuzz")
    files = {
        "valid": root / "valid.yaml",
        "bad-yaml": root / "bad.yaml",
        "bad-field": root / "field.yaml",
        "missing": root / "missing.yaml",
        "directory": root,
    }
    files["valid"].write_text(json.dumps({"cache": {"dir": str(root / "cache")}, "state_dir": str(root / "state")}))
    files["bad-yaml"].write_text("cache: [")
    files["bad-field"].write_text("schedule: {open: '25:00'}")
    return {name: str(path) for name, path in files.items()}


@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_argv_exits_0_1_or_2_with_one_sentence(config_files, capsys, data) -> None:
    argv = data.draw(argvs(config_files))
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: --help, --version, bad arguments
        code = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    assert code in (0, 1, 2), (argv, code, err)
    assert "Traceback" not in err
    if code == 2:
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(lines) == 1 and lines[0].endswith("."), (argv, err)
        assert err.rstrip("\n").splitlines()[-1] == lines[0]


@pytest.mark.parametrize(
    "argv",
    [
        ["cache", "show", "tokens", "\udcff"],
        ["cache", "list", "\udcff"],
        ["cache", "show", "tokens", "a\nb"],
        ["cache", "clear", "nope\nnope"],
        ["schedule", "--days", "1000000000"],
        ["report", "unexpected\nword"],
    ],
    ids=["surrogate key", "surrogate type", "newline key", "newline type", "a billion days", "newline argument"],
)
def test_cases_the_fuzzing_found(capsys, argv: list[str]) -> None:
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2 and err.rstrip("\n").splitlines()[-1].startswith("error:") and err.endswith(".\n"), err
