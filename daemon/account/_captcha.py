"""Captcha solvers behind one small interface: `await solver.solve(image) -> "12345"`.

The login client fetches a captcha, hands its image bytes here and gets five digits back (four for a platform
whose captcha shows four, Online+: `solve(image, digits=4)`), or a
`CaptchaUnsolved` it answers by fetching a new captcha. Which solver runs is config
(`captcha.solver`): an OCR model in a worker process, an external program, an HTTP service, or a person at a
terminal. Nothing here speaks to a broker. A captcha answer counts as a secret: it never appears in
an exception message or a log line.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, TextIO
from urllib.parse import urlsplit

import aiohttp
import orjson

import daemon.account._ocr_worker as _ocr_worker
from daemon.account._ocr_worker import MAX_FRAME, MISSING, OK, READY, FrameError, encode, read_frame
from daemon.clock import Clock, SystemClock
from daemon.config import CaptchaSettings
from daemon.errors import UserError
from daemon.logs import get_logger, scrub

DIGITS = 5
OCR_EXTRA_MISSING = "captcha solver 'ocr' needs the ocr extra: pip install 'opening-bell[ocr]'."
_ANSWER_KEYS = ("result", "text", "digits", "captcha")

log = get_logger("captcha")


class CaptchaUnsolved(Exception):
    """No five digits came out of the solver; the caller fetches a new captcha. The message holds no answer."""


class UnknownImageFormat(CaptchaUnsolved):
    """The captcha bytes are not an image this module recognizes (the broker sent something else)."""


class CaptchaSolver(Protocol):
    async def solve(self, image: bytes) -> str:
        """Five ASCII digits read from `image`, or `CaptchaUnsolved`. A solver that also takes `digits`
        (`solve(image, digits=4)`, every one of this module's) serves platforms whose captcha has another count."""

    async def aclose(self) -> None:
        """Release what the solver holds (HTTP session); safe to call more than once."""


# The five formats a broker could plausibly send, by their leading bytes. A tiny table, so no
# library (Pillow lives only in the optional `ocr` extra, and `imghdr` is gone from Python 3.13).
ImageFormat = Literal["png", "jpeg", "gif", "bmp", "webp"]
_MAGIC: tuple[tuple[int, bytes, ImageFormat], ...] = (
    (0, b"\x89PNG\r\n\x1a\n", "png"),
    (0, b"\xff\xd8\xff", "jpeg"),
    (0, b"GIF87a", "gif"),
    (0, b"GIF89a", "gif"),
    (6, b"\0\0\0\0", "bmp"),  # after "BM" and the file size: the reserved zeros (two bytes alone say too little)
    (8, b"WEBP", "webp"),  # after "RIFF" and the size
)
_LEAD = {"bmp": b"BM", "webp": b"RIFF"}
MEDIA_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "gif": "image/gif", "bmp": "image/bmp", "webp": "image/webp"}


def sniff_image_format(data: bytes) -> ImageFormat:
    """ "png", "jpeg", "gif", "bmp" or "webp", from the magic bytes; an extension or header is never trusted."""
    for offset, magic, name in _MAGIC:
        lead = _LEAD.get(name, b"")
        if data[offset : offset + len(magic)] == magic and data.startswith(lead):
            return name
    raise UnknownImageFormat(f"the captcha is not a PNG, JPEG, GIF, BMP or WebP image ({len(data)} bytes)")


def ascii_digits(text: str) -> str:
    """Only the decimal digits of `text`, as ASCII: Persian and Arabic-Indic digits (۱۲۳) become 123."""
    return "".join(str(unicodedata.decimal(ch)) for ch in text if ch.isdecimal())


def five_digit_answer(text: str, source: str, digits: int = DIGITS) -> str:
    """`text` as exactly five (or `digits`) ASCII digits (surrounding whitespace allowed), else CaptchaUnsolved.

    The error describes the answer's shape, never its characters: a near-miss answer is still a secret.
    """
    stripped = text.strip()
    if stripped and all(ch.isdecimal() for ch in stripped):
        stripped = ascii_digits(stripped)
    if len(stripped) == digits and stripped.isascii() and stripped.isdigit():
        return stripped
    found = sum(ch.isdecimal() for ch in stripped)
    raise CaptchaUnsolved(f"{source} gave {len(stripped)} characters ({found} digits), not exactly {digits} digits")


