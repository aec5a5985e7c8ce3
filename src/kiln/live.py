"""The live display on a terminal: status lines that update in place, drawn by ``rich``.

Only the command line uses it, and only when stderr is a terminal (see
:func:`kiln.terminal.live_display_wanted`): this module is imported then and
not otherwise, and it imports ``rich`` (an optional dependency,
``kiln-build[progress]``) when a :class:`LiveScreen` is made. Lines printed
meanwhile go above the status lines and stay; the status lines go when the
display stops, Ctrl-C included, and the cursor comes back.

``rich`` honours ``NO_COLOR`` by itself (``TERM=dumb`` gets no live display at
all); each status line is cut to the terminal's width with an ellipsis, never
wrapped.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from types import TracebackType

from kiln.progress import Activity, format_seconds, short_step

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rich.constrain import Constrain

# Four redraws a second: enough for a clock in seconds, cheap beside a build.
REFRESH_PER_SECOND = 4
# Columns left free at the end of each status line (see LiveScreen._renderable).
ECHO_ROOM = 3
_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_ASCII_SPINNER = "-\\|/"


class LiveScreen:
    """Status lines from ``render(screen)`` (each a (text, style) pair), redrawn in
    place below whatever :meth:`print` prints."""

    def __init__(self, render: Callable[[LiveScreen], Sequence[tuple[str, str]]]) -> None:
        from rich.console import Console
        from rich.live import Live

        self.render = render
        self.console = Console(file=sys.stderr, highlight=False, soft_wrap=False)
        encoding = (self.console.encoding or "").lower()
        self.spinner = _SPINNER if encoding.startswith("utf") else _ASCII_SPINNER
        self.live = Live(
            console=self.console,
            get_renderable=self._renderable,
            refresh_per_second=REFRESH_PER_SECOND,
            transient=True,
            # Anything else written to stderr meanwhile goes above the status lines.
            redirect_stdout=False,
            redirect_stderr=True,
        )

    def __enter__(self) -> LiveScreen:
        self.live.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.live.stop()  # also on Ctrl-C: the status lines go, the cursor comes back

    def print(self, line: str, style: str = "") -> None:
        """A line that stays, above the status lines."""
        from rich.text import Text

        self.console.print(Text(line, style=style), soft_wrap=True)

    def spin(self) -> str:
        return self.spinner[int(time.monotonic() * 8) % len(self.spinner)]

    def handler(self, formatter: logging.Formatter) -> logging.Handler:
        """A logging handler that prints each record as a line that stays."""
        return _ScreenHandler(self, formatter)

    def _renderable(self) -> Constrain:
        from rich.console import Group
        from rich.constrain import Constrain
        from rich.text import Text

        lines = (
            Text(text, style=style, no_wrap=True, overflow="ellipsis")
            for text, style in self.render(self)
        )
        # Short of the last columns: a "^C" the terminal echoes after a line as wide
        # as the screen would wrap, and the display would no longer know where it is.
        return Constrain(Group(*lines), width=max(1, self.columns() - ECHO_ROOM))

    def columns(self) -> int:
        """The terminal's width now. Not ``COLUMNS``, which ``rich`` prefers: a value
        exported once goes stale when the window is resized, and a status line wider
        than the screen wraps, and the display loses its place."""
        import os

        try:
            return os.get_terminal_size(self.console.file.fileno()).columns or self.console.width
        except (AttributeError, ValueError, OSError):
            return self.console.width


class _ScreenHandler(logging.Handler):
    def __init__(self, screen: LiveScreen, formatter: logging.Formatter) -> None:
        super().__init__()
        self.screen = screen
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            style = "red" if record.levelno >= logging.ERROR else ""
            style = style or ("yellow" if record.levelno >= logging.WARNING else "")
            self.screen.print(self.format(record), style)
        except Exception:
            self.handleError(record)


def build_status(screen: LiveScreen, activity: Activity) -> list[tuple[str, str]]:
    """A single build's status line: step, time in it, the backend's latest line."""
    if activity.step is None:
        return []
    step = short_step(activity.step)
    parts = [f"{screen.spin()} {step}", format_seconds(activity.step_seconds())]
    if activity.line:
        parts.append(activity.line)
    return [(" · ".join(parts), "cyan")]
