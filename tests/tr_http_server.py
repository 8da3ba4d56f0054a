#!/usr/bin/python3
"""tr_http_server.py - the scripted local HTTP server of troupe's tests and
benchmarks (stdlib only, asyncio, HTTP/1.1 with keep-alive, 127.0.0.1 only).

Usage:
    /usr/bin/python3 tests/tr_http_server.py [--script FILE.json] [--port N]
                                             [--cert CERT.pem --key KEY.pem]

Port 0 (the default) takes an ephemeral port. The first line on standard
output is `PORT <n>` (flushed) once the server listens. It serves until
SIGTERM or SIGINT, or until its standard input reaches end of file, so that
it dies with the test that started it (give it a pipe; a closed or absent
standard input is ignored). The open-file limit is raised to its hard limit
so that 10,000 connections can wait at once. A bad script file is refused
at start: a message on standard error and exit status 2.

With --cert and --key (PEM files: the certificate chain and its private
key) it speaks HTTPS instead (TLS 1.2 or later, Python's ssl module), with
the same script and control paths; a client that refuses the certificate
only ends its own connection.

Script (JSON):
    {"routes": [{"method": "POST", "path": "/v1/chat/completions",
                 "responses": [R, ...], "repeat": "cycle" | "last"}]}

Routes are tried in order; the first that matches takes the request.
`method` is matched without regard to case ("*" or absent: any method).
`path` matches the request's path (without its query string) exactly, or
the whole request target as a prefix when it ends with `*`. Each request to
a route takes the route's next response; after the last one, "cycle" starts
again from the first and "last" (the default) keeps answering the last.
A request that no route takes gets a 404 JSON error.

A response R is an object with:
    status       HTTP status (default 200)
    headers      object of extra header names and values
    one body among (default: empty):
      json       any JSON value, sent as application/json
      body       text, sent as text/plain unless headers say otherwise
      body_bytes N bytes of 'x' (for oversized bodies)
      chat       a string: sent as an OpenAI-compatible chat completion
                 {"id", "object": "chat.completion", "created", "model",
                  "choices": [{"index": 0, "message": {"role": "assistant",
                  "content": ...}, "finish_reason": "stop"}],
                  "usage": {"prompt_tokens", "completion_tokens",
                  "total_tokens"}}; prompt_tokens counts the
                 whitespace-separated words of the request's messages'
                 contents, completion_tokens those of the answer; model is
                 the request's model. A request body that is not a JSON
                 object gets a 400 JSON error instead.
      chat_echo  true: the same, answering "echo: " + the content of the
                 request's last user message
    delay_ms     wait this long before answering (or closing)
    hang         true: never answer; keep the connection open until the
                 client closes it (the request stays in flight until then)
    close        true: close the connection without answering
    retry_after  a Retry-After header: seconds (a number), or a string sent
                 as it is (an HTTP date, or garbage to test parsers)
    malformed    true: an invalid JSON body sent as application/json
    chunked      true: the body in 8 KiB chunks (Transfer-Encoding:
                 chunked), without a Content-Length

Control (these paths are never routed, logged nor counted):
    GET  /_log     JSON list of the requests received so far, oldest first:
                   {"method", "path" (the whole target, query included),
                    "headers" (object, names in lower case, repeated
                    headers joined with ", "), "body" (text, invalid UTF-8
                    replaced), "t_ms" (milliseconds since the server
                    started, when the request was fully received),
                    "route" (index in the script, -1 for none),
                    "response" (index in the route's responses, -1)}
    POST /_script  a script JSON: replaces the script and resets every
                   route's position; a bad script gets 400 and changes
                   nothing
    POST /_reset   clears the log and the counters (requests, connections;
                   max_in_flight falls to the requests in flight now)
    GET  /_stats   {"requests": n, "in_flight": n, "max_in_flight": n,
                    "connections": n}: requests received, requests being
                   answered now (delayed or hanging ones included), the
                   most at once, connections accepted (control ones too)
"""

import argparse
import asyncio
import http
import json
import os
import resource
import signal
import ssl
import sys
import threading
import time

MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024 * 1024
RESPONSE_KEYS = {"status", "headers", "json", "body", "body_bytes", "chat",
                 "chat_echo", "delay_ms", "hang", "close", "retry_after",
                 "malformed", "chunked"}
