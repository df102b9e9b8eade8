"""Captcha solvers, each driven through `make_solver` against real programs, a loopback server or a pty."""

from __future__ import annotations

import asyncio
import io
import os
import stat
import sys
import textwrap
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from daemon.account import (
    OCR_EXTRA_MISSING,
    CaptchaUnsolved,
    Terminal,
    UnknownImageFormat,
    ascii_digits,
    five_digit_answer,
    make_solver,
    sniff_image_format,
)
from daemon.config import CaptchaSettings
from daemon.errors import UserError
from tests.simhelp import needs_ocr

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32


# --- sniffing and answers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        (PNG, "png"),
        (JPEG, "jpeg"),
        (b"GIF89a" + b"\x00" * 8, "gif"),
        (b"GIF87a" + b"\x00" * 8, "gif"),
        (b"BM\x46\x00\x00\x00\x00\x00\x00\x00\x36\x00", "bmp"),
        (b"RIFF\x10\x00\x00\x00WEBPVP8 ", "webp"),
    ],
)
def test_sniff_image_format_reads_magic_bytes(data: bytes, fmt: str) -> None:
    assert sniff_image_format(data) == fmt


@pytest.mark.parametrize("fmt", ["png", "jpeg", "gif", "bmp", "webp"])
def test_sniff_image_format_knows_what_pillow_writes(fmt: str) -> None:
    image = pytest.importorskip("PIL.Image")
    buffer = io.BytesIO()
    image.new("RGB", (40, 16), "white").save(buffer, fmt.upper())
    assert sniff_image_format(buffer.getvalue()) == fmt


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"<html>429 Too Many Requests</html>",
        b"\x89PNX\r\n",
        b"RIFF\x10\x00\x00\x00WAVEfmt ",
        b"iVBORw0KGgo=",
        b"BMW 320i for sale",
    ],
)
def test_sniff_image_format_refuses_anything_else(data: bytes) -> None:
    with pytest.raises(UnknownImageFormat, match="not a PNG, JPEG"):
        sniff_image_format(data)
    assert issubclass(UnknownImageFormat, CaptchaUnsolved)  # the client's "fetch a new captcha" path


def test_answers_accept_persian_digits_and_never_echo_the_text() -> None:
    assert five_digit_answer(" ۱۲۳۴۵\n", "x") == "12345"
    assert five_digit_answer("٠٩٨٧٦", "x") == "09876"
    assert ascii_digits("a1b۲c3") == "123"
    for wrong in ("123456", "1234", "12a45", "1 2345", ""):
        with pytest.raises(CaptchaUnsolved, match="not exactly 5 digits") as caught:
            five_digit_answer(wrong, "the service")
        assert not wrong or wrong not in str(caught.value)


# --- command ----------------------------------------------------------------------------------------


def _script(tmp_path: Path, name: str, body: str) -> list[str]:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return [sys.executable, str(path)]


def _command_solver(argv: list[str], timeout_s: float = 10):
    return make_solver(CaptchaSettings(solver="command", command=argv, timeout_s=timeout_s))


async def test_command_gets_the_image_on_stdin_and_answers_from_stdout(tmp_path: Path) -> None:
    received = tmp_path / "received"
    argv = _script(
        tmp_path,
        "solve",
        """
        import sys
        data = sys.stdin.buffer.read()
        open(sys.argv[1], "wb").write(data)
        print("  ۰1234  ")
    """,
    ) + [str(received)]
    solver = _command_solver(argv)
    assert await solver.solve(JPEG) == "01234"
    assert received.read_bytes() == JPEG
    await solver.aclose()


