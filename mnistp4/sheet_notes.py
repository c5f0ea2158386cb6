"""Notes a segmenter leaves about the sheet it cuts: what it saw and took care of (a fold, creases),
or why many of the sheet's digits are flagged and what to do about it. ``segment`` shows them as
the sheet's note (the summary table, ``--json``, the log). Light on imports: segmenters run in
worker processes that start without the plugin API."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

log = logging.getLogger(__name__)

_NOTES: ContextVar[list[str] | None] = ContextVar("mnistp4_sheet_notes", default=None)


def sheet_note(message: str) -> None:
    """Tell the user something about the sheet being cut: one sentence, without the sheet's name
    (``segment`` puts it in front). Called from a segmenter; the same note twice is kept once.
    Outside a ``segment`` batch (a segmenter called directly) the note is logged."""
    notes = _NOTES.get()
    if notes is None:
        log.info("%s", message)
    elif message not in notes:
        notes.append(message)


@contextmanager
def collect_sheet_notes() -> Iterator[list[str]]:
    """The notes :func:`sheet_note` is given inside the block, in order: the batch wraps each
    sheet's segmenter call in one."""
    notes: list[str] = []
    token = _NOTES.set(notes)
    try:
        yield notes
    finally:
        _NOTES.reset(token)
