"""What a broker's answer to an order means: now the platform codec's (`daemon.platforms`); the names stay
importable from here for existing callers."""

from __future__ import annotations

from daemon.platforms._models import OrderAnswer as Answer
from daemon.platforms._models import Verdict
from daemon.platforms.ephoenix._codec import RETRY_CODES, TERMINAL_CODES, interpret

__all__ = ["RETRY_CODES", "TERMINAL_CODES", "Answer", "Verdict", "interpret"]