BODY_KEYS = ("json", "body", "body_bytes", "chat", "chat_echo")
ROUTE_KEYS = {"method", "path", "responses", "repeat"}


class ScriptError(Exception):
    pass


def _check_response(r, where):
    if not isinstance(r, dict):
        raise ScriptError(f"{where}: a response must be an object")
    unknown = sorted(set(r) - RESPONSE_KEYS)
    if unknown:
        raise ScriptError(f"{where}: unknown key {unknown[0]!r}")
    bodies = [k for k in BODY_KEYS if k in r]
    if len(bodies) > 1:
        raise ScriptError(f"{where}: more than one body ({', '.join(bodies)})")
    status = r.get("status", 200)
    if type(status) is not int or not 100 <= status <= 599:
        raise ScriptError(f"{where}: status must be an integer 100..599")
    headers = r.get("headers", {})
    if not isinstance(headers, dict):
        raise ScriptError(f"{where}: headers must be an object")
    for name, value in headers.items():
        if not name or any(c in name for c in ":\r\n ") or \
                not isinstance(value, (str, int, float)) or \
                any(c in str(value) for c in "\r\n"):
            raise ScriptError(f"{where}: bad header {name!r}")
    if "body" in r and not isinstance(r["body"], str):
        raise ScriptError(f"{where}: body must be a string")
    if "body_bytes" in r and (type(r["body_bytes"]) is not int
                              or r["body_bytes"] < 0):
        raise ScriptError(f"{where}: body_bytes must be an integer >= 0")
    if "chat" in r and not isinstance(r["chat"], str):
        raise ScriptError(f"{where}: chat must be a string")
    if "chat_echo" in r and r["chat_echo"] is not True:
        raise ScriptError(f"{where}: chat_echo must be true")
    delay = r.get("delay_ms", 0)
    if type(delay) not in (int, float) or delay < 0:
        raise ScriptError(f"{where}: delay_ms must be a number >= 0")
    for flag in ("hang", "close", "malformed", "chunked"):
        if type(r.get(flag, False)) is not bool:
            raise ScriptError(f"{where}: {flag} must be true or false")
    if "retry_after" in r:
        ra = r["retry_after"]
        if type(ra) not in (int, float, str) or \
                (isinstance(ra, str) and any(c in ra for c in "\r\n")):
            raise ScriptError(f"{where}: retry_after must be a number or a "
                              "string")


def check_script(script):
    """Returns the script's routes, checked, or raises ScriptError."""
    if not isinstance(script, dict):
        raise ScriptError("the script must be a JSON object")
    unknown = sorted(set(script) - {"routes"})
    if unknown:
        raise ScriptError(f"unknown key {unknown[0]!r}")
    routes = script.get("routes", [])
    if not isinstance(routes, list):
        raise ScriptError("routes must be a list")
    for i, route in enumerate(routes):
        where = f"routes[{i}]"
        if not isinstance(route, dict):
            raise ScriptError(f"{where}: a route must be an object")
        unknown = sorted(set(route) - ROUTE_KEYS)
        if unknown:
            raise ScriptError(f"{where}: unknown key {unknown[0]!r}")
        if not isinstance(route.get("method", "*"), str):
            raise ScriptError(f"{where}: method must be a string")
        path = route.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            raise ScriptError(f"{where}: path must be a string starting "
                              "with /")
        responses = route.get("responses")
        if not isinstance(responses, list) or not responses:
            raise ScriptError(f"{where}: responses must be a non-empty list")
        for j, r in enumerate(responses):
            _check_response(r, f"{where}.responses[{j}]")
        if route.get("repeat", "last") not in ("cycle", "last"):
            raise ScriptError(f"{where}: repeat must be \"cycle\" or \"last\"")
    return routes


def _words(content):
    """Counts whitespace-separated words in a message content (a string, or
    a list of parts with "text")."""
    if isinstance(content, str):
        return len(content.split())
    if isinstance(content, list):
        return sum(len(p["text"].split()) for p in content
                   if isinstance(p, dict) and isinstance(p.get("text"), str))
    return 0


def _text(content):
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p["text"] for p in content
                        if isinstance(p, dict)
                        and isinstance(p.get("text"), str))
    return ""


