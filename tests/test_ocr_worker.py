"""The `ocr` captcha solver's worker process, through `make_solver`: a real worker reading the simulator's captcha
images; a stand-in model (a `ddddocr` module put first on the worker's path) that crashes, hangs or cannot load, to
kill the worker mid-read deterministically; the idle end on an injected clock; and a warmed, armed service process
(a child) that never imported the model, nor redis-py, cryptography, apprise or matplotlib it does not use."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from daemon.account import OCR_EXTRA_MISSING, CaptchaUnsolved, make_solver
from daemon.clock import FakeClock
from daemon.config import CaptchaSettings
from daemon.errors import UserError
from daemon.sim import render_captcha
from daemon.simulator import DEFAULT_PASSWORD, PASSWORD_ENV, Simulator
from tests.processes import daemon_env
from tests.simhelp import needs_ocr, write_sim_config

EXITED_S = 30.0  # the bound on waiting for a worker to be gone; it takes milliseconds


def _solver(timeout_s: float = 60, idle_s: float = 30, clock: FakeClock | None = None):
    return make_solver(CaptchaSettings(solver="ocr", timeout_s=timeout_s, worker_idle_s=idle_s), clock=clock)


async def exited(pid: int) -> None:
    """Return once process `pid` has ended (a pidfd turns readable), within EXITED_S."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    loop = asyncio.get_running_loop()
    gone = loop.create_future()
    loop.add_reader(fd, lambda: gone.done() or gone.set_result(None))
    try:
        async with asyncio.timeout(EXITED_S):
            await gone
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, ended but not reaped, counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


# --- a real worker ------------------------------------------------------------------------------------


def _captchas(seed: int, count: int, digits: int = 5) -> list[tuple[str, bytes]]:
    """The simulator's own captcha pictures (its renderer, seeded), half PNG, half JPEG."""
    rng = random.Random(seed)
    shown = []
    for n in range(count):
        answer = "".join(rng.choice("0123456789") for _ in range(digits))
        shown.append((answer, render_captcha(answer, ("png", "jpeg")[n % 2], random.Random(seed * 100 + n))))
    return shown


@needs_ocr
async def test_one_worker_reads_the_simulators_captchas_and_a_killed_one_is_replaced() -> None:
    solver = _solver()
    assert solver.worker_pid is None  # nothing started before the first captcha
    shown = _captchas(7, 6)
    answers = await asyncio.gather(*(solver.solve(image) for _, image in shown))
    assert answers == [answer for answer, _ in shown]
    pid = solver.worker_pid
    assert pid is not None and alive(pid)
    four = _captchas(8, 2, digits=4)
    assert [await solver.solve(image, digits=4) for _, image in four] == [answer for answer, _ in four]
    assert solver.worker_pid == pid  # the model loaded once, in one worker

    os.kill(pid, signal.SIGKILL)  # between two captchas: the next one is read by a new worker
    await exited(pid)
    (answer, image), *_ = _captchas(9, 1)
    assert await solver.solve(image) == answer
    assert solver.worker_pid not in (None, pid)
    with pytest.raises(CaptchaUnsolved, match="^the OCR model read 0 digits, not 5$"):
        await solver.solve(render_captcha("ABCDE", "png", random.Random(1)))
    last = solver.worker_pid
    await solver.aclose()
    assert solver.worker_pid is None and last is not None and not alive(last)


class HandClock(FakeClock):
    """Time moves only when the test moves it; `sleep_until` waits for the move that reaches its time, and `naps`
    counts the waits begun, so a test knows when a sleeper has looked at the clock again."""

    virtual = True

    def __init__(self) -> None:
        super().__init__()
        self.naps = 0
        self._wake: list[asyncio.Future[None]] = []
        self._napped = asyncio.Condition()

    def _move_ns(self, step: int) -> None:
        super()._move_ns(step)
        for future in self._wake:
            if not future.done():
                future.set_result(None)
        self._wake.clear()

    async def sleep_until(self, when) -> None:
        while self.now() < when:
            future = asyncio.get_running_loop().create_future()
            self._wake.append(future)
            async with self._napped:
                self.naps += 1
                self._napped.notify_all()
            await future

    async def napping(self, count: int) -> None:
        async with asyncio.timeout(EXITED_S):
            async with self._napped:
                await self._napped.wait_for(lambda: self.naps >= count)


@needs_ocr
async def test_the_worker_ends_after_the_idle_time_on_the_injected_clock_and_at_rest() -> None:
    clock = HandClock()
    solver = _solver(idle_s=30, clock=clock)
    (answer, image), (answer2, image2), (answer3, image3) = _captchas(11, 3)
    assert await solver.solve(image) == answer
    pid = solver.worker_pid
    assert pid is not None
    await clock.napping(1)
    clock.advance(29)
    await clock.napping(2)  # woken 1 s short of the idle time, it waits again
    assert solver.worker_pid == pid and alive(pid)

    assert await solver.solve(image2) == answer2  # a login again: the same worker, and the idle time starts over
    assert solver.worker_pid == pid
    await clock.napping(3)
    clock.advance(29)
    await clock.napping(4)
    assert alive(pid)
    clock.advance(1)
    await exited(pid)  # 30 s without a captcha: gone
    assert solver.worker_pid is None

    assert await solver.solve(image3) == answer3  # the next login starts a new one
    again = solver.worker_pid
    assert again not in (None, pid)
    await solver.rest()  # the warmup is over: gone now, reaped before rest returns
    assert solver.worker_pid is None and not alive(again)
    await solver.aclose()


