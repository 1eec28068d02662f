"""A small static file server that serves only the folders it is given.

Each folder is mounted under a URL prefix. A request path is decoded once, normalised, and
must resolve (symlinks included) inside its mount, else 404: no `..` in any encoding, no
directory listings, nothing else on the disk.

GET routes answer computed files at exact paths; POST routes, at their exact paths only, take
a request body of a bounded, announced size (Content-Length, no chunked bodies) from a page
of this origin, and answer JSON. Everything else refuses POST (405).

With an access token, every request without it (in the query, `?token=`, or in the cookie
that such a request sets) gets 403; only then may a client off this machine post."""

import hmac
import http.cookies
import ipaddress
import json
import mimetypes
import ssl
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .errors import UserError

mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/javascript", ".mjs")
COOKIE = "stylemirror_token"
COOKIE_DAYS = 30  # a kiosk or a phone on a stand keeps its access across reloads and restarts


def resolve(mounts: dict[str, Path], url_path: str) -> Path | None:
    """The file a URL path names, or None when it is outside every mount or the system
    cannot look it up (a name too long, ...)."""
    try:
        return _resolve(mounts, url_path)
    except (OSError, ValueError):
        return None


def _resolve(mounts: dict[str, Path], url_path: str) -> Path | None:
    path = urllib.parse.unquote(urllib.parse.urlsplit(url_path).path)
    if "\\" in path or "\0" in path:
        return None
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        return None
    path = "/" + "/".join(parts)
    for prefix in sorted(list(mounts), key=len, reverse=True):
        prefix_path = "/" + prefix.strip("/")
        if prefix_path == "/" or path == prefix_path or path.startswith(prefix_path + "/"):
            root = mounts.get(prefix)
            if root is None:  # unmounted meanwhile
                return None
            root = Path(root).resolve()
            rest = path[len(prefix_path):].lstrip("/") if prefix_path != "/" else path.lstrip("/")
            target = (root / rest).resolve()
            if target != root and root not in target.parents:
                return None
            if target.is_dir():
                target = target / "index.html"
            return target if target.is_file() else None
    return None


def from_this_machine(address: str) -> bool:
    """A client on the loopback: the only one that may post (compute, write) while the server has
    no access token, even where --host opens it to the network."""
    try:
        return ipaddress.ip_address(address.removeprefix("::ffff:")).is_loopback
    except ValueError:
        return False


