"""Small loopback servers for the failure cases a real registry cannot produce.

The real registry (scripts/registry.sh) serves every happy path; these only
misbehave on purpose:

* SilentServer: accepts TCP connections and never answers (a hung registry).
* StallAfterTlsServer: answers a TLS ClientHello with plain HTTP, so the
  client falls back to HTTP as it would with a plain-HTTP registry, then
  never answers an HTTP request: the stall happens after the scheme probe,
  inside the pull, where ``progress_timeout`` applies.
* FakeRegistry: a minimal OCI distribution API serving one image whose layer
  bytes do not match their digest, and one repository that answers DENIED.
* ThrottleProxy: a TCP proxy in front of the real registry that limits the
  download rate, so a pull of fixture/debian:v1 lasts long enough to be
  interrupted or observed.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import socket
import tarfile
import threading
import time


class _TcpServer:
    """A listening loopback socket with an accept loop on a daemon thread."""

    def __init__(self) -> None:
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = self._listener.getsockname()[1]
        self.addr = f"127.0.0.1:{self.port}"
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self.accepted = 0
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self._conns.append(conn)
                self.accepted += 1
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn: socket.socket) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def close(self) -> None:
        self._stopped.set()
        self._listener.close()
        with self._lock:
            for c in self._conns:
                try:
                    c.close()
                except OSError:
                    pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class SilentServer(_TcpServer):
    """Accepts and never answers (holds the connection open)."""

    def handle(self, conn: socket.socket) -> None:
        self._stopped.wait()


class StallAfterTlsServer(_TcpServer):
    """Plain HTTP to a TLS probe (so the client picks HTTP), then silence."""

    def handle(self, conn: socket.socket) -> None:
        try:
            first = conn.recv(1)
        except OSError:
            return
        if first == b"\x16":  # a TLS handshake record: say we speak HTTP
            try:
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                conn.close()
            except OSError:
                pass
            return
        self._stopped.wait()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _tar_gz(name: str, content: bytes) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size = len(content)
        info.mtime = 0
        tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), mtime=0)


class FakeRegistry:
    """A plain-HTTP OCI distribution API with two repositories:

    * ``corrupt:latest``: a valid manifest and config; the layer served under
      its digest has the right length but one flipped byte.
    * ``denied:latest``: every request answers 403 with a DENIED error.

    ``blob_gets`` counts GETs per blob digest.
    """

    def __init__(self) -> None:
        layer = _tar_gz("hello.txt", b"hello from a corrupt layer\n" * 64)
        diff_id = "sha256:" + hashlib.sha256(gzip.decompress(layer)).hexdigest()
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"User": "1000:1000"},
                "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            }
        ).encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": _digest(config),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": _digest(layer),
                        "size": len(layer),
                    }
                ],
            }
        ).encode()
        corrupted = bytearray(layer)
        corrupted[len(corrupted) // 2] ^= 0xFF
        self.layer_digest = _digest(layer)
        self.blobs = {_digest(config): config, self.layer_digest: bytes(corrupted)}
        self.manifest = manifest
        self.blob_gets: dict[str, int] = {}
        registry = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep pytest output clean
                pass

            def _send(self, code: int, body: bytes, content_type: str, headers: dict[str, str] | None = None):
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Docker-Distribution-API-Version", "registry/2.0")
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _error(self, code: int, err: str, message: str):
                body = json.dumps({"errors": [{"code": err, "message": message}]}).encode()
                self._send(code, body, "application/json")

            def do_GET(self):
                path = self.path.split("?", 1)[0]
                if path in ("/v2/", "/v2"):
                    return self._send(200, b"{}", "application/json")
                if path.startswith("/v2/denied/"):
                    return self._error(403, "DENIED", "requested access to the resource is denied")
                if path.startswith("/v2/corrupt/manifests/"):
                    return self._send(
                        200,
                        registry.manifest,
                        "application/vnd.oci.image.manifest.v1+json",
                        {"Docker-Content-Digest": _digest(registry.manifest)},
                    )
                if path.startswith("/v2/corrupt/blobs/"):
                    digest = path.rsplit("/", 1)[1]
                    if digest in registry.blobs:
                        registry.blob_gets[digest] = registry.blob_gets.get(digest, 0) + 1
                        return self._send(200, registry.blobs[digest], "application/octet-stream")
                return self._error(404, "NAME_UNKNOWN", "repository name not known to registry")

            do_HEAD = do_GET

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.addr = f"127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ThrottleProxy(_TcpServer):
    """Forwards to ``upstream`` (host:port), sending at most ``rate`` bytes/s
    back to each client connection."""

    def __init__(self, upstream: str, rate: int) -> None:
        host, port = upstream.rsplit(":", 1)
        self._upstream = (host, int(port))
        self._rate = rate
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        try:
            up = socket.create_connection(self._upstream)
        except OSError:
            conn.close()
            return
        with self._lock:
            self._conns.append(up)

        def client_to_upstream():
            try:
                while data := conn.recv(65536):
                    up.sendall(data)
            except OSError:
                pass
            finally:
                try:
                    up.shutdown(socket.SHUT_WR)
                except OSError:
                    pass

        threading.Thread(target=client_to_upstream, daemon=True).start()
        chunk = max(1024, self._rate // 20)
        started = time.monotonic()
        sent = 0
        try:
            while data := up.recv(chunk):
                conn.sendall(data)
                sent += len(data)
                ahead = sent / self._rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        except OSError:
            pass
        finally:
            for s in (conn, up):
                try:
                    s.close()
                except OSError:
                    pass
