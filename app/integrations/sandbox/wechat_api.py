"""Loopback emulator of the WeChat API endpoints the backend uses (a werkzeug WSGI app).

WeChat side (what wechatpy calls):

    GET  /sns/jscode2session?appid&secret&js_code&grant_type=authorization_code
    GET  /cgi-bin/token?grant_type=client_credential&appid&secret

Control API (tests and demos; never exposed in production):

    POST /_emulator/codes   {"openid": "...", "unionid": "..."?}    -> {"code": "...", "expires_in": 300}
    POST /_emulator/faults  {"endpoint": "jscode2session"|"token", "times": 1,
                             "errcode"|"http_status"|"redirect_to"|"body"|"size"|"delay": ...}
    POST /_emulator/reset
    GET  /_emulator/stats   -> {"token_requests": n, "session_requests": n, "sessions_issued": n}

Run it for a demo (binds to 127.0.0.1 only):

    flask wechat-sandbox --port 8790          # or: python -m app.integrations.sandbox.wechat_api
    WECHAT_API_BASE=http://127.0.0.1:8790/ flask run

Behaviour (codes, expiry, errors) lives in `wechat_state.py`, shared with the in-process fake.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from app.integrations.sandbox.wechat_state import CODE_TTL_SECONDS, ENDPOINTS, Fault, WeChatState, error

LOOPBACK = "127.0.0.1"


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(json.dumps(body, ensure_ascii=False), status=status, content_type="application/json")


class WeChatApiEmulator:
    """The WSGI application. `state` may be inspected and driven in-process as well."""

    def __init__(self, state: WeChatState | None = None) -> None:
        self.state = state or WeChatState()
        self.url_map = Map(
            [
                Rule("/sns/jscode2session", endpoint="jscode2session", methods=["GET"]),
                Rule("/cgi-bin/token", endpoint="token", methods=["GET"]),
                Rule("/_emulator/codes", endpoint="control_codes", methods=["POST"]),
                Rule("/_emulator/faults", endpoint="control_faults", methods=["POST"]),
                Rule("/_emulator/reset", endpoint="control_reset", methods=["POST"]),
                Rule("/_emulator/stats", endpoint="control_stats", methods=["GET"]),
            ]
        )

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        try:
            endpoint, _ = self.url_map.bind_to_environ(environ).match()
            response = getattr(self, f"_{endpoint}")(request)
        except HTTPException as exc:
            response = _json(
                {
                    "errcode": 44002 if isinstance(exc, NotFound) else 40001,
                    "errmsg": exc.description or "error",
                },
                exc.code or 400,
            )
        except (ValueError, TypeError, KeyError) as exc:
            response = _json({"error": str(exc)}, 400)
        result: Iterable[bytes] = response(environ, start_response)
        return result

    # --- WeChat endpoints ----------------------------------------------------------------------

    def _faulted(self, endpoint: str) -> tuple[Response | None, Fault | None]:
        fault = self.state.take_fault(endpoint)
        if fault is None:
            return None, None
        if fault.delay:
            time.sleep(fault.delay)
        if fault.http_status is not None:
            return Response("upstream error", status=fault.http_status, content_type="text/plain"), fault
        if fault.redirect_to is not None:
            return Response("", status=308, headers={"Location": fault.redirect_to}), fault
        if fault.body is not None:
            return Response(fault.body, status=200, content_type="application/json"), fault
        if fault.errcode is not None:
            return _json(error(fault.errcode)), fault
        return None, fault

    def _padded(self, body: dict[str, Any], fault: Fault | None) -> Response:
        if fault is not None and fault.size:
            text = json.dumps(body)
            body = dict(body, padding="x" * max(fault.size - len(text), 0))
        return _json(body)

    def _jscode2session(self, request: Request) -> Response:
        faulted, fault = self._faulted("jscode2session")
        if faulted is not None:
            return faulted
        args = request.args
        body = self.state.code_to_session(
            appid=args.get("appid", ""),
            secret=args.get("secret", ""),
            js_code=args.get("js_code", ""),
            grant_type=args.get("grant_type", ""),
        )
        return self._padded(body, fault)

    def _token(self, request: Request) -> Response:
        faulted, fault = self._faulted("token")
        if faulted is not None:
            return faulted
        args = request.args
        body = self.state.access_token(
            grant_type=args.get("grant_type", ""), appid=args.get("appid", ""), secret=args.get("secret", "")
        )
        return self._padded(body, fault)

    # --- control API ---------------------------------------------------------------------------

    def _control_codes(self, request: Request) -> Response:
        data = request.get_json(force=True)
        code = self.state.issue_code(str(data["openid"]), data.get("unionid"))
        return _json({"code": code, "expires_in": CODE_TTL_SECONDS}, 201)

    def _control_faults(self, request: Request) -> Response:
        data = dict(request.get_json(force=True))
        endpoint = str(data.pop("endpoint"))
        times = int(data.pop("times", 1))
        if endpoint not in ENDPOINTS:
            raise ValueError(f"endpoint must be one of {ENDPOINTS}")
        self.state.fail_next(endpoint, Fault.from_json(data), times)
        return _json({"endpoint": endpoint, "times": times}, 201)

    def _control_reset(self, request: Request) -> Response:
        self.state.reset()
        return _json({"reset": True})

    def _control_stats(self, request: Request) -> Response:
        return _json(asdict(self.state.stats))


# --- serving -----------------------------------------------------------------------------------


@dataclass
class RunningEmulator:
    """An emulator served on loopback in a background thread (tests, `flask wechat-sandbox`)."""

    server: BaseWSGIServer
    thread: threading.Thread
    emulator: WeChatApiEmulator

    @property
    def url(self) -> str:
        """Base URL with the trailing slash, as `WECHAT_API_BASE` wants it."""
        return f"http://{LOOPBACK}:{self.server.server_port}/"

    @property
    def state(self) -> WeChatState:
        return self.emulator.state

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve(state: WeChatState | None = None, *, port: int = 0) -> RunningEmulator:
    """Start the emulator on 127.0.0.1:`port` (0: any free port) in a daemon thread."""
    emulator = WeChatApiEmulator(state)
    server = make_server(LOOPBACK, port, emulator, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="wechat-api-emulator", daemon=True
    )
    thread.start()
    return RunningEmulator(server, thread, emulator)


class EmulatorError(RuntimeError):
    """The emulator refused a control request."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"emulator answered {status}: {detail}")
        self.status = status


