"""A captcha solver that asks the simulator which digits its image shows, instead of reading the picture."""

from __future__ import annotations

from daemon.account import CaptchaUnsolved, sniff_image_format
from daemon.simulator import Simulator


class SimulatorSolver:
    """Answers the captchas `sim` served, at once and always right; an image it did not serve is unsolved.

    It checks the image's format first, as every real solver does, so a broker sending something that is not
    an image still meets the daemon's own handling. Counts its answers (`solved`) for tests that care.
    """

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.solved = 0

    async def solve(self, image: bytes, digits: int = 5) -> str:
        sniff_image_format(image)
        answer = self.sim.captchas.answer_for_image(image)
        if answer is None:
            raise CaptchaUnsolved("the simulator did not serve this captcha image")
        self.solved += 1
        return answer

    async def aclose(self) -> None:
        return None