def _state(pid: int) -> str:
    """A process's state letter ("Z" zombie), or "gone"."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return "gone"


async def _until_dead(pid: int) -> str:
    for _ in range(500):  # SIGKILL is delivered asynchronously; wait for its effect, bounded
        if (state := _state(pid)) in {"gone", "Z", "X"}:
            return state
        await asyncio.sleep(0.01)
    return _state(pid)


async def test_command_that_hangs_is_killed_with_what_it_started(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    argv = _script(
        tmp_path,
        "hang",
        """
        import os, subprocess, sys, time
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        with open(sys.argv[1] + ".tmp", "w") as f:
            f.write(f"{os.getpid()} {child.pid}")
        os.rename(sys.argv[1] + ".tmp", sys.argv[1])
        time.sleep(600)
    """,
    ) + [str(pids)]
    solver = _command_solver(argv, timeout_s=2)
    with pytest.raises(CaptchaUnsolved, match="'command' gave no answer within 2 s"):
        await solver.solve(PNG)
    assert pids.exists(), "the script did not start within the timeout"
    for pid in map(int, pids.read_text().split()):
        assert await _until_dead(pid) in {"gone", "Z", "X"}


async def test_command_printing_garbage_is_unsolved_without_echoing_it(tmp_path: Path) -> None:
    solver = _command_solver(_script(tmp_path, "garbage", "print('captcha-ocr v2 ready: 98765x')"))
    with pytest.raises(CaptchaUnsolved, match=r"captcha.command gave 28 characters \(6 digits\)") as caught:
        await solver.solve(PNG)
    assert "98765" not in str(caught.value)


async def test_command_failing_is_unsolved_with_its_last_error_line(tmp_path: Path) -> None:
    solver = _command_solver(
        _script(
            tmp_path,
            "fail",
            """
        import sys
        sys.stderr.write("loading model\\nmodel file missing\\n")
        print("12345")
        sys.exit(3)
    """,
        )
    )
    with pytest.raises(CaptchaUnsolved, match="exited with status 3: model file missing$"):
        await solver.solve(PNG)


async def test_command_is_not_run_for_bytes_that_are_no_image(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    solver = _command_solver(
        _script(tmp_path, "mark", "import sys; open(sys.argv[1], 'w').close(); print('12345')") + [str(ran)]
    )
    with pytest.raises(UnknownImageFormat):
        await solver.solve(b"<html>throttled</html>")
    assert not ran.exists()


def test_command_missing_program_is_one_sentence() -> None:
    with pytest.raises(UserError, match=r"^captcha.command program 'no-such-ocr' was not found; install it or fix"):
        _command_solver(["no-such-ocr", "--digits"])


# --- http -------------------------------------------------------------------------------------------


@pytest.fixture
async def ocr_service():
    """A loopback OCR service; `seen` records what it was sent, `release` lets the slow route answer."""
    seen: list[tuple[str, str, bytes]] = []
    release = asyncio.Event()

    async def record(request: web.Request) -> None:
        seen.append((request.path, request.content_type, await request.read()))

    async def text(request: web.Request) -> web.Response:
        await record(request)
        return web.Response(text="12345\n")

    async def json(request: web.Request) -> web.Response:
        await record(request)
        return web.json_response({"ok": True, request.match_info["key"]: "54321"})

    async def number(request: web.Request) -> web.Response:
        return web.json_response({"result": 67890})

    async def nokey(request: web.Request) -> web.Response:
        return web.json_response({"answer": "12345"})

    async def broken(request: web.Request) -> web.Response:
        return web.Response(status=500, text="12345")

    async def slow(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="12345")

    app = web.Application()
    app.router.add_post("/text", text)
    app.router.add_post("/json/{key}", json)
    app.router.add_post("/number", number)
    app.router.add_post("/nokey", nokey)
    app.router.add_post("/broken", broken)
    app.router.add_post("/slow", slow)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    server.seen, server.release = seen, release  # type: ignore[attr-defined]
    yield server
    release.set()
    await server.close()


def _http_solver(url: str, timeout_s: float = 10):
    return make_solver(CaptchaSettings(solver="http", url=url, timeout_s=timeout_s))


async def test_http_posts_raw_image_with_sniffed_type_and_reads_text(ocr_service) -> None:
    solver = _http_solver(str(ocr_service.make_url("/text")))
    try:
        assert await solver.solve(JPEG) == "12345"
        assert await solver.solve(PNG) == "12345"
    finally:
        await solver.aclose()
    assert ocr_service.seen == [("/text", "image/jpeg", JPEG), ("/text", "image/png", PNG)]


@pytest.mark.parametrize(
    ("path", "answer"),
    [*((f"/json/{k}", "54321") for k in ("result", "text", "digits", "captcha")), ("/number", "67890")],
)
async def test_http_reads_json_answers(ocr_service, path: str, answer: str) -> None:
    solver = _http_solver(str(ocr_service.make_url(path)))
    try:
        assert await solver.solve(PNG) == answer
    finally:
        await solver.aclose()


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/broken", "answered HTTP 500"),
        ("/nokey", "JSON without any of the keys result, text, digits, captcha"),
    ],
)
async def test_http_failures_are_unsolved(ocr_service, path: str, message: str) -> None:
    solver = _http_solver(str(ocr_service.make_url(path)))
    try:
        with pytest.raises(CaptchaUnsolved, match=message):
            await solver.solve(PNG)
    finally:
        await solver.aclose()


async def test_http_timeout_is_unsolved(ocr_service) -> None:
    solver = _http_solver(str(ocr_service.make_url("/slow")), timeout_s=0.3)
    try:
        with pytest.raises(CaptchaUnsolved, match="'http' gave no answer within 0.3 s"):
            await solver.solve(PNG)
    finally:
        ocr_service.release.set()
        await solver.aclose()


async def test_http_messages_name_the_host_but_never_the_url_key(unused_tcp_port: int) -> None:
    solver = _http_solver(f"http://127.0.0.1:{unused_tcp_port}/solve?key=s3cr3t-api-key")
    try:
        with pytest.raises(
            CaptchaUnsolved, match=rf"captcha service 127.0.0.1:{unused_tcp_port} could not be asked"
        ) as caught:
            await solver.solve(PNG)
    finally:
        await solver.aclose()
    assert "s3cr3t" not in str(caught.value)


# --- manual -----------------------------------------------------------------------------------------


class PromptLog(io.StringIO):
    """The terminal's output, with an event per prompt so a test types only once asked."""

    def __init__(self) -> None:
        super().__init__()
        self.prompts = asyncio.Queue[str]()

    def write(self, text: str) -> int:
        if text.rstrip().endswith(":"):
            self.prompts.put_nowait(text)
        return super().write(text)