# --- a stand-in model, to make the worker crash, hang or fail to load where the test says ---------------------

STAND_IN = textwrap.dedent(
    '''
    """ddddocr's stand-in: each classification does the next step of the `plan` file beside it."""
    import os, pathlib, signal, time

    HERE = pathlib.Path(__file__).parent
    print("stand-in ddddocr v0: loaded (a library chatting on stdout)")
    if (HERE / "missing").exists():
        raise ModuleNotFoundError("No module named 'onnxruntime'")


    class DdddOcr:
        def __init__(self, show_ad=True):
            if (HERE / "broken").exists():
                raise RuntimeError("the model file is damaged")

        def classification(self, image):
            steps = (HERE / "plan").read_text().split()
            (HERE / "plan").write_text(" ".join(steps[1:]))
            step = steps[0] if steps else "read"
            print("reading an image")
            if step == "crash":
                os.kill(os.getpid(), signal.SIGKILL)
            if step == "hang":
                with open(HERE / "reading", "w") as said:  # the test's FIFO: it kills this process now
                    said.write(f"{os.getpid()}\\n")
                time.sleep(3600)
            if step == "garbled":
                raise ValueError("cannot decode the image")
            return image[8:].decode()
    '''
)


def image_of(digits: str) -> bytes:
    """PNG magic and then the digits the stand-in reads back."""
    return b"\x89PNG\r\n\x1a\n" + digits.encode()


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The stand-in model first on the worker's path (the worker inherits PYTHONPATH); returns its folder."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "ddddocr.py").write_text(STAND_IN)
    (folder / "plan").write_text("")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")]))
    return folder


@contextlib.asynccontextmanager
async def reading(folder: Path) -> AsyncIterator[asyncio.StreamReader]:
    """A FIFO the stand-in writes its pid to once it is inside a read, opened first so its open never blocks."""
    fifo = folder / "reading"
    os.mkfifo(fifo, 0o600)
    stream = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stream), os.fdopen(fd, "rb", 0))
    try:
        yield stream
    finally:
        transport.close()


async def pid_inside_a_read(stream: asyncio.StreamReader) -> int:
    async with asyncio.timeout(EXITED_S):
        return int(await stream.readline())


async def test_a_worker_killed_mid_read_is_started_again_and_asked_again(stand_in: Path) -> None:
    (stand_in / "plan").write_text("hang read")
    solver = _solver()
    async with reading(stand_in) as said:
        solving = asyncio.ensure_future(solver.solve(image_of("12345")))
        pid = await pid_inside_a_read(said)
        os.kill(pid, signal.SIGKILL)
        assert await solving == "12345"  # the same image, read by the new worker
    assert solver.worker_pid not in (None, pid) and not alive(pid)
    await solver.aclose()


async def test_a_worker_ending_twice_in_one_read_is_one_clear_error_and_the_next_solve_starts_afresh(
    stand_in: Path,
) -> None:
    (stand_in / "plan").write_text("crash crash read")
    solver = _solver()
    with pytest.raises(CaptchaUnsolved) as caught:
        await solver.solve(image_of("24680"))
    assert str(caught.value) == (
        "the OCR worker ended twice while reading one captcha (killed by signal 9); see the log's captcha.worker lines"
    )
    assert "24680" not in str(caught.value) and solver.worker_pid is None
    assert await solver.solve(image_of("13579")) == "13579"  # not given up for the day: a fresh worker
    await solver.aclose()


async def test_a_worker_over_the_timeout_is_killed_and_the_next_solve_gets_a_fresh_one(stand_in: Path) -> None:
    (stand_in / "plan").write_text("read hang read")
    solver = _solver(timeout_s=3)
    assert await solver.solve(image_of("11111")) == "11111"
    async with reading(stand_in) as said:
        solving = asyncio.ensure_future(solver.solve(image_of("22222")))
        hung = await pid_inside_a_read(said)
        with pytest.raises(CaptchaUnsolved, match=r"^captcha solver 'ocr' gave no answer within 3 s$"):
            await solving
    await exited(hung)  # killed: its late answer could have met the next image
    assert await solver.solve(image_of("33333")) == "33333"
    assert solver.worker_pid not in (None, hung)
    await solver.aclose()


async def test_an_image_the_model_cannot_read_is_unsolved_and_the_worker_stays(stand_in: Path) -> None:
    (stand_in / "plan").write_text("garbled read")
    solver = _solver()
    with pytest.raises(CaptchaUnsolved, match=r"^the OCR model could not read the image \(ValueError\)$"):
        await solver.solve(image_of("55555"))
    pid = solver.worker_pid
    with pytest.raises(CaptchaUnsolved, match="^the OCR model read 2 digits, not 5$"):
        await solver.solve(image_of("12"))
    assert solver.worker_pid == pid is not None
    await solver.aclose()


