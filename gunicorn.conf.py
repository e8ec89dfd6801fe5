"""gunicorn settings for Askgate: ``gunicorn -c gunicorn.conf.py wsgi:app``.

Memory rate-limit storage counts per process, so it runs one worker with threads; with Redis storage
the limit holds across processes and we run ``WEB_CONCURRENCY`` workers (default 2 x cores + 1).
"""

import multiprocessing
import os
import sys

from app.config import ConfigError, load_config, load_dotenv_files
from app.worker import HeaderDeadlineWorker

load_dotenv_files()
try:
    _config = load_config()
except ConfigError as exc:
    sys.exit(f"askgate: configuration error: {exc}")

bind = f"[{_config.host}]:{_config.port}" if ":" in _config.host else f"{_config.host}:{_config.port}"
_shared_storage = not _config.ratelimit_storage_uri.startswith("memory://")
_requested = os.environ.get("WEB_CONCURRENCY", "").strip()
try:
    workers = int(_requested) if _requested else (multiprocessing.cpu_count() * 2 + 1 if _shared_storage else 1)
except ValueError:
    sys.exit(f"askgate: configuration error: WEB_CONCURRENCY must be a whole number, got {_requested!r}")
if workers < 1:
    sys.exit("askgate: configuration error: WEB_CONCURRENCY must be at least 1")
if workers > 1 and not _shared_storage:
    sys.exit(
        f"askgate: configuration error: WEB_CONCURRENCY={workers} needs shared rate-limit storage. "
        "RATELIMIT_STORAGE_URI=memory:// counts per process, so limits would multiply by the worker count; "
        "set RATELIMIT_STORAGE_URI=redis://localhost:6379/0 or use one worker."
    )
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# gthread, plus a deadline for each request's headers that ties up no thread while it runs (app/worker.py).
worker_class = "app.worker.HeaderDeadlineWorker"
HeaderDeadlineWorker.header_timeout = _config.request_header_timeout
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "30"))
keepalive = 5
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
# gunicorn's control socket defaults to one path per user, which two instances on a box would share.
control_socket_disable = True


def when_ready(server):
    from app.setup import setup_message
    from app.storeadmin import Stores

    users = Stores.open(_config.store_url or "files", _config.workspaces_dir).users
    host, port = _config.host, _config.port
    for listener in server.LISTENERS:  # where gunicorn really listens: -b wins over HOST and PORT
        address = listener.sock.getsockname()
        if isinstance(address, tuple):  # not a unix socket
            host, port = address[0], address[1]
            break
    scheme = "https" if server.cfg.is_ssl else "http"
    message = setup_message(_config.workspaces_dir, host, port, users, scheme)
    if message:
        server.log.warning(message)
