"""Users and their passwords."""

from app.users.store import User, UserError, UserStore

__all__ = ["User", "UserError", "UserStore"]
