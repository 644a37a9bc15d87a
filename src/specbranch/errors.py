"""User-facing errors.

`SpecBranchError` marks a problem the user can fix (bad input, missing model, mismatched
vocabularies). The CLI prints its message without a traceback; anything else is a bug.
"""


class SpecBranchError(Exception):
    """An error caused by the user's input or environment, with a message that says what to do."""


class WorkerError(SpecBranchError):
    """A decode worker process died, hung or reported an exception."""