@pytest.fixture
def pty():
    """A real terminal pair: the solver reads the `slave` side, the test types into `master`."""
    master, slave = os.openpty()
    yield master, slave
    os.close(master)
    os.close(slave)


def _manual(slave: int, out: io.StringIO, timeout_s: float = 10, viewer: list[str] | None = None):
    settings = CaptchaSettings(solver="manual", timeout_s=timeout_s, viewer=viewer)
    return make_solver(settings, terminal=Terminal(slave, out))


async def _prompt(out: PromptLog) -> str:
    return await asyncio.wait_for(out.prompts.get(), 10)


def _image_path(out: io.StringIO) -> Path:
    return Path(out.getvalue().split("captcha image: ")[-1].splitlines()[0])


async def test_manual_shows_a_private_file_and_reads_the_typed_digits(pty) -> None:
    master, slave = pty
    out = PromptLog()
    solver = _manual(slave, out)
    task = asyncio.create_task(solver.solve(JPEG))
    assert await _prompt(out) == "type the 5 digits: "
    path = _image_path(out)
    assert path.suffix == ".jpeg" and path.read_bytes() == JPEG
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    os.write(master, "۱2345\n".encode())
    assert await task == "12345"
    assert not path.exists()


async def test_manual_asks_again_after_a_typo(pty) -> None:
    master, slave = pty
    out = PromptLog()
    task = asyncio.create_task(_manual(slave, out).solve(PNG))
    await _prompt(out)
    os.write(master, b"1234\n54321\n")
    assert await task == "54321"
    assert "that is not 5 digits; type the 5 digits: " in out.getvalue()