class EmulatorControl:
    """Drive a running emulator over HTTP (its control API)."""

    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - loopback emulator URL from the caller
            self.base_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                result: dict[str, Any] = json.loads(response.read().decode())
        except urllib.error.HTTPError as exc:
            with exc:
                detail = exc.read().decode(errors="replace")
            raise EmulatorError(exc.code, detail) from None
        return result

    def issue_code(self, openid: str, unionid: str | None = None) -> str:
        body: dict[str, Any] = {"openid": openid}
        if unionid is not None:
            body["unionid"] = unionid
        return str(self._call("POST", "_emulator/codes", body)["code"])

    def fail_next(self, endpoint: str, fault: Fault, times: int = 1) -> None:
        body = {k: v for k, v in asdict(fault).items() if v not in (None, 0, 0.0)}
        self._call("POST", "_emulator/faults", dict(body, endpoint=endpoint, times=times))

    def reset(self) -> None:
        self._call("POST", "_emulator/reset", {})

    def stats(self) -> dict[str, int]:
        return {k: int(v) for k, v in self._call("GET", "_emulator/stats").items()}


def run_forever(port: int, appid: str | None = None, secret: str | None = None) -> None:
    """Serve in the foreground until interrupted (the demo)."""
    emulator = WeChatApiEmulator(WeChatState(appid=appid, secret=secret))
    server = make_server(LOOPBACK, port, emulator, threaded=True)
    sys.stdout.write(
        f"WeChat API emulator on http://{LOOPBACK}:{server.server_port}/ "
        "(set WECHAT_API_BASE to this URL); codes of the shape code-<openid> are accepted\n"
    )
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Loopback emulator of the WeChat mini-program login API")
    parser.add_argument("--port", type=int, default=8790)
    parser.add_argument("--appid", default=None, help="accept only this appid (default: any)")
    parser.add_argument("--secret", default=None, help="accept only this secret (default: any)")
    args = parser.parse_args(argv)
    run_forever(args.port, args.appid, args.secret)


if __name__ == "__main__":
    main()
