"""daemon.testing: the in-process captcha solver, the running simulator, and the one `sim` fixture's marker."""

from __future__ import annotations

import base64
import os
import random
import time
from datetime import timedelta

import aiohttp
import pytest

from daemon.account import CaptchaUnsolved, UnknownImageFormat
from daemon.clock import FakeClock, SystemClock
from daemon.executor import Executor
from daemon.firing import Journal
from daemon.sim import CaptchaBook, HostClock, render_captcha
from daemon.simulator import DEFAULT_PASSWORD, PASSWORD_ENV, Simulator
from daemon.testing import SIM_SEED, SimulatorSolver, daemon_clock, running_simulator, sim_config
from daemon.warmup import warmup
from daemon.wiring import Wiring
from tests.sim_support import GS_USER, SHAHR_USER, BrokerClient


@pytest.mark.parametrize(("broker", "username"), [("gs", GS_USER), ("shahr", SHAHR_USER)])  # PNG and JPEG
async def test_the_solver_reads_each_captcha_the_simulator_served_and_the_login_takes_it(
    sim: Simulator, broker: str, username: str
) -> None:
    solver = SimulatorSolver(sim)
    async with aiohttp.ClientSession() as session:
        client = BrokerClient(session, sim, broker)
        for _ in range(3):
            captcha = await (await client.captcha()).json()
            answer = await solver.solve(base64.b64decode(captcha["captchaByteData"]))
            assert answer == sim.captchas.answer(captcha["salt"])
        body = await (await client.login(username, answer=answer, captcha=captcha)).json()
    assert body["isSuccess"], body
    assert solver.solved == 3


async def test_an_image_the_simulator_did_not_serve_is_unsolved_and_garbage_is_no_image(sim: Simulator) -> None:
    solver = SimulatorSolver(sim)
    with pytest.raises(CaptchaUnsolved, match="did not serve"):
        await solver.solve(render_captcha("12345", "png", random.Random(3)))
    with pytest.raises(UnknownImageFormat):
        await solver.solve(b"<html>busy</html>")
    assert solver.solved == 0


def test_the_book_remembers_only_the_last_images_it_showed() -> None:
    book = CaptchaBook(b"secret", lambda: 300.0)
    book.SHOWN_KEPT = 3
    images = [render_captcha(f"{n:05d}", "png", random.Random(n)) for n in range(4)]
    for n, image in enumerate(images):
        book.showed(image, f"{n:05d}")
    assert book.answer_for_image(images[0]) is None
    assert [book.answer_for_image(image) for image in images[1:]] == ["00001", "00002", "00003"]


@pytest.mark.sim(real_time=True)
async def test_a_warmup_with_the_solver_never_builds_the_ocr_model(sim: Simulator, monkeypatch) -> None:
    def no_ocr(settings):
        raise AssertionError("Wiring built the configured solver though one was passed in")

    monkeypatch.setattr("daemon.wiring.make_solver", no_ocr)
    config = sim_config(sim)
    solver = SimulatorSolver(sim)
    async with Wiring(config, SystemClock(), solver=solver) as services:
        results = await warmup(services.clients(config.accounts), services.clock)
    assert all(r.ok for r in results), [r.error for r in results]
    logins = sim.request_log.records(route="login")
    assert [r.error_code for r in logins] == [0, 0] and solver.solved == 2


async def test_running_simulator_exports_the_password_while_it_runs_and_restores_it(monkeypatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    async with running_simulator(1, ("gs",)) as sim:
        assert os.environ[PASSWORD_ENV] == DEFAULT_PASSWORD
        assert sim.settings.seed == SIM_SEED and isinstance(sim.clock, HostClock)
    assert PASSWORD_ENV not in os.environ
    monkeypatch.setenv(PASSWORD_ENV, "theirs")
    async with running_simulator(1, ("gs",), password="other-pass"):
        assert os.environ[PASSWORD_ENV] == "other-pass"
    assert os.environ[PASSWORD_ENV] == "theirs"


async def test_the_sim_fixture_by_default_runs_on_the_fake_clock(sim: Simulator, clock: FakeClock) -> None:
    assert [a.username for a in sim.accounts] == [GS_USER, SHAHR_USER]
    assert list(sim.state.brokers) == ["gs", "shahr"] and sim.settings.seed == SIM_SEED
    before = sim.now()
    clock.advance(90)
    assert (sim.now() - before).total_seconds() == 90


@pytest.mark.sim(accounts=3, brokers=("bbi",), seed=5, real_time=True)
async def test_a_sim_marker_chooses_the_fixtures_simulator(sim: Simulator) -> None:
    assert len(sim.accounts) == 3 and {a.broker for a in sim.accounts} == {"bbi"}
    assert sim.settings.seed == 5 and isinstance(sim.clock, HostClock)
    assert os.environ[PASSWORD_ENV] == DEFAULT_PASSWORD


@pytest.mark.looptime
@pytest.mark.sim(accounts=4, loop_time=True)
async def test_an_open_in_fake_time(sim, tmp_path):
    """README's fake-time example, as written there: an open 30 s ahead and its window pass in fake time."""
    config = sim_config(sim, state_dir=str(tmp_path / "state"))
    started = time.monotonic()
    async with Wiring(config, daemon_clock(sim), solver=SimulatorSolver(sim)) as services:
        await warmup(services.clients(config.accounts), services.clock)
        open_at = sim.now().astimezone(config.tz) + timedelta(seconds=30)
        sim.set_open_at(open_at)
        executor = Executor.from_wiring(services, Journal(config.state_dir, open_at.date()), day=open_at.date())
        rows = await executor.run_open(config.accounts, open_at)
    assert len(rows) == 4 and all(r.accepted for r in rows)
    assert sim.now() >= open_at  # the simulator lived through the open on the same clock
    assert time.monotonic() - started < 30  # not waited out: the open was 30 s of fake time ahead
