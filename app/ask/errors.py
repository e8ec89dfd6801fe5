"""Errors raised by the ask domain; each carries a message safe to show to the user."""


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