class _Solver:
    """What every solver does around its own work: check the image, bound the time, close cleanly."""

    name: ClassVar[str]

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s

    async def solve(self, image: bytes, digits: int = DIGITS) -> str:
        fmt = sniff_image_format(image)
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._solve(image, fmt, digits)
        except TimeoutError:
            raise CaptchaUnsolved(f"captcha solver {self.name!r} gave no answer within {self.timeout_s:g} s") from None

    async def _solve(self, image: bytes, fmt: str, digits: int) -> str:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


def _require_program(argv: list[str], setting: str) -> list[str]:
    """`argv` with its program found on PATH now, so a typo fails at startup rather than at 08:20."""
    program = shutil.which(argv[0])
    if program is None:
        raise UserError(f"{setting} program {argv[0]!r} was not found; install it or fix {setting} in the config.")
    return [program, *argv[1:]]


async def _start(argv: list[str], setting: str, **kwargs: Any) -> asyncio.subprocess.Process:
    try:
        # Its own process group, so a timeout also ends whatever the program started.
        return await asyncio.create_subprocess_exec(*argv, process_group=0, **kwargs)
    except (FileNotFoundError, PermissionError):
        raise UserError(
            f"{setting} program {argv[0]!r} cannot be run; install it or fix {setting} in the config."
        ) from None


async def _end(process: asyncio.subprocess.Process) -> None:
    """Kill `process` and its group if still running, and reap it."""
    if process.returncode is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        await process.wait()