class Server:
    def __init__(self, routes):
        self.start = time.monotonic()
        self.set_routes(routes)
        self.log = []
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.connections = 0
        self.chat_ids = 0

    def set_routes(self, routes):
        self.routes = routes
        self.positions = [0] * len(routes)

    def route(self, method, target):
        """Returns (route index, response index, response) or (-1, -1,
        None)."""
        path = target.split("?", 1)[0]
        for i, route in enumerate(self.routes):
            want = route.get("method", "*").upper()
            if want != "*" and want != method.upper():
                continue
            rpath = route["path"]
            if rpath.endswith("*"):
                if not target.startswith(rpath[:-1]):
                    continue
            elif rpath != path and rpath != target:
                continue
            responses = route["responses"]
            pos = self.positions[i]
            if route.get("repeat", "last") == "cycle":
                self.positions[i] = (pos + 1) % len(responses)
            else:
                self.positions[i] = min(pos + 1, len(responses) - 1)
            return i, pos, responses[pos]
        return -1, -1, None

    def chat(self, answer, body):
        self.chat_ids += 1
        messages = body.get("messages")
        if not isinstance(messages, list):
            messages = []
        prompt = sum(_words(m.get("content")) for m in messages
                     if isinstance(m, dict))
        completion = len(answer.split())
        model = body.get("model")
        return {
            "id": f"chatcmpl-{self.chat_ids}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model if isinstance(model, str) else "troupe-test",
            "choices": [{"index": 0,
                         "message": {"role": "assistant", "content": answer},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt,
                      "completion_tokens": completion,
                      "total_tokens": prompt + completion},
        }


def _error(status, message, kind):
    return status, {}, "application/json", json.dumps(
        {"error": {"message": message, "type": kind}}).encode()


PHRASES = {s.value: s.phrase for s in http.HTTPStatus}


def _head(status, headers, ctype, length, close):
    phrase = PHRASES.get(status, "Status")
    lines = [f"HTTP/1.1 {status} {phrase}"]
    names = {k.lower() for k in headers}
    if ctype and "content-type" not in names:
        lines.append(f"Content-Type: {ctype}")
    if length is None:
        lines.append("Transfer-Encoding: chunked")
    else:
        lines.append(f"Content-Length: {length}")
    if close:
        lines.append("Connection: close")
    for name, value in headers.items():
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1", "replace")


class Connection(asyncio.Protocol):
    """One client connection; requests on it are answered in order."""

    def __init__(self, server):
        self.server = server
        self.buf = bytearray()
        self.transport = None
        self.busy = False          # a request is being answered
        self.hanging = False       # never answer again
        self.closed = False
        self.timer = None
        self.continued = False     # 100 Continue sent for this request

    def connection_made(self, transport):
        self.transport = transport
        self.server.connections += 1

    def connection_lost(self, exc):
        self.closed = True
        if self.timer:
            self.timer.cancel()
            self.timer = None
        if self.busy:
            self.busy = False
            self.server.in_flight -= 1

    def data_received(self, data):
        if self.hanging or self.closed:
            return
        self.buf += data
        if not self.busy:
            self.process()

    def fail(self, status, message):
        status, headers, ctype, body = _error(status, message,
                                              "invalid_request_error")
        self.transport.write(_head(status, headers, ctype, len(body), True)
                             + body)
        self.transport.close()
        self.closed = True

    def parse(self):
        """Returns (method, target, headers, body, keep_alive) for the
        first complete request in the buffer, None if it is incomplete;
        answers and closes on a request it cannot read."""
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > MAX_HEAD:
                self.fail(431, "request head too large")
            return None
        head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        parts = head[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self.fail(400, "bad request line")
            return None
        method, target, version = parts
        headers = {}
        for line in head[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                self.fail(400, "bad header line")
                return None
            name = name.strip().lower()
            value = value.strip()
            headers[name] = headers[name] + ", " + value \
                if name in headers else value
        start = end + 4
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = bytearray()
            pos = start
            while True:
                eol = self.buf.find(b"\r\n", pos)
                if eol < 0:
                    return self.need_more(headers)
                try:
                    size = int(bytes(self.buf[pos:eol]).split(b";")[0], 16)
                except ValueError:
                    self.fail(400, "bad chunk size")
                    return None
                if size == 0:
                    trailer = self.buf.find(b"\r\n\r\n", eol)
                    if trailer < 0:
                        return self.need_more(headers)
                    consumed = trailer + 4
                    break
                if len(self.buf) < eol + 2 + size + 2:
                    return self.need_more(headers)
                body += self.buf[eol + 2:eol + 2 + size]
                if len(body) > MAX_BODY:
                    self.fail(413, "request body too large")
                    return None
                pos = eol + 2 + size + 2
        else:
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                self.fail(400, "bad Content-Length")
                return None
            if length < 0 or length > MAX_BODY:
                self.fail(413, "request body too large")
                return None
            if len(self.buf) < start + length:
                return self.need_more(headers)
            body = bytes(self.buf[start:start + length])
            consumed = start + length
        del self.buf[:consumed]
        self.continued = False
        conn = headers.get("connection", "").lower()
        keep = "close" not in conn if version == "HTTP/1.1" \
            else "keep-alive" in conn
        return method, target, headers, bytes(body), keep

    def need_more(self, headers):
        if not self.continued and \
                headers.get("expect", "").lower() == "100-continue":
            self.continued = True
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        return None

    def process(self):
        while not self.busy and not self.closed and not self.hanging:
            req = self.parse()
            if req is None:
                return
            self.handle(*req)

    def handle(self, method, target, headers, body, keep):
        srv = self.server
        path = target.split("?", 1)[0]
        control = self.control(method, path, body)
        if control is not None:
            self.send(control, keep, counted=False)
            return
        t_ms = round((time.monotonic() - srv.start) * 1000, 3)
        ri, pi, resp = srv.route(method, target)
        srv.log.append({"method": method, "path": target, "headers": headers,
                        "body": body.decode("utf-8", "replace"),
                        "t_ms": t_ms, "route": ri, "response": pi})
        srv.requests += 1
        srv.in_flight += 1
        srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
        self.busy = True
        if resp is None:
            self.send(_error(404, f"no route for {method} {target}",
                             "not_found"), keep)
            return
        delay = resp.get("delay_ms", 0) / 1000.0
        if delay > 0:
            self.timer = asyncio.get_running_loop().call_later(
                delay, self.answer_later, resp, method, body, keep)
        else:
            self.answer(resp, method, body, keep)

    def answer_later(self, resp, method, body, keep):
        self.timer = None
        self.answer(resp, method, body, keep)
        self.process()           # requests that came in meanwhile

    def answer(self, resp, method, body, keep):
        if self.closed:
            return
        if resp.get("hang"):
            self.hanging = True      # in flight until the client closes
            return
        if resp.get("close"):
            self.transport.close()   # connection_lost ends the request
            return
        self.send(self.build(resp, method, body), keep)

    def build(self, resp, method, reqbody):
        status = resp.get("status", 200)
        headers = {k: str(v) for k, v in resp.get("headers", {}).items()}
        if "retry_after" in resp:
            ra = resp["retry_after"]
            headers["Retry-After"] = ra if isinstance(ra, str) else \
                str(int(ra)) if float(ra).is_integer() else str(ra)
        ctype, body = None, b""
        if resp.get("malformed"):
            ctype, body = "application/json", \
                b'{"id": "broken", "choices": [{"message": {"content": "tru'
        elif "json" in resp:
            ctype, body = "application/json", json.dumps(resp["json"]).encode()
        elif "body" in resp:
            ctype, body = "text/plain; charset=utf-8", resp["body"].encode()
        elif "body_bytes" in resp:
            ctype, body = "application/octet-stream", \
                b"x" * resp["body_bytes"]
        elif "chat" in resp or "chat_echo" in resp:
            try:
                req = json.loads(reqbody.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as e:
                return _error(400, f"request body is not JSON: {e}",
                              "invalid_request_error")
            if not isinstance(req, dict):
                return _error(400, "request body is not a JSON object",
                              "invalid_request_error")
            if "chat" in resp:
                answer = resp["chat"]
            else:
                last = ""
                for m in req.get("messages") or []:
                    if isinstance(m, dict) and m.get("role") == "user":
                        last = _text(m.get("content"))
                answer = "echo: " + last
            ctype = "application/json"
            body = json.dumps(self.server.chat(answer, req)).encode()
        if method.upper() == "HEAD":
            return status, headers, ctype, b"", len(body)
        if resp.get("chunked"):
            return status, headers, ctype, body, None
        return status, headers, ctype, body

    def control(self, method, path, body):
        srv = self.server
        m = method.upper()
        if path == "/_log" and m == "GET":
            return 200, {}, "application/json", json.dumps(srv.log).encode()
        if path == "/_stats" and m == "GET":
            return 200, {}, "application/json", json.dumps(
                {"requests": srv.requests, "in_flight": srv.in_flight,
                 "max_in_flight": srv.max_in_flight,
                 "connections": srv.connections}).encode()
        if path == "/_reset" and m == "POST":
            srv.log = []
            srv.requests = 0
            srv.max_in_flight = srv.in_flight
            srv.connections = 0
            return 200, {}, "application/json", b'{"ok": true}'
        if path == "/_script" and m == "POST":
            try:
                routes = check_script(json.loads(body.decode("utf-8")))
            except (UnicodeDecodeError, ValueError, ScriptError) as e:
                return _error(400, f"bad script: {e}", "invalid_script")
            srv.set_routes(routes)
            return 200, {}, "application/json", b'{"ok": true}'
        return None

    def send(self, response, keep, counted=True):
        status, headers, ctype, body = response[:4]
        length = response[4] if len(response) > 4 else len(body)
        if length is None:
            step = 8192
            body = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + step]),
                                                body[i:i + step])
                            for i in range(0, len(body), step)) + b"0\r\n\r\n"
        if not self.closed:
            self.transport.write(_head(status, headers, ctype, length,
                                       not keep) + body)
            if not keep:
                self.transport.close()
                self.closed = True
        if counted and self.busy:
            self.busy = False
            self.server.in_flight -= 1


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass


