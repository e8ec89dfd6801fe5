"""The Flask class Askgate runs on: request hooks planned once per blueprint, and app-wide hooks a blueprint skips.

Flask looks up every hook list and asks ``inspect`` whether each hook is a coroutine on every request; for an API
call that costs more than the guard itself. Hooks cannot be added once the first request is served (Flask refuses),
so each blueprint's plan is built on its first request and reused. A blueprint can also skip app-wide hooks that
do nothing for it: the API checks CSRF itself and counts its own limits, so flask-wtf's and flask-limiter's
per-request hooks only cost it time (see ``create_app``). Everything else runs exactly as in Flask: the same hooks
in the same order, the session saved the same way, the same signals.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain

from flask import Flask, Response, request
from flask.globals import request_ctx
from flask.signals import request_tearing_down

_NOT_GIVEN = object()


@dataclass(frozen=True)
class HookPlan:
    """The hooks a request of one blueprint chain runs, in Flask's order, already made synchronous."""

    url_value_preprocessors: tuple[Callable, ...]
    before: tuple[Callable, ...]
    after: tuple[Callable, ...]
    teardown: tuple[Callable, ...]


class AskgateFlask(Flask):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        #: blueprint name -> app-wide hooks its requests skip (:meth:`skip_app_hooks`)
        self.skipped_app_hooks: dict[str, frozenset[Callable]] = {}
        self._hook_plans: dict[str | None, HookPlan] = {}  # by request.blueprint, which decides its chain

    def skip_app_hooks(self, blueprint: str, hooks: Iterable[Callable]) -> None:
        """Requests of ``blueprint`` do not run these app-wide hooks (before, after or teardown)."""
        self.skipped_app_hooks[blueprint] = self.skipped_app_hooks.get(blueprint, frozenset()) | frozenset(hooks)
        self._hook_plans.clear()

    def hook_plan(self) -> HookPlan:
        """The current request's plan."""
        blueprint = request.blueprint
        plan = self._hook_plans.get(blueprint)
        if plan is None:
            plan = self._build_plan(tuple(request.blueprints))
            if self._got_first_request:  # from then on Flask refuses new hooks: the plan holds
                self._hook_plans[blueprint] = plan
        return plan

    def _build_plan(self, blueprints: tuple[str, ...]) -> HookPlan:
        skipped = frozenset().union(*(self.skipped_app_hooks.get(name, ()) for name in blueprints))

        def app_wide_or_kept(name: str | None, funcs: Iterable[Callable]) -> list[Callable]:
            return [self.ensure_sync(f) for f in funcs if name is not None or f not in skipped]

        first_app = (None, *reversed(blueprints))  # Flask's order for before-request work
        first_blueprint = (*blueprints, None)  # ... and for after-request and teardown work
        return HookPlan(
            url_value_preprocessors=tuple(
                chain.from_iterable(self.url_value_preprocessors.get(name, ()) for name in first_app)
            ),
            before=tuple(
                chain.from_iterable(
                    app_wide_or_kept(name, self.before_request_funcs.get(name, ())) for name in first_app
                )
            ),
            after=tuple(
                chain.from_iterable(
                    app_wide_or_kept(name, reversed(self.after_request_funcs.get(name, ()))) for name in first_blueprint
                )
            ),
            teardown=tuple(
                chain.from_iterable(
                    app_wide_or_kept(name, reversed(self.teardown_request_funcs.get(name, ())))
                    for name in first_blueprint
                )
            ),
        )

    # -- Flask's three hook runners, reading the plan --------------------------------------------------------------
    def preprocess_request(self):
        plan = self.hook_plan()
        for url_func in plan.url_value_preprocessors:
            url_func(request.endpoint, request.view_args)
        for before_func in plan.before:
            rv = before_func()
            if rv is not None:
                return rv
        return None

    def process_response(self, response: Response) -> Response:
        ctx = request_ctx._get_current_object()
        for func in ctx._after_request_functions:  # after_this_request: per request, so not planned
            response = self.ensure_sync(func)(response)
        for func in self.hook_plan().after:
            response = func(response)
        if not self.session_interface.is_null_session(ctx._session):
            self.session_interface.save_session(self, ctx._session, response)
        return response

    def do_teardown_request(self, exc: BaseException | None = _NOT_GIVEN) -> None:  # type: ignore[assignment]
        if exc is _NOT_GIVEN:
            exc = sys.exc_info()[1]
        for func in self.hook_plan().teardown:
            func(exc)
        request_tearing_down.send(self, _async_wrapper=self.ensure_sync, exc=exc)


def _app_wide_hooks(app: Flask) -> set[Callable]:
    lists = (app.before_request_funcs, app.after_request_funcs, app.teardown_request_funcs)
    return {f for hooks in lists for f in hooks.get(None, ())}


@contextlib.contextmanager
def app_hooks_added(app: Flask) -> Iterator[set[Callable]]:
    """The app-wide request hooks registered inside the block (an extension's ``init_app``)."""
    before = _app_wide_hooks(app)
    added: set[Callable] = set()
    yield added
    added.update(_app_wide_hooks(app) - before)
