"""What a long step shows on the console: dbt's per-node lines only with `--verbose`, never an
ANSI code where the output is not a terminal, and a heartbeat line at least every 10 s."""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TextIO, TypeVar

VERBOSE_ENV = "STRAT_LLM_VERBOSE"
HEARTBEAT_SECONDS = 10.0
ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
T = TypeVar("T")
# dbt's line for a finished node: "12 of 45 OK created sql table model main.x ... [OK in 0.1s]"
_NODE_DONE = re.compile(r"^(\d+) of (\d+) (?!START)", re.MULTILINE)


def verbose() -> bool:
    """`strat-llm --verbose` (or STRAT_LLM_VERBOSE=1): show dbt's per-node lines."""
    return os.environ.get(VERBOSE_ENV, "") not in ("", "0", "false")


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


def is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class _DbtEcho:
    """Stands in for sys.stdout while dagster-dbt re-emits dbt's log lines there: passes them
    on with --verbose (without colour codes unless stdout is a terminal), else drops them."""

    def __init__(self, target: TextIO, show: bool) -> None:
        self.target, self.show = target, show
        self.colour = is_terminal(target)

    def write(self, text: str) -> int:
        if self.show:
            self.target.write(text if self.colour else strip_ansi(text))
        for done, total in _NODE_DONE.findall(strip_ansi(text)):
            note(f"dbt: {done} of {total} nodes done")
        return len(text)

    def flush(self) -> None:
        self.target.flush()

    def isatty(self) -> bool:
        return False


_NOTE = {"text": ""}


def note(text: str) -> None:
    """What the running step is doing, for the heartbeat line (e.g. `dbt: 31 nodes done`)."""
    _NOTE["text"] = text


def current_note() -> str:
    return f" ({_NOTE['text']})" if _NOTE["text"] else ""


class Heartbeat:
    """Prints `  still <what>: 42 s<detail>` to stderr every `every` seconds until closed."""

    def __init__(
        self,
        what: str,
        detail: Callable[[], str] = current_note,
        every: float = HEARTBEAT_SECONDS,
        stream: TextIO | None = None,
    ) -> None:
        self.what, self.detail, self.every = what, detail, every
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self.every):
            elapsed = time.monotonic() - self.started
            line = f"  still {self.what}: {elapsed:.0f} s{self.detail()}"
            with contextlib.suppress(ValueError, OSError):  # a closed stream at exit
                print(line, file=self.stream, flush=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self._stop.set()
        self._thread.join()


_DBT_SECONDS = {"total": 0.0}


def dbt_seconds() -> float:
    """Wall time spent in dbt invocations in this process so far (`dbt_quietly` adds it up),
    so that a run can show dbt's own time apart from Dagster's."""
    return _DBT_SECONDS["total"]


@contextlib.contextmanager
def dbt_quietly() -> Iterator[None]:
    """While dbt runs: its node lines (dagster-dbt writes them to sys.stdout) shown only with
    --verbose; the count of finished nodes is the heartbeat's note; its wall time is counted."""
    echo = _DbtEcho(sys.stdout, verbose())
    note("dbt started")
    started = time.monotonic()
    try:
        with contextlib.redirect_stdout(echo):  # type: ignore[type-var]
            yield
    finally:
        _DBT_SECONDS["total"] += time.monotonic() - started
        note("")


def dbt_events(events: Iterable[T]) -> list[T]:
    """Drain a dagster-dbt event stream quietly (`dbt_quietly`)."""
    with dbt_quietly():
        return list(events)
