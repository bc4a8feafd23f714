"""The HTTP side of the Cloudflare emulator: server, auth, routing, envelope, failures.

:class:`ApiServer` serves ``/client/v4/accounts/{account}/{kind}/...`` on a
free port of 127.0.0.1 (werkzeug, threaded). It checks the bearer token and
the account, hands the rest of the path to the :class:`Api` registered for
*kind* (Queues, KV), records every exchange (the token redacted), checks it
against the OpenAPI shapes (:mod:`tests.emulator.schema`) and answers with
injected failures on demand. Error answers are raised as :class:`ApiError`
and rendered in Cloudflare's envelope.

Two kinds of fault: :meth:`ApiServer.fail_next` answers with an error
without doing anything; :meth:`ApiServer.drop_reply_next` does what the
request asks, then drops the connection before the reply (a reply lost on
the network: the client cannot tell whether the request took effect).
"""

from __future__ import annotations

import contextlib
import json
import secrets
import socket
import threading
import urllib.parse
from collections.abc import Mapping
from typing import Any, Protocol

import attrs
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from tests.emulator.schema import Exchange, validate_exchange

API_PREFIX = "/client/v4"
DEFAULT_TOKEN = "cf-test-token-0123456789abcdef"
DEFAULT_ACCOUNT = "0123456789abcdef0123456789abcdef"


