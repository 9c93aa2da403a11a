"""How the emulator's modules hook into moto: their own HTTP routes, moto's reset, and request
dispatch. Each hook wraps what was installed before it, so hooks installed in server.py's
`main` run in that order (reset) or in the reverse order (dispatch, routes: the last installed
sees a request first).

    route("/emulator/x", handle)   handle(method, environ) -> (status line, JSON body bytes),
                                   or None to leave the request to moto
    on_reset(clear)                clear() after moto's `/moto-api/reset` (and the earlier hooks)
    before_action(check)           check(response) -> None to serve the request, or the answer
                                   (status, headers, body) to send instead
"""

import json

import moto.server
from moto.core.responses import BaseResponse
from moto.moto_api._internal.models import MotoAPIBackend


def read_json(environ):
    """The request's JSON body ({} when it has none)."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    return json.loads(environ["wsgi.input"].read(length) or b"{}")


def as_json(value):
    """`value` as a JSON response body."""
    return json.dumps(value, default=str).encode()


def route(path, handle):
    """Serves `path` with `handle(method, environ)`, which returns (status line, body bytes);
    the answer is JSON. Every other path, and a request `handle` answers None, goes on to moto."""
    base = moto.server.DomainDispatcherApplication

    class RouteApplication(base):
        def __call__(self, environ, start_response):
            answer = handle(environ.get("REQUEST_METHOD"), environ) if environ.get("PATH_INFO", "") == path else None
            if answer is None:
                return super().__call__(environ, start_response)
            status, body = answer
            start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]

    moto.server.DomainDispatcherApplication = RouteApplication


def on_reset(clear):
    """Calls `clear()` whenever moto resets its backends, after the reset."""
    original_reset = MotoAPIBackend.reset

    def reset(self):
        original_reset(self)
        clear()

    MotoAPIBackend.reset = reset


def before_action(check):
    """Runs `check(response)` before moto serves each API request; a value other than None is
    sent as the answer (status, headers, body) instead."""
    original = BaseResponse.call_action

    def call_action(self):
        answer = check(self)
        if answer is not None:
            return answer
        return original(self)

    BaseResponse.call_action = call_action
