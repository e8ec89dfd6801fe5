"""Which ``X-Forwarded-*`` headers count, and from whom: only a trusted proxy's, and only the ones named."""

from __future__ import annotations

from werkzeug.middleware.proxy_fix import ProxyFix

from app.ipallow import IPAllowlist, Network


class TrustedProxyFix:
    """werkzeug's ``ProxyFix``, applied only when the socket peer is one of ``TRUSTED_PROXIES``.

    A client that reaches gunicorn directly (past the proxy, or on a shared network) sends whatever
    ``X-Forwarded-For`` it likes: from such a peer the headers are ignored and the peer is the client.
    ``X-Forwarded-For`` and ``-Proto`` count ``count`` hops; ``-Host``, ``-Port`` and ``-Prefix`` only when
    ``TRUSTED_PROXY_HEADERS`` names them, since a proxy that does not set them passes a client's own through.
    """

    def __init__(self, wsgi_app, count: int, proxies: tuple[Network, ...], extra_headers: frozenset[str]) -> None:
        self.wsgi_app = wsgi_app
        self.proxies = IPAllowlist(proxies)
        self.fixed = ProxyFix(
            wsgi_app,
            x_for=count,
            x_proto=count,
            x_host=count if "host" in extra_headers else 0,
            x_port=count if "port" in extra_headers else 0,
            x_prefix=count if "prefix" in extra_headers else 0,
        )

    def __call__(self, environ, start_response):
        if self.proxies.allowed(environ.get("REMOTE_ADDR")):
            return self.fixed(environ, start_response)
        return self.wsgi_app(environ, start_response)