class ApiError(Exception):
    """An error answer of the emulated API."""

    def __init__(
        self, status: int, code: int, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


@attrs.define
class FailureRule:
    """Answer matching requests with an error; ``remaining=None`` means until removed."""

    status: int
    code: int
    message: str
    path_contains: str = ""
    method: str | None = None
    retry_after: str | None = None
    remaining: int | None = 1


@attrs.define
class DropRule:
    """Apply matching requests, then drop the connection before the reply."""

    path_contains: str = ""
    method: str | None = None
    remaining: int | None = 1
    dropped: int = 0

    def matches(self, ex: Exchange) -> bool:
        """Whether *ex* is one of this rule's."""
        return self.path_contains in ex.path and self.method in (None, ex.method)


class ReplyDropped(ConnectionAbortedError):
    """Raised out of the WSGI app after hanging up: werkzeug takes it as a dropped connection."""


class Api(Protocol):
    """One emulated API, served under ``/accounts/{account}/{kind}/``."""

    auth_code: int
    auth_message: str

    def serves(self, parts: list[str]) -> bool:
        """Whether a path continuing with *parts* after the kind is one of this API's."""
        ...

    def route(self, ex: Exchange, parts: list[str]) -> Response:
        """
        Answer a request whose path continues with *parts* after the kind.

        Raises:
            ApiError: for every error answer, including an unknown route.
        """
        ...


def envelope(result: Any = None, *, with_result: bool = True, **extra: Any) -> dict[str, Any]:
    """A success envelope around *result* (none at all with ``with_result=False``)."""
    doc: dict[str, Any] = {"success": True, "errors": [], "messages": []}
    if with_result:
        doc["result"] = result
    doc.update(extra)
    return doc


def json_response(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """*doc* as an ``application/json`` response."""
    return Response(
        json.dumps(doc), status=status, headers=headers, content_type="application/json"
    )


def json_body(ex: Exchange) -> dict[str, Any]:
    """
    The request body as a JSON object.

    Raises:
        ApiError: 400 when the body is not JSON or not an object.
    """
    try:
        body = json.loads(ex.request_body or b"null")
    except ValueError:
        raise ApiError(400, 10208, "JSONRequestBodyMalformed") from None
    if not isinstance(body, dict):
        raise ApiError(400, 10207, "JSONRequestBodyInvalid")
    return body


def no_route() -> ApiError:
    """The answer to a path no API serves."""
    return ApiError(404, 7003, "No route for the URI")


class _QuietHandler(WSGIRequestHandler):
    """Request handling without a log line per request."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return


class ApiServer:
    """
    Serves the registered APIs for one account and records what was exchanged.

    Args:
        apis: the API for each path kind (``"queues"``, ``"storage"``).
        token: the only API token accepted.
        account_id: the only account served.
    """

    def __init__(self, apis: Mapping[str, Api], *, token: str, account_id: str) -> None:
        self.apis = dict(apis)
        self.token = token
        self.account_id = account_id
        self.requests: list[Exchange] = []
        self.schema_violations: list[str] = []
        self.failures: list[FailureRule] = []
        self.drops: list[DropRule] = []
        self._lock = threading.RLock()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Serve on a free port of 127.0.0.1 in a background thread."""
        self._server = make_server(
            "127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        """The endpoint, without a path (clients append ``/client/v4``)."""
        assert self._server is not None, "emulator not started"
        return f"http://127.0.0.1:{self._server.server_port}"

    # --- injected failures and the record --------------------------------------

    def fail_next(
        self,
        count: int | None = 1,
        *,
        status: int = 429,
        code: int | None = None,
        message: str | None = None,
        retry_after: float | None = None,
        path_contains: str = "",
        method: str | None = None,
    ) -> FailureRule:
        """
        Answer the next *count* matching requests (all, with ``None``) with an error.

        Returns:
            The rule; pass it to :meth:`clear_failure` to lift it.
        """
        default_code = 10250 if status == 429 else 15000 if status >= 500 else 10000
        rule = FailureRule(
            status=status,
            code=code or default_code,
            message=message or ("Too Many Requests" if status == 429 else "Injected failure"),
            path_contains=path_contains,
            method=method,
            retry_after=None if retry_after is None else f"{retry_after:g}",
            remaining=count,
        )
        with self._lock:
            self.failures.append(rule)
        return rule

    def clear_failure(self, rule: FailureRule | None = None) -> None:
        """Lift one injected failure rule, or all of them."""
        with self._lock:
            if rule is None:
                self.failures.clear()
            elif rule in self.failures:
                self.failures.remove(rule)

    def drop_reply_next(
        self, count: int | None = 1, *, path_contains: str = "", method: str | None = None
    ) -> DropRule:
        """
        Do what the next *count* matching requests ask (all, with ``None``), then
        drop each connection before the reply.

        Returns:
            The rule (``dropped`` counts the replies lost); lift it with :meth:`clear_drop`.
        """
        rule = DropRule(path_contains=path_contains, method=method, remaining=count)
        with self._lock:
            self.drops.append(rule)
        return rule

    def clear_drop(self, rule: DropRule | None = None) -> None:
        """Lift one reply-dropping rule, or all of them."""
        with self._lock:
            if rule is None:
                self.drops.clear()
            elif rule in self.drops:
                self.drops.remove(rule)

    def exchanges(self, path_contains: str = "") -> list[Exchange]:
        """Recorded exchanges whose path contains *path_contains*."""
        with self._lock:
            return [e for e in self.requests if path_contains in e.path]

    # --- WSGI --------------------------------------------------------------------

    def _wsgi(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        raw_uri = environ.get("REQUEST_URI") or environ.get("RAW_URI") or request.full_path
        raw_path, _, raw_query = raw_uri.partition("?")
        body = request.get_data()
        headers = {k.lower(): v for k, v in request.headers.items()}
        exchange = Exchange(
            method=request.method,
            raw_path=raw_path,
            query=dict(urllib.parse.parse_qsl(raw_query, keep_blank_values=True)),
            request_headers=headers,
            request_body=body,
        )
        try:
            response = self._dispatch(exchange)
        except ApiError as exc:
            response = self._error_response(exc)
        exchange.status = response.status_code
        exchange.response_headers = {k.lower(): v for k, v in response.headers.items()}
        exchange.response_body = response.get_data()
        problems = validate_exchange(exchange)
        # Keep no secret: the token is replaced before the exchange is stored.
        if "authorization" in headers:
            headers["authorization"] = "Bearer <redacted>"
        with self._lock:
            self.requests.append(exchange)
            self.schema_violations.extend(problems)
        if self._dropping(exchange):
            _hang_up(environ)
            raise ReplyDropped(f"reply to {exchange.method} {exchange.path} dropped on purpose")
        return response(environ, start_response)

    def _dropping(self, ex: Exchange) -> bool:
        """Whether the reply to *ex* (already applied) is to be lost; counts it."""
        with self._lock:
            for rule in self.drops:
                if not rule.matches(ex):
                    continue
                rule.dropped += 1
                ex.reply_dropped = True
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self.drops.remove(rule)
                return True
        return False

    @staticmethod
    def _error_response(exc: ApiError) -> Response:
        doc = {
            "success": False,
            "errors": [{"code": exc.code, "message": exc.message}],
            "messages": [],
            "result": None,
        }
        return json_response(doc, exc.status, exc.headers)

    def _dispatch(self, ex: Exchange) -> Response:
        self._injected_failure(ex)
        if not ex.raw_path.startswith(API_PREFIX + "/accounts/"):
            raise no_route()
        parts = ex.path.split("/")
        # ['', 'accounts', account, kind, ...]
        if len(parts) < 5:
            raise no_route()
        account, api = urllib.parse.unquote(parts[2]), self.apis.get(parts[3])
        if api is None or not api.serves(parts[4:]):
            raise no_route()
        self._auth(ex, api.auth_code, api.auth_message)
        self._account(account)
        return api.route(ex, parts[4:])

    def _injected_failure(self, ex: Exchange) -> None:
        with self._lock:
            for rule in self.failures:
                if rule.path_contains not in ex.path:
                    continue
                if rule.method is not None and rule.method != ex.method:
                    continue
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self.failures.remove(rule)
                headers = {"Retry-After": rule.retry_after} if rule.retry_after else {}
                raise ApiError(rule.status, rule.code, rule.message, headers)

    def _auth(self, ex: Exchange, code: int, message: str) -> None:
        auth = ex.request_headers.get("authorization", "")
        if not secrets.compare_digest(auth.encode(), f"Bearer {self.token}".encode()):
            raise ApiError(403, code, message)

    def _account(self, account: str) -> None:
        if account != self.account_id:
            raise ApiError(403, 10000, "Authentication error")


def _hang_up(environ: Mapping[str, Any]) -> None:
    """Close the request's connection at once: the client reads no reply at all."""
    sock = environ.get("werkzeug.socket")
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
