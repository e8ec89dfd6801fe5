"""Question answering over workspaces of code: import, index, search and answer (no Flask here)."""

from app.ask.engine import ask, validate_question, validate_top_k
from app.ask.errors import AskError, EmptyWorkspace, ImportRefused, InvalidQuestion, WorkspaceNotFound
from app.ask.importer import import_archive_stream, import_workspace
from app.ask.index import IndexStats, update_index
from app.ask.llm import LLMSettings
from app.ask.ranking import Source, search
from app.ask.workspaces import (
    WORKSPACE_ID_RE,
    delete_workspace,
    is_valid_workspace_id,
    list_workspaces,
    workspace_dir,
)

__all__ = [
    "WORKSPACE_ID_RE",
    "AskError",
    "EmptyWorkspace",
    "ImportRefused",
    "IndexStats",
    "InvalidQuestion",
    "LLMSettings",
    "Source",
    "WorkspaceNotFound",
    "ask",
    "delete_workspace",
    "import_archive_stream",
    "import_workspace",
    "is_valid_workspace_id",
    "list_workspaces",
    "search",
    "update_index",
    "validate_question",
    "validate_top_k",
    "workspace_dir",
]
