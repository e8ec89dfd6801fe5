"""gunicorn settings for Askgate: ``gunicorn -c gunicorn.conf.py wsgi:app``.

Memory rate-limit storage counts per process, so it runs one worker with threads; with Redis storage
the limit holds across processes and we run ``WEB_CONCURRENCY`` workers (default 2 x cores + 1).
However the count is asked for (``-w``, ``--workers``, ``GUNICORN_CMD_ARGS``, ``WEB_CONCURRENCY``, a config file
that extends this one, ``kill -TTIN``), ``nworkers_changed`` below sees the final number and keeps it at one on memory.
"""

import os
import sys

from app.config import (
    ConfigError,
    check_worker_count,
    load_config,
    load_dotenv_files,
    load_server_settings,
    ratelimit_storage_uri,
)
from app.worker import HeaderDeadlineWorker

load_dotenv_files()
try:
    _config = load_config()
    _server = load_server_settings(_config)
except ConfigError as exc:
    sys.exit(f"askgate: configuration error: {exc}")

bind = f"[{_config.host}]:{_config.port}" if ":" in _config.host else f"{_config.host}:{_config.port}"
workers = _server.workers
threads = _server.threads
# gthread, plus a deadline for each request's headers that ties up no thread while it runs (app/worker.py).
worker_class = "app.worker.HeaderDeadlineWorker"
HeaderDeadlineWorker.header_timeout = _config.request_header_timeout
timeout = _server.timeout
graceful_timeout = _server.graceful_timeout
keepalive = 5
accesslog = _server.access_log
errorlog = "-"
# gunicorn's control socket defaults to one path per user, which two instances on a box would share.
control_socket_disable = True


def nworkers_changed(server, new_value, old_value):
    """gunicorn calls this when it sets the worker count: at start (``old_value`` None, after the command line and
    GUNICORN_CMD_ARGS are applied), on ``kill -TTIN``/``-TTOU`` and on a reload (``kill -HUP``)."""
    try:
        # What the workers will see: gunicorn's -e/--env settings win over the environment.
        check_worker_count(new_value, ratelimit_storage_uri({**os.environ, **server.cfg.env}))
    except ConfigError as exc:
        if old_value is None:  # starting: refuse, before anything listens
            sys.exit(f"askgate: configuration error: {exc}")
        server.log.error("askgate: %s; keeping one worker", exc)
        server.cfg.set("workers", 1)  # a reload spawns cfg.workers new workers
        server.num_workers = 1  # calls this hook again, with 1


def when_ready(server):
    from app.firstrun import setup_message
    from app.stores import Stores

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


def worker_exit(server, worker):
    """A worker stopping gracefully adds the key usage it counted since the last flush (app/usage.py)."""
    from app import usage

    usage.flush_all()
