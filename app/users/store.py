"""Users: ``WORKSPACES_DIR/users.json``, with password hashes only (werkzeug's scrypt)."""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from werkzeug.security import check_password_hash, generate_password_hash

from app.documents.sharedfile import StoreUnavailable, StoreWriteError, open_document
from app.inputs import PASSWORD_MAX, PASSWORD_MIN, USERNAME_MAX, USERNAME_RE
from app.keys.store import iso, utcnow
from app.names import name_problem

FILE_NAME = "users.json"
SCHEMA_VERSION = 1
ROLES = ("admin", "member")
PASSWORD_METHOD = "scrypt"  # noqa: S105  (a hash method)
# Sign-ins a user may have open at once; the least recently used beyond this are ended.
MAX_SESSIONS = 50
# A session's last use is written at most this often: its inactivity timeout is exact to within this.
SESSION_TOUCH_INTERVAL = 300
# Checked when a username is unknown, so a login takes as long whether or not the user exists.
_DUMMY_HASH = generate_password_hash(secrets.token_urlsafe(16), method=PASSWORD_METHOD)


class UserError(ValueError):
    """A user change that cannot be made; the message is fit to show."""


@dataclass(frozen=True)
class User:
    """A user as flask-login sees it. ``session_version`` changes end every existing session."""

    id: str
    username: str
    role: str
    disabled: bool
    created_at: str
    session_version: int

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    # flask-login's user protocol
    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def is_active(self) -> bool:
        return not self.disabled

    @property
    def is_anonymous(self) -> bool:
        return False

    def get_id(self) -> str:
        return f"{self.id}:{self.session_version}"


def _user(record: dict) -> User:
    return User(
        id=record["id"],
        username=record["username"],
        role=record["role"],
        disabled=bool(record["disabled"]),
        created_at=record["created_at"],
        session_version=int(record["session_version"]),
    )


def _validate(raw: object) -> dict:
    if not isinstance(raw, dict):
        raise ValueError("top level is not an object")
    if raw.get("version") != SCHEMA_VERSION:
        raise ValueError(f"unsupported version {raw.get('version')!r} (expected {SCHEMA_VERSION})")
    users = raw.get("users")
    if not isinstance(users, list):
        raise ValueError("'users' is not a list")
    names: set[str] = set()
    for index, record in enumerate(users):
        if not isinstance(record, dict):
            raise ValueError(f"user #{index} is not an object")
        for name in ("id", "username", "password_hash", "role", "disabled", "created_at", "session_version"):
            if name not in record:
                raise ValueError(f"user #{index} lacks {name}")
        if record["role"] not in ROLES:
            raise ValueError(f"user {record['username']!r} has unknown role {record['role']!r}")
        sessions = record.get("sessions", {})
        if not isinstance(sessions, dict) or not all(isinstance(v, int | float) for v in sessions.values()):
            raise ValueError(f"user {record['username']!r} has malformed sessions")
        if record["username"].lower() in names:
            raise ValueError(f"username {record['username']!r} appears twice")
        names.add(record["username"].lower())
        _user(record)
    return raw


def _session_digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8", "surrogateescape")).hexdigest()


def validate_password(password: object) -> str:
    if not isinstance(password, str) or len(password) < PASSWORD_MIN:
        raise UserError(f"Choose a password of at least {PASSWORD_MIN} characters")
    if len(password) > PASSWORD_MAX:
        raise UserError(f"A password can be at most {PASSWORD_MAX} characters")
    return password


def validate_username(username: object) -> str:
    problem = name_problem(username.strip(), "username") if isinstance(username, str) else None
    if problem:
        raise UserError(problem)
    if not isinstance(username, str) or not USERNAME_RE.fullmatch(username.strip()):
        raise UserError(
            f"A username is 1–{USERNAME_MAX} characters: letters, digits, dot, dash or underscore, "
            "starting with a letter or digit"
        )
    return username.strip()