async def test_manual_end_of_input_and_timeout_are_unsolved(pty) -> None:
    master, slave = pty
    out = PromptLog()
    solver = _manual(slave, out, timeout_s=0.3)
    with pytest.raises(CaptchaUnsolved, match="'manual' gave no answer within 0.3 s"):
        await solver.solve(PNG)
    assert not _image_path(out).exists()
    solver = _manual(slave, out)
    task = asyncio.create_task(solver.solve(PNG))
    await _prompt(out)
    os.write(master, b"\x04")  # Ctrl-D at the start of a line
    with pytest.raises(CaptchaUnsolved, match="input ended before an answer"):
        await task


async def test_manual_prompts_one_captcha_at_a_time(pty) -> None:
    master, slave = pty
    out = PromptLog()
    solver = _manual(slave, out)
    first = asyncio.create_task(solver.solve(PNG))
    second = asyncio.create_task(solver.solve(JPEG))
    await _prompt(out)
    assert out.getvalue().count("captcha image:") == 1
    os.write(master, b"11111\n")
    assert await first == "11111"
    await _prompt(out)
    assert out.getvalue().count("captcha image:") == 2
    os.write(master, b"22222\n")
    assert await second == "22222"


async def test_manual_runs_the_viewer_on_the_image(pty, tmp_path: Path) -> None:
    master, slave = pty
    shown = tmp_path / "shown"
    viewer = _script(tmp_path, "viewer", "import shutil, sys; shutil.copy(sys.argv[2], sys.argv[1])") + [str(shown)]
    out = PromptLog()
    task = asyncio.create_task(_manual(slave, out, viewer=viewer).solve(PNG))
    await _prompt(out)
    assert shown.read_bytes() == PNG
    os.write(master, b"13579\n")
    assert await task == "13579"


def test_manual_refuses_without_a_terminal(monkeypatch: pytest.MonkeyPatch, pty) -> None:
    message = r"^captcha solver 'manual' needs a terminal; run the daemon in one, or set captcha.solver to"
    with open(os.devnull) as devnull:
        monkeypatch.setattr(sys, "stdin", devnull)
        with pytest.raises(UserError, match=message):
            make_solver(CaptchaSettings(solver="manual"))
    read_end, write_end = os.pipe()
    try:
        with pytest.raises(UserError, match=message):
            make_solver(CaptchaSettings(solver="manual"), terminal=Terminal(read_end, io.StringIO()))
    finally:
        os.close(read_end)
        os.close(write_end)
    with pytest.raises(UserError, match="captcha.viewer program 'no-such-viewer' was not found"):
        _manual(pty[1], io.StringIO(), viewer=["no-such-viewer"])


# --- ocr (its worker process: tests/test_ocr_worker.py) -------------------------------------------


def test_ocr_without_the_extra_is_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ddddocr", None)  # as if not installed
    with pytest.raises(UserError) as caught:
        make_solver(CaptchaSettings(solver="ocr"))
    assert (
        str(caught.value)
        == OCR_EXTRA_MISSING
        == "captcha solver 'ocr' needs the ocr extra: pip install 'opening-bell[ocr]'."
    )


def _digits_image(digits: str, fmt: str) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (160, 60), "white")
    ImageDraw.Draw(image).text((15, 8), digits, fill="black", font=ImageFont.load_default(size=36))
    buffer = io.BytesIO()
    image.save(buffer, fmt.upper())
    return buffer.getvalue()


@needs_ocr
async def test_ocr_without_five_digits_is_unsolved() -> None:
    from PIL import Image

    solver = make_solver(CaptchaSettings(solver="ocr", timeout_s=60))
    with pytest.raises(CaptchaUnsolved, match="the OCR model read 3 digits, not 5"):
        await solver.solve(_digits_image("4 7 1", "png"))
    blank = io.BytesIO()
    Image.new("RGB", (160, 60), "white").save(blank, "PNG")
    with pytest.raises(CaptchaUnsolved, match="the OCR model read 0 digits, not 5"):
        await solver.solve(blank.getvalue())
    with pytest.raises(CaptchaUnsolved, match="could not read the image"):
        await solver.solve(PNG)  # PNG magic, but no image after it
    await solver.aclose()
