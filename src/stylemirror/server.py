"""A small static file server that serves only the folders it is given.

Each folder is mounted under a URL prefix. A request path is decoded once, normalised, and
must resolve (symlinks included) inside its mount, else 404: no `..` in any encoding, no
directory listings, nothing else on the disk."""

import mimetypes
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

mimetypes.add_type("application/wasm", ".wasm")
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/javascript", ".mjs")


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


class Handler(BaseHTTPRequestHandler):
    server_version = "stylemirror"
    mounts: dict[str, Path] = {}
    routes: dict = {}  # exact URL path -> callable returning (content_type, bytes)

    def log_message(self, *args):
        pass

    def do_GET(self, head_only=False):
        url_path = urllib.parse.urlsplit(self.path).path
        if url_path in self.routes:
            content_type, body = self.routes[url_path]()
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

    def _send(self, status, content_type, body, head_only):
        try:
            self.send_response(status)
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


def serve(mounts: dict[str, Path], host="127.0.0.1", port=0, routes=None) -> ThreadingHTTPServer:
    """Start serving in a background thread; `server.server_address` gives the port.
    `mounts` is used live (not copied): its owner may add and remove mounts while serving."""
    handler = type("MountHandler", (Handler,), {"mounts": mounts, "routes": dict(routes or {})})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server

