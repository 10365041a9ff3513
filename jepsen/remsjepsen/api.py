"""One HTTP/1.1 call to a node's admin API, with http.client.

The connection is opened first, on its own (``phase`` "connect"): when that
fails, no byte of the request left this process, so the request certainly
had no effect. Failures after that (``phase`` "request": timeouts, resets,
a closed connection) leave the outcome unknown.
"""

import http.client
import json
import socket


class Response:
    __slots__ = ("status", "headers", "body", "raw", "error", "phase")

    def __init__(self, status=None, headers=None, body=None, raw=b"",
                 error=None, phase=None):
        self.status = status
        self.headers = headers or {}
        self.body = body
        self.raw = raw
        self.error = error
        self.phase = phase

    @property
    def ok(self):
        return self.status == 200

    def header(self, name, default=None):
        return self.headers.get(name.lower(), default)

    def error_code(self):
        """The ``error.code`` of a rems error body, if any."""
        if isinstance(self.body, dict):
            e = self.body.get("error")
            if isinstance(e, dict):
                return e.get("code")
        return None

    def __repr__(self):
        if self.status is None:
            return "<Response %s error %s>" % (self.phase, self.error)
        return "<Response %d %r>" % (self.status, self.raw[:200])


def describe_exc(e):
    if isinstance(e, (socket.timeout, TimeoutError)):
        return "timeout"
    if isinstance(e, ConnectionRefusedError):
        return "connection-refused"
    if isinstance(e, ConnectionResetError):
        return "connection-reset"
    if isinstance(e, BrokenPipeError):
        return "broken-pipe"
    if isinstance(e, http.client.RemoteDisconnected):
        return "remote-disconnected"
    if isinstance(e, http.client.HTTPException):
        return "http-error: %s" % type(e).__name__
    if isinstance(e, OSError) and e.strerror:
        return "os-error: %s" % e.strerror
    return "%s: %s" % (type(e).__name__, e)


def call(host, port, method, path, body=None, headers=None, timeout=3.0):
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        try:
            conn.connect()
        except Exception as e:  # noqa: BLE001 - every failure is an answer
            return Response(error=describe_exc(e), phase="connect")
        h = {"Connection": "close"}
        data = None
        if body is not None:
            data = json.dumps(body, separators=(",", ":")).encode()
            h["Content-Type"] = "application/json"
        if headers:
            h.update(headers)
        try:
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            raw = r.read()
        except Exception as e:  # noqa: BLE001
            return Response(error=describe_exc(e), phase="request")
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        parsed = None
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
        return Response(status=r.status, headers=hdrs, body=parsed, raw=raw)
    finally:
        conn.close()
