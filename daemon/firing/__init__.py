"""The open's records: firing plans and their order, asking the broker's order lists, the write-ahead
journal and its reading (the report, and what a restart must do). The executor (`daemon.executor`) fires.
"""

from __future__ import annotations

from daemon.firing._drafts import JournaledDraft, journaled_drafts
from daemon.firing._journal import (
    Journal,
    JournalBusy,
    journal_path,
    read_journal,
)
from daemon.firing._lookup import (
    MATCH_SLACK_S,
    Lookup,
    Presence,
    find_order,
    look_up,
)
from daemon.firing._plan import (
    Answer,
    FirePlan,
    Verdict,
    assign_slots,
    classify,
    firing_order,
    new_order_request,
)
from daemon.firing._report import (
    FILL_FIELDS,
    FILL_STATES,
    FillState,
    ReportRow,
    resume_action,
    summarize,
    window_info,
)

__all__ = [
    "FILL_FIELDS",
    "FILL_STATES",
    "Answer",
    "FillState",
    "FirePlan",
    "Journal",
    "JournalBusy",
    "JournaledDraft",
    "Lookup",
    "MATCH_SLACK_S",
    "Presence",
    "ReportRow",
    "Verdict",
    "assign_slots",
    "classify",
    "find_order",
    "firing_order",
    "journal_path",
    "journaled_drafts",
    "look_up",
    "new_order_request",
    "read_journal",
    "resume_action",
    "summarize",
    "window_info",
]
