"""Messages: stdlib :mod:`logging` under the ``oltr_bench`` logger (progress bars stay tqdm).

Modules log with ``logging.getLogger(__name__)``. The command line calls :func:`setup` once:
messages go to standard error, one line each (warnings prefixed ``warning:``), written through
``tqdm.write`` so that they never break a progress bar; ``--quiet`` keeps warnings and errors,
``--verbose`` adds debug messages. Under torchrun only rank 0 speaks (:func:`only_rank_zero`),
except for errors. A library user configures logging as they like; nothing is printed for them
by default except warnings (Python's last-resort handler).
"""

from __future__ import annotations

import logging
import sys

from tqdm import tqdm

ROOT = "oltr_bench"
_PREFIX = {logging.DEBUG: "debug: ", logging.WARNING: "warning: ", logging.ERROR: "error: ", logging.CRITICAL: "error: "}


class _TqdmHandler(logging.Handler):
    """Writes to the current ``sys.stderr`` (looked up per message) without breaking tqdm bars."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return _PREFIX.get(record.levelno, "") + record.getMessage()


_rank = 0


def _rank_filter(record: logging.LogRecord) -> bool:
    return _rank == 0 or record.levelno >= logging.ERROR


def setup(verbosity: int = 0) -> None:
    """Route the package's messages to standard error: ``verbosity`` < 0 warnings and errors only,
    0 also progress messages (INFO), > 0 also debug messages. Calling it again replaces the setup."""
    logger = logging.getLogger(ROOT)
    for handler in [h for h in logger.handlers if isinstance(h, _TqdmHandler)]:
        logger.removeHandler(handler)
    handler = _TqdmHandler()
    handler.setFormatter(_Formatter())
    handler.addFilter(_rank_filter)
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO)


def only_rank_zero(rank: int) -> None:
    """Under torchrun: processes other than rank 0 log errors only (every rank does the same work)."""
    global _rank
    _rank = rank