def watch_stdin(loop, stop):
    """Stops the server when standard input reaches end of file."""
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        return                   # no usable standard input: ignore it
    loop.call_soon_threadsafe(stop.set)


def quiet_tls_errors(loop, context):
    """asyncio's exception handler, without the report of a handshake that
    a client refused (what the tests of certificate checks do on purpose)."""
    if isinstance(context.get("exception"), (ssl.SSLError, ConnectionError)):
        return
    loop.default_exception_handler(context)


async def serve(routes, port, tls):
    loop = asyncio.get_running_loop()
    server = Server(routes)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if tls:
        loop.set_exception_handler(quiet_tls_errors)
    listener = await loop.create_server(lambda: Connection(server),
                                        "127.0.0.1", port, backlog=65535,
                                        ssl=tls)
    print(f"PORT {listener.sockets[0].getsockname()[1]}", flush=True)
    threading.Thread(target=watch_stdin, args=(loop, stop),
                     daemon=True).start()
    await stop.wait()
    listener.close()


def main():
    ap = argparse.ArgumentParser(description="troupe's scripted test HTTP "
                                 "server")
    ap.add_argument("--script", help="the script (JSON file)")
    ap.add_argument("--port", type=int, default=0,
                    help="port on 127.0.0.1 (0: ephemeral)")
    ap.add_argument("--cert", help="HTTPS: the certificate chain (PEM)")
    ap.add_argument("--key", help="HTTPS: the certificate's key (PEM)")
    args = ap.parse_args()
    tls = None
    if bool(args.cert) != bool(args.key):
        print("tr_http_server: --cert and --key go together", file=sys.stderr)
        sys.exit(2)
    if args.cert:
        try:
            tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            tls.minimum_version = ssl.TLSVersion.TLSv1_2
            tls.load_cert_chain(args.cert, args.key)
        except (OSError, ssl.SSLError) as e:
            print(f"tr_http_server: {args.cert}: {e}", file=sys.stderr)
            sys.exit(2)
    routes = []
    if args.script:
        try:
            with open(args.script, encoding="utf-8") as f:
                routes = check_script(json.load(f))
        except (OSError, ValueError, ScriptError) as e:
            print(f"tr_http_server: {args.script}: {e}", file=sys.stderr)
            sys.exit(2)
    raise_nofile()
    try:
        asyncio.run(serve(routes, args.port, tls))
    except OSError as e:
        print(f"tr_http_server: cannot listen on 127.0.0.1:{args.port}: {e}",
              file=sys.stderr)
        sys.exit(1)
    # Connections still open (hanging ones) close with the process.
    os._exit(0)


if __name__ == "__main__":
    main()