class UserStore:
    """All users. Nothing else reads or writes ``users.json``."""

    def __init__(
        self,
        workspaces_dir: Path | None = None,
        *,
        redis_client=None,
        redis_prefix: str = "askgate",
        stale_seconds: float = 0.0,
    ) -> None:
        """Users in ``workspaces_dir/users.json``, or in Redis when a client is given (several hosts)."""
        self._by_name: dict[str, dict] = {}
        self._by_id: dict[str, dict] = {}
        self.generation = 0  # moves on every reload: lets callers cache what they derive from users
        self.file = open_document(
            FILE_NAME,
            workspaces_dir=workspaces_dir,
            redis_client=redis_client,
            redis_prefix=redis_prefix,
            stale_seconds=stale_seconds,
            field="users",
            empty=lambda: {"version": SCHEMA_VERSION, "users": []},
            indexes={"by-name": lambda record: (record["username"].lower(),)},
            validate=_validate,
            on_load=self._reindex,
        )

    def _reindex(self, data: dict) -> None:
        self._by_name = {r["username"].lower(): r for r in data["users"]}
        self._by_id = {r["id"]: r for r in data["users"]}
        self.generation += 1

    def count(self) -> int:
        return len(self.file.read()["users"])

    def get(self, username: str) -> User | None:
        self.file.read()
        record = self._by_name.get(str(username).lower())
        return _user(record) if record else None

    def get_by_id(self, user_id: str) -> User | None:
        self.file.read()
        record = self._by_id.get(user_id)
        return _user(record) if record else None

    def list(self) -> list[User]:
        return sorted((_user(r) for r in self.file.read()["users"]), key=lambda u: u.username.lower())

    def authenticate(self, username: str, password: str) -> User | None:
        """The user if the password matches and the account is enabled; same work either way."""
        self.file.read()
        record = self._by_name.get(str(username).strip().lower())
        stored = record["password_hash"] if record else _DUMMY_HASH
        ok = check_password_hash(stored, password or "")
        if record and ok and not record["disabled"]:
            return _user(record)
        return None

    def create(self, username: str, password: str, role: str = "member", *, only_if_empty: bool = False) -> User:
        username = validate_username(username)
        password_hash = generate_password_hash(validate_password(password), method=PASSWORD_METHOD)
        if role not in ROLES:
            raise UserError(f"Role must be one of {', '.join(ROLES)}")

        def add(data: dict) -> dict:
            if only_if_empty and data["users"]:
                raise UserError("Setup is already complete; sign in instead")
            if any(r["username"].lower() == username.lower() for r in data["users"]):
                raise UserError(f"A user named {username!r} already exists")
            record = {
                "id": "usr_" + secrets.token_hex(8),
                "username": username,
                "password_hash": password_hash,
                "role": role,
                "disabled": False,
                "created_at": iso(utcnow()),
                "session_version": 1,
            }
            data["users"].append(record)
            return record

        return _user(self.file.update(add))

    def _change(self, username: str, apply) -> User:
        def change(data: dict) -> dict:
            for record in data["users"]:
                if record["username"].lower() == str(username).lower():
                    apply(record)
                    return dict(record)
            raise UserError(f"No user named {username!r}")

        return _user(self.file.update(change))

    def set_password(self, username: str, password: str) -> User:
        """Change a password and end every existing session of the user."""
        password_hash = generate_password_hash(validate_password(password), method=PASSWORD_METHOD)

        def apply(record: dict) -> None:
            record["password_hash"] = password_hash
            record["session_version"] += 1

        return self._change(username, apply)

    def set_disabled(self, username: str, disabled: bool) -> User:
        def apply(record: dict) -> None:
            if disabled and not record["disabled"]:
                record["session_version"] += 1
            record["disabled"] = disabled

        return self._change(username, apply)

    # -- sessions: the user record holds a digest and the last use of each open sign-in -------------------
    def start_session(self, user_id: str, lifetime: int, now: float | None = None) -> str:
        """Record a new sign-in of ``user_id``; returns its session id (kept only in the signed cookie)."""
        now = int(now if now is not None else time.time())
        session_id = secrets.token_urlsafe(32)

        def add(data: dict) -> None:
            record = self._record_by_id(data, user_id)
            open_ = {d: t for d, t in record.get("sessions", {}).items() if now - t < lifetime}
            open_[_session_digest(session_id)] = now
            record["sessions"] = dict(sorted(open_.items(), key=lambda item: item[1])[-MAX_SESSIONS:])

        self.file.update(add)
        return session_id

    def session_alive(self, user_id: str, session_id: str, lifetime: int, now: float | None = None) -> bool:
        """Whether ``session_id`` is an open sign-in of ``user_id`` used within ``lifetime`` seconds.

        Marks it used when its recorded last use is more than SESSION_TOUCH_INTERVAL old (one write then).
        """
        now = now if now is not None else time.time()
        self.file.read()
        record = self._by_id.get(user_id)
        digest = _session_digest(session_id)
        last = record.get("sessions", {}).get(digest) if record else None
        if last is None or now - last >= lifetime:
            return False
        if now - last >= min(SESSION_TOUCH_INTERVAL, lifetime / 10):

            def touch(data: dict) -> None:
                sessions = self._record_by_id(data, user_id).get("sessions", {})
                if digest in sessions:
                    sessions[digest] = int(now)

            # A full disk must not sign anyone out: the next request tries again.
            with contextlib.suppress(StoreUnavailable, StoreWriteError):
                self.file.update(touch)
        return True

    def end_session(self, user_id: str, session_id: str) -> None:
        """Sign-out: the session id no longer opens anything, wherever the cookie was copied to."""
        digest = _session_digest(session_id)

        def remove(data: dict) -> None:
            record = next((r for r in data["users"] if r["id"] == user_id), None)
            if record is not None:
                record.get("sessions", {}).pop(digest, None)

        self.file.update(remove)

    @staticmethod
    def _record_by_id(data: dict, user_id: str) -> dict:
        for record in data["users"]:
            if record["id"] == user_id:
                return record
        raise UserError("No such user")

    def set_role(self, username: str, role: str) -> User:
        if role not in ROLES:
            raise UserError(f"Role must be one of {', '.join(ROLES)}")

        def apply(record: dict) -> None:
            record["role"] = role

        return self._change(username, apply)