class Handler(BaseHTTPRequestHandler):
    server_version = "stylemirror"
    mounts: dict[str, Path] = {}
    routes: dict = {}  # exact URL path -> callable returning (content_type, bytes)
    # exact URL path -> (largest body in bytes, callable(body) -> (status, JSON-able answer))
    post_routes: dict = {}
    token: str | None = None  # None: no token needed (the server answers this machine only)
    secure = False  # over TLS: the cookie is sent over TLS only
    timeout = 60  # a client that connects and says nothing holds a thread this long at most

    def log_message(self, *args):
        pass

    def admitted(self) -> bool:
        """Whether the request carries the access token; one that brings it in its query gets
        the cookie, so the page's own requests (scripts, models, workers) carry it too."""
        self.cookie = None
        if self.token is None:
            return True
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query).get("token", [""])[0]
        if hmac.compare_digest(query.encode(), self.token.encode()):
            self.cookie = (f"{COOKIE}={self.token}; Path=/; Max-Age={COOKIE_DAYS * 86400}; HttpOnly; SameSite=Strict"
                           + ("; Secure" if self.secure else ""))
            return True
        try:
            jar = http.cookies.SimpleCookie(self.headers.get("Cookie", ""))
        except http.cookies.CookieError:
            return False
        held = jar[COOKIE].value if COOKIE in jar else ""
        return hmac.compare_digest(held.encode(), self.token.encode())

    def refuse(self, head_only=False):
        self.close_connection = True
        self._send(403, "text/plain; charset=utf-8",
                   b"an access token is needed: open the URL (or scan the QR code) that `stylemirror mirror` printed\n",
                   head_only)

    def do_GET(self, head_only=False):
        if not self.admitted():
            return self.refuse(head_only)
        url_path = urllib.parse.urlsplit(self.path).path
        if url_path in self.routes:
            try:
                content_type, body = self.routes[url_path]()
            except UserError as e:  # e.g. a model file the route is made from is missing
                return self._send(500, "text/plain; charset=utf-8", f"{e}\n".encode(), head_only)
        else:
            target = resolve(self.mounts, self.path)
            if target is None:
                return self._send(404, "text/plain; charset=utf-8", b"not found\n", head_only)
            content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
            try:
                body = target.read_bytes()
            except OSError:
                return self._send(404, "text/plain; charset=utf-8", b"not found\n", head_only)
        self._send(200, content_type, body, head_only)

    def do_HEAD(self):
        self.do_GET(head_only=True)

    def do_POST(self):
        if not self.admitted():
            return self.refuse()
        url_path = urllib.parse.urlsplit(self.path).path
        if url_path not in self.post_routes:
            self.close_connection = True  # its body, if any, is left unread
            return self._send(405, "text/plain; charset=utf-8", b"method not allowed\n", extra={"Allow": "GET, HEAD"})
        limit, handle = self.post_routes[url_path]
        status, answer = self._post(limit, handle)
        self._send(status, "application/json", json.dumps(answer).encode())

    def _post(self, limit, handle):
        if self.token is None and not from_this_machine(self.client_address[0]):
            self.close_connection = True
            return 403, {"error": "posting is open to this machine only"}
        origin = self.headers.get("Origin")
        if origin is not None and urllib.parse.urlsplit(origin).netloc != self.headers.get("Host"):
            self.close_connection = True
            return 403, {"error": "only the mirror's own page may post here"}
        length = self.headers.get("Content-Length")
        if self.headers.get("Transfer-Encoding") or length is None or not length.isdigit():
            self.close_connection = True
            return 411, {"error": "a body of a stated Content-Length is required"}
        if int(length) > limit:
            self.close_connection = True  # its body is left unread
            return 413, {"error": f"{int(length)} bytes is too large: at most {limit} bytes ({limit // 1_000_000} MB)"}
        body = self.rfile.read(int(length))
        if len(body) != int(length):
            self.close_connection = True
            return 400, {"error": f"the body stopped at {len(body)} of {length} bytes"}
        return handle(body)

    def _send(self, status, content_type, body, head_only=False, extra=None):
        try:
            self.send_response(status)
            for key, value in (extra or {}).items():
                self.send_header(key, value)
            if getattr(self, "cookie", None):
                self.send_header("Set-Cookie", self.cookie)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-cache")
            # Cross-origin isolation: lets the page share memory with workers, which TF.js's
            # wasm backend needs to run on several threads. Everything is same-origin here.
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Embedder-Policy", "require-corp")
            self.end_headers()
            if not head_only:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away mid-response: nothing to do


class Server(ThreadingHTTPServer):
    daemon_threads = True
    tls: ssl.SSLContext | None = None

    def get_request(self):
        sock, address = super().get_request()
        if self.tls is not None:  # the handshake happens in the request's thread, at its first read
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ssl.SSLError, OSError)):  # a failed handshake, a client gone
            super().handle_error(request, client_address)


def serve(mounts: dict[str, Path], host="127.0.0.1", port=0, routes=None, post_routes=None, token=None,
          tls: ssl.SSLContext | None = None) -> ThreadingHTTPServer:
    """Start serving in a background thread; `server.server_address` gives the port.
    `mounts` is used live (not copied): its owner may add and remove mounts while serving.
    `token`: the access token every request needs; `tls`: serve HTTPS with this context."""
    handler = type("MountHandler", (Handler,), {"mounts": mounts, "routes": dict(routes or {}),
                                                "post_routes": dict(post_routes or {}), "token": token,
                                                "secure": tls is not None})
    server = Server((host, port), handler)
    server.tls = tls
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server

