"""Errors raised by the ask domain; each carries a message safe to show to the user."""

import errno

# An import that ran out of room on the disk holding WORKSPACES_DIR: said the same by the API (507) and the pages.
DISK_FULL_MESSAGE = "The disk holding WORKSPACES_DIR is full; nothing was changed"


def is_disk_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


class AskError(Exception):
    """Base class: ``str(err)`` and ``err.message`` are user-readable."""

    default_message = "The request could not be handled"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class WorkspaceNotFound(AskError):
    default_message = "Workspace not found"


class EmptyWorkspace(AskError):
    default_message = "Workspace has no indexable text files"


class ImportRefused(AskError):
    default_message = "Import refused"


class InvalidQuestion(AskError):
    default_message = "Invalid question"


class IndexNotReady(AskError):
    """The workspace's first index is still being built; ask again after ``retry_after`` seconds."""

    default_message = "Workspace is being indexed"

    def __init__(self, message: str | None = None, *, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class IndexFailed(AskError):
    default_message = "Workspace could not be indexed"