class CommandSolver(_Solver):
    """Runs `captcha.command` (no shell) with the image on stdin; its stdout is the answer."""

    name = "command"

    def __init__(self, command: list[str], timeout_s: float) -> None:
        super().__init__(timeout_s)
        self.argv = _require_program(command, "captcha.command")

    async def _solve(self, image: bytes, fmt: str, digits: int) -> str:
        process = await _start(
            self.argv,
            "captcha.command",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await process.communicate(image)
        finally:
            await _end(process)
        if process.returncode != 0:
            last = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
            said = f": {scrub(last[0])[:200]}" if last[0] else ""
            raise CaptchaUnsolved(f"captcha.command exited with status {process.returncode}{said}")
        return five_digit_answer(out.decode("utf-8", "replace"), "captcha.command", digits)


class HttpSolver(_Solver):
    """POSTs the raw image to `captcha.url`; the answer is plain text or JSON {"result": "12345"}."""

    name = "http"

    def __init__(self, url: str, timeout_s: float) -> None:
        super().__init__(timeout_s)
        self.url = url
        # Only the host goes into messages: a service URL may carry an API key in its path or query.
        self.where = f"captcha service {urlsplit(url).netloc}"
        self._session: aiohttp.ClientSession | None = None

    async def _solve(self, image: bytes, fmt: str, digits: int) -> str:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.post(self.url, data=image, headers={"Content-Type": MEDIA_TYPES[fmt]}) as response:
                body = await response.read()
                if response.status != 200:
                    raise CaptchaUnsolved(f"{self.where} answered HTTP {response.status}")
        except aiohttp.ClientError as exc:
            raise CaptchaUnsolved(f"{self.where} could not be asked ({type(exc).__name__})") from None
        return five_digit_answer(self._answer_text(body), self.where, digits)

    def _answer_text(self, body: bytes) -> str:
        if body.lstrip().startswith(b"{"):
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise CaptchaUnsolved(f"{self.where} answered malformed JSON") from None
            for key in _ANSWER_KEYS:
                value = data.get(key)
                if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
                    return str(value)
            raise CaptchaUnsolved(f"{self.where} answered JSON without any of the keys {', '.join(_ANSWER_KEYS)}")
        return body.decode("utf-8", "replace")

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


@dataclass(frozen=True)
class Terminal:
    """Where the manual solver asks a person: a TTY's input descriptor and a stream for the prompt."""

    input_fd: int
    output: TextIO = field(default_factory=lambda: sys.stderr)

    @classmethod
    def standard(cls) -> Terminal:
        try:
            fd = sys.stdin.fileno()
        except (AttributeError, ValueError, OSError):
            fd = -1
        return cls(fd, sys.stderr)

    def is_tty(self) -> bool:
        return self.input_fd >= 0 and os.isatty(self.input_fd)

    def say(self, text: str) -> None:
        self.output.write(text)
        self.output.flush()

    async def read_line(self) -> str:
        """One typed line ("" once input has ended), waited for on the event loop (no thread stuck in read() after a timeout)."""
        loop = asyncio.get_running_loop()
        ready = loop.create_future()
        loop.add_reader(self.input_fd, lambda: ready.done() or ready.set_result(None))
        try:
            await ready
        finally:
            loop.remove_reader(self.input_fd)
        return os.read(self.input_fd, 4096).decode("utf-8", "replace")  # "" at end of input


class ManualSolver(_Solver):
    """Saves the image to a private temp file, optionally runs a viewer on it, and asks a person."""

    name = "manual"

    def __init__(self, timeout_s: float, viewer: list[str] | None = None, terminal: Terminal | None = None) -> None:
        super().__init__(timeout_s)
        self.terminal = terminal or Terminal.standard()
        if not self.terminal.is_tty():
            raise UserError(
                "captcha solver 'manual' needs a terminal; run the daemon in one, or set captcha.solver to ocr, command or http."
            )
        self.viewer = _require_program(viewer, "captcha.viewer") if viewer else None
        self._one_at_a_time = asyncio.Lock()

    async def solve(self, image: bytes, digits: int = DIGITS) -> str:
        # Accounts log in concurrently; prompts must not interleave, and each gets its full time once shown.
        async with self._one_at_a_time:
            return await super().solve(image, digits)

    async def _solve(self, image: bytes, fmt: str, digits: int) -> str:
        fd, path = tempfile.mkstemp(prefix="opening-bell-captcha-", suffix=f".{fmt}")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(image)
            self.terminal.say(f"captcha image: {path}\n")
            if self.viewer:
                await self._show(path)
            self.terminal.say(f"type the {digits} digits: ")
            while line := await self.terminal.read_line():
                try:
                    return five_digit_answer(line, "the typed answer", digits)
                except CaptchaUnsolved:
                    self.terminal.say(f"that is not {digits} digits; type the {digits} digits: ")
            raise CaptchaUnsolved("the terminal's input ended before an answer was typed")
        finally:
            os.unlink(path)

    async def _show(self, path: str) -> None:
        assert self.viewer is not None
        process = await _start([*self.viewer, path], "captcha.viewer", stdin=asyncio.subprocess.DEVNULL)
        try:
            status = await process.wait()
        finally:
            await _end(process)
        if status != 0:
            log.warning("captcha viewer failed", status=status)


WORKER_SCRIPT = Path(_ocr_worker.__file__)
WORKER_STOP_S = 2.0
"""How long a worker told to end (its input closed) may take before it is killed."""
_WORKER_ENV = ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "LC_CTYPE", "LD_LIBRARY_PATH")
_WORKER_ENV_PREFIXES = ("PYTHON", "OMP_", "ORT_")


def worker_env(environ: Mapping[str, str]) -> dict[str, str]:
    """What the worker may see of this process's environment: how to find Python, its libraries and threads;
    never the accounts' passwords, which the config may name any variable for."""
    return {k: v for k, v in environ.items() if k in _WORKER_ENV or k.startswith(_WORKER_ENV_PREFIXES)}


class _WorkerEnded(Exception):
    """The worker process ended, or broke the frame stream, before it answered."""