async def test_a_model_that_cannot_load_is_one_sentence(stand_in: Path) -> None:
    (stand_in / "broken").touch()
    solver = _solver()
    with pytest.raises(
        CaptchaUnsolved,
        match=r"^the OCR worker could not load the model \(RuntimeError\); see the log's captcha.worker lines$",
    ):
        await solver.solve(image_of("12345"))
    assert solver.worker_pid is None
    (stand_in / "broken").unlink()
    (stand_in / "missing").touch()
    with pytest.raises(UserError) as caught:
        await solver.solve(image_of("12345"))
    assert str(caught.value) == OCR_EXTRA_MISSING
    await solver.aclose()


async def test_the_worker_sees_no_password_of_the_environment(stand_in: Path, monkeypatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "the-accounts-password")
    monkeypatch.setenv("BROKER_PASSWORD", "another-password")
    solver = _solver()
    assert await solver.solve(image_of("12345")) == "12345"
    pid = solver.worker_pid
    assert pid is not None
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    assert b"the-accounts-password" not in environ and b"another-password" not in environ
    assert PASSWORD_ENV.encode() not in environ and b"BROKER_PASSWORD" not in environ
    assert b"PYTHONPATH=" in environ and b"PATH=" in environ  # what it needs to find Python and the model
    await solver.aclose()


# --- the service process --------------------------------------------------------------------------------

SERVICE = textwrap.dedent(
    """
    import asyncio, json, sys
    from datetime import timedelta

    from daemon.cli import build_parser
    build_parser()  # every command module, as `python -m daemon run` imports them before it starts the service
    import daemon.service  # the day runner's factory, daemon.cli.run's default

    from daemon.clock import SystemClock
    from daemon.config import load_config
    from daemon.executor import Executor
    from daemon.firing import Journal
    from daemon.logs import configure_logging
    from daemon.warmup import warmup
    from daemon.wiring import Wiring

    MODEL = ("ddddocr", "onnxruntime", "numpy", "cv2", "PIL")
    UNUSED = ("redis", "cryptography", "apprise", "matplotlib")  # no group, no token key, no notify, no plot

    async def main(path):
        configure_logging("debug", stream=sys.stderr, json=True)
        config = load_config(path)
        clock = SystemClock()
        async with Wiring(config, clock) as services:
            warmed = await warmup(services.clients(config.accounts), clock)
            during = services.solver.worker_pid
            await services.rest_solver()
            open_at = (clock.now() + timedelta(minutes=5)).astimezone(config.tz)
            executor = Executor.from_wiring(services, Journal(config.state_dir, open_at.date()), day=open_at.date())
            try:
                plans = await executor.arm(config.accounts, open_at)
                armed = {"plans": len(plans), "worker": services.solver.worker_pid,
                         "model": [m for m in MODEL if m in sys.modules],
                         "unused": [m for m in UNUSED if m in sys.modules]}
            finally:
                await executor.aclose()
        print(json.dumps({"ok": sum(r.ok for r in warmed), "worker_during_warmup": during, **armed}))

    asyncio.run(main(sys.argv[1]))
    """
)


@needs_ocr
@pytest.mark.sim(accounts=3, brokers=("gs", "shahr"), real_time=True)
async def test_a_warmed_and_armed_service_never_imported_the_model_nor_unused_libraries_nor_logged_an_answer(
    sim: Simulator, tmp_path: Path
) -> None:
    answers: list[str] = []
    showed = sim.captchas.showed

    def remember(image: bytes, answer: str) -> None:
        answers.append(answer)
        showed(image, answer)

    sim.captchas.showed = remember  # type: ignore[method-assign]
    path = write_sim_config(
        sim,
        tmp_path / "config.yaml",
        state_dir=str(tmp_path / "state"),
        cache={"dir": str(tmp_path / "cache")},
        captcha={"solver": "ocr", "spacing_s": 0.05, "max_attempts": 8, "timeout_s": 60},
    )
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SERVICE,
        str(path),
        cwd=tmp_path,
        env=daemon_env({PASSWORD_ENV: DEFAULT_PASSWORD}),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    async with asyncio.timeout(180):
        out, err = await child.communicate()
    assert child.returncode == 0, err.decode()[-3000:]
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert result["ok"] == 3 and result["plans"] == 3
    assert result["worker_during_warmup"] is not None  # the logins went through a worker...
    assert result["worker"] is None and result["model"] == []  # ...and the armed service holds none of it
    assert result["unused"] == []  # files cache, no group, token key or notify: none of their libraries (issue 18)
    assert not alive(result["worker_during_warmup"])
    assert len(answers) >= 3
    events = [json.loads(line) for line in err.decode().splitlines() if line.startswith("{")]
    assert any(e.get("event") == "captcha.worker_started" for e in events)
    logged = " ".join(str(v) for e in events for k, v in e.items() if k != "pid")  # a pid may match by chance
    assert not [a for a in answers if re.search(rf"(?<![\d.]){a}(?![\d.])", logged)]
