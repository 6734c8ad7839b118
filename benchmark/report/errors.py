"""The report's one error type: a problem the user can fix, printed as one line."""
from __future__ import annotations


class ReportError(ValueError):
    """A user-facing problem (bad path, unreadable input): printed as one `error:` line, exit status 2."""