class _Worker:
    """One worker process, its pipes, and its stderr in a private temporary file (nothing to drain, its last line
    at hand for the log when it ends). The blocking reads and writes run in a thread, never on the event loop."""

    def __init__(self) -> None:
        self.stderr = tempfile.TemporaryFile()
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-P", str(WORKER_SCRIPT)],  # -P: nothing from the script's folder shadows a module
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self.stderr,
                env=worker_env(os.environ),
                start_new_session=True,  # a terminal's Ctrl-C is the daemon's to handle, not the worker's
            )
        except OSError:
            self.stderr.close()
            raise
        self.pid = self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def exchange(self, image: bytes | None) -> bytes:
        """Send `image` (None: nothing, wait for the first frame) and return the frame that answers it."""
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None and stdout is not None
        try:
            if image is not None:
                stdin.write(encode(image))
                stdin.flush()
            frame = read_frame(stdout)
        except (OSError, ValueError, FrameError) as exc:  # ValueError: a pipe closed by a kill meanwhile
            raise _WorkerEnded(type(exc).__name__) from None
        if frame is None:
            raise _WorkerEnded("end of its output")
        return frame

    def ended(self) -> str:
        """How it ended, once it has (a broken stream alone gets it killed first); waits at most WORKER_STOP_S."""
        try:
            code = self.process.wait(WORKER_STOP_S)
        except subprocess.TimeoutExpired:
            self.kill()
            return "its output broke off"
        return f"killed by signal {-code}" if code < 0 else f"exit status {code}"

    def said(self) -> str:
        """Its last stderr line, scrubbed and cut (it never writes an answer there)."""
        try:
            self.stderr.seek(max(0, os.fstat(self.stderr.fileno()).st_size - 4096))
            lines = self.stderr.read().decode("utf-8", "replace").strip().splitlines()
        except (OSError, ValueError):
            return ""
        return scrub(lines[-1])[:200] if lines else ""

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()

    def finish(self, *, kill: bool) -> None:
        """End it (killed, or told to by closing its input) and reap it; blocking, so run in a thread."""
        if kill:
            self.kill()
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(WORKER_STOP_S)
        except subprocess.TimeoutExpired:
            self.kill()
            self.process.wait()
        for stream in (self.process.stdout, self.stderr):
            if stream is not None:
                stream.close()


