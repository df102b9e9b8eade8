"""The drafts a platform made for the day's orders (easytrader: the order created at the arm, sent by a batch at the
open), read back from the journal.

A `draft` record is written when a draft is made (at the arm, or the final check's replacement of a resized one),
before anything can send it, so a process taking the day up again sends the same draft rather than making another:
a draft whose batch was accepted and another draft of the same order could both be placed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from daemon.firing._report import Key, order_key


@dataclass(frozen=True, slots=True)
class JournaledDraft:
    prepared: str
    """The platform's id of the draft (`Session.prepare_order`)."""
    price: int | None
    volume: int | None


def journaled_drafts(records: list[dict[str, Any]]) -> dict[Key, JournaledDraft]:
    """The latest draft of each (account, isin, side) in the day's journal."""
    drafts: dict[Key, JournaledDraft] = {}
    for record in records:
        if record.get("kind") == "draft" and isinstance(record.get("prepared"), str) and record["prepared"]:
            drafts[order_key(record)] = JournaledDraft(record["prepared"], record.get("price"), record.get("volume"))
    return drafts
