"""User-facing errors.

Every problem a user can cause (a bad path, a malformed file, an unknown option) raises
:class:`OltrError` with one paragraph that names the bad input and what was expected. The CLI
prints that paragraph and exits with status 2; anything else is a bug and keeps its traceback.
"""


class OltrError(Exception):
    """An error in the user's input, reported without a traceback."""
