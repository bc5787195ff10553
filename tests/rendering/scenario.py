"""The template fleet decided and rendered at a fixed time, with no git at all."""

from __future__ import annotations

from datetime import datetime

from reconciler import crd, deciding, gridcarbon, ledger, messages
from reconciler.loading import load_fleet
from reconciler.observing import DeclaredCapacity
from reconciler.rendering import render
from reconciler.templates import template_files

INPUT = "0" * 40


def decide_and_render(now: datetime, files: dict[str, bytes] | None = None):
    files = files if files is not None else template_files()
    fleet = load_fleet(files, appwrapper_schema=crd.check_appwrapper)
    previous = ledger.parse(files.get(ledger.LEDGER_PATH))
    decision = deciding.decide(
        fleet=fleet,
        ledger=previous,
        spokes=DeclaredCapacity().observe(fleet),
        forecasts=gridcarbon.fetch_forecasts(fleet, now=now),
        now=now,
    )
    rendered = render(decision, previous=files)
    message = messages.commit_message(old=previous, decision=decision, input_commit=INPUT)
    return decision, rendered, message