class OcrSolver(_Solver):
    """ddddocr in a worker process (`daemon.account._ocr_worker`), started on the first captcha and ended once no
    solve has been pending for `idle_s` (or at `rest()` / `aclose()`), so this process never loads the model.

    One image at a time goes to the worker (the model reads one at a time anyway); each gets the whole
    `timeout_s` once it is its turn, worker start included. A worker that ends while reading is started again
    once and asked again; a second end is a clear CaptchaUnsolved. A worker that overruns the timeout is
    killed (its answer could come after the next image was sent): the next solve starts a fresh one.
    """

    name = "ocr"

    def __init__(self, timeout_s: float, idle_s: float, clock: Clock) -> None:
        super().__init__(timeout_s)
        if importlib.util.find_spec("ddddocr") is None:  # looks for it on the path, imports nothing
            raise UserError(OCR_EXTRA_MISSING)
        if not sys.executable:
            raise UserError(
                "captcha solver 'ocr' runs its model in a child Python, but this Python cannot name its own program."
            )
        self.idle_s = idle_s
        self._clock = clock
        self._lock = asyncio.Lock()
        self._pending = 0
        self._worker: _Worker | None = None
        self._idle: asyncio.Task[None] | None = None
        self._ending: set[asyncio.Task[None]] = set()
        self._said = ""  # the last stderr line of the worker that ended last, for the log

    @property
    def worker_pid(self) -> int | None:
        """The running worker's process id, or None while there is none."""
        worker = self._worker
        return worker.pid if worker is not None and worker.alive() else None

    async def solve(self, image: bytes, digits: int = DIGITS) -> str:
        self._pending += 1
        if self._idle is not None:
            self._idle.cancel()  # a login is pending again: the worker stays
            self._idle = None
        try:
            async with self._lock:
                return await super().solve(image, digits)
        finally:
            self._pending -= 1
            if not self._pending and self._worker is not None:
                self._idle = asyncio.get_running_loop().create_task(self._stop_when_idle())

    async def _solve(self, image: bytes, fmt: str, digits: int) -> str:
        if len(image) > MAX_FRAME:
            raise CaptchaUnsolved(f"the captcha image is {len(image)} bytes, more than a captcha can be")
        try:
            try:
                reply = await self._ask(image)
            except _WorkerEnded as first:
                log.warning("captcha.worker_restarted", ended=str(first), said=self._said)
                try:
                    reply = await self._ask(image)
                except _WorkerEnded as second:
                    log.error("captcha.worker_failed", ended=str(second), said=self._said)
                    raise CaptchaUnsolved(
                        f"the OCR worker ended twice while reading one captcha ({second}); see the log's "
                        "captcha.worker lines"
                    ) from None
        except BaseException:  # a timeout's cancellation among them: its answer must never meet the next image
            if self._worker is not None:
                self._let_go(self._worker, kill=True)
            raise
        if reply[:1] != OK:
            kind = reply[1:].decode("ascii", "replace")[:80]
            raise CaptchaUnsolved(f"the OCR model could not read the image ({kind})")
        read = ascii_digits(reply[1:].decode("utf-8", "replace"))
        if len(read) != digits:
            raise CaptchaUnsolved(f"the OCR model read {len(read)} digits, not {digits}")
        return read

    async def _ask(self, image: bytes) -> bytes:
        worker = await self._running()
        try:
            return await asyncio.to_thread(worker.exchange, image)
        except _WorkerEnded:
            raise _WorkerEnded(await self._ended(worker)) from None

    async def _running(self) -> _Worker:
        """The worker, started and its model loaded if there is none."""
        if self._worker is not None and self._worker.alive():
            return self._worker
        started = self._clock.monotonic_ns()
        try:
            worker = self._worker = _Worker()
        except OSError as exc:
            raise CaptchaUnsolved(f"the OCR worker could not be started ({type(exc).__name__})") from None
        try:
            ready = await asyncio.to_thread(worker.exchange, None)
        except _WorkerEnded:
            raise _WorkerEnded(await self._ended(worker)) from None
        if ready != READY:
            self._let_go(worker, kill=True)
            kind = ready[1:].decode("ascii", "replace")[:80]
            if kind == MISSING:
                raise UserError(OCR_EXTRA_MISSING)
            raise CaptchaUnsolved(
                f"the OCR worker could not load the model ({kind}); see the log's captcha.worker lines"
            )
        load_s = (self._clock.monotonic_ns() - started) / 1e9
        log.info("captcha.worker_started", pid=worker.pid, load_s=round(load_s, 3))
        return worker

    async def _ended(self, worker: _Worker) -> str:
        """How `worker` ended, once reaped (for the messages); it is not this solver's worker any more."""
        how = await asyncio.to_thread(worker.ended)
        self._said = worker.said()
        self._let_go(worker, kill=True)
        return how

    def _let_go(self, worker: _Worker, *, kill: bool) -> None:
        """Forget `worker`, and end and reap it in the background (killed, or told to end)."""
        if self._worker is worker:
            self._worker = None
        if kill:
            worker.kill()  # at once: a thread still reading from it returns
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(worker.finish, kill=kill))
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)

    async def _stop_when_idle(self) -> None:
        await self._clock.sleep_until(self._clock.now() + timedelta(seconds=self.idle_s))
        self._stop("idle")

    def _stop(self, why: str) -> None:
        if self._worker is not None:
            log.info("captcha.worker_stopped", pid=self._worker.pid, why=why)
            self._let_go(self._worker, kill=False)

    async def rest(self) -> None:
        """End the worker now unless a solve is pending (the warmup or the arm is over); the next solve starts one."""
        if self._pending:
            return
        await self.aclose("rest")

    async def aclose(self, why: str = "closed") -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        self._stop(why)
        while self._ending:
            await asyncio.gather(*self._ending, return_exceptions=True)


def make_solver(
    settings: CaptchaSettings, *, terminal: Terminal | None = None, clock: Clock | None = None
) -> CaptchaSolver:
    """The solver `captcha.solver` names; a solver that cannot work here fails now, as a UserError. `clock` times
    the OCR worker's idle end (the system clock unless a test injects one)."""
    if settings.solver == "command":
        assert settings.command  # the config validator requires it
        return CommandSolver(settings.command, settings.timeout_s)
    if settings.solver == "http":
        assert settings.url
        return HttpSolver(settings.url, settings.timeout_s)
    if settings.solver == "manual":
        return ManualSolver(settings.timeout_s, settings.viewer, terminal)
    return OcrSolver(settings.timeout_s, settings.worker_idle_s, clock or SystemClock())
