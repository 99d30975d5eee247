#!/usr/bin/env python3
"""A fault-injecting HTTP proxy in front of a real registry, for tests.

  faultproxy.py PORT UPSTREAM(host:port) LOG

The first path component after /v2/ selects the fault and is removed before
forwarding, so `PROXY/fault-corrupt/fixture/small:a` is the real
`fixture/small:a` with corrupted blob bytes. Every request is appended to LOG
as one JSON line {"fault", "method", "path", "range"}.

Faults: ok (none), corrupt (flip a byte of every blob), long (blobs get extra
bytes), huge (manifests become > 4 MiB), wrongdigest (manifest bytes change,
the Docker-Content-Digest header does not), cut (each blob's first response
is cut in half; Range honoured), cutnorange (cut, and Range ignored), cutall
(every blob response cut), 429 (the first two blob requests get 429 with
Retry-After: 1), 500 (blobs always 500), 500once (the first blob request per
blob is a 500), stall (blob responses send half and then hang), stallmanifest
(manifest requests hang).
"""
import http.client, json, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, upstream, log = int(sys.argv[1]), sys.argv[2], sys.argv[3]
lock = threading.Lock()
seen = {}


def count(key):
    with lock:
        seen[key] = seen.get(key, 0) + 1
        return seen[key]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, code, headers, body, cut=False, stall=False):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if stall:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            time.sleep(3600)
        if cut:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def handle_any(self, method):
        parts = self.path.split("/", 3)  # ['', 'v2', 'fault-x', 'rest']
        fault = "ok"
        path = self.path
        if len(parts) == 4 and parts[2].startswith("fault-"):
            fault = parts[2][len("fault-"):]
            path = "/v2/" + parts[3]
        rng = self.headers.get("Range")
        with lock:
            with open(log, "a") as f:
                f.write(json.dumps({"fault": fault, "method": method, "path": path, "range": rng}) + "\n")
        is_blob = "/blobs/" in path
        is_manifest = "/manifests/" in path
        if fault == "stallmanifest" and is_manifest:
            time.sleep(3600)
        if is_blob and fault == "429" and count(("429",)) <= 2:
            return self.send(429, [("Retry-After", "1"), ("Content-Length", "0")], b"")
        if is_blob and fault == "500":
            return self.send(500, [("Content-Length", "0")], b"")
        if is_blob and fault == "500once" and count(("500once", path)) == 1:
            return self.send(500, [("Content-Length", "0")], b"")
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        if fault == "cutnorange":
            headers.pop("Range", None)
        conn = http.client.HTTPConnection(upstream, timeout=60)
        conn.request(method, path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        out = [(k, v) for k, v in resp.getheaders() if k.lower() not in ("content-length", "connection", "transfer-encoding")]
        cut = stall = False
        if resp.status in (200, 206):
            if is_blob and fault == "corrupt" and body:
                body = bytes([body[0] ^ 0xFF]) + body[1:]
            elif is_blob and fault == "long":
                body = body + b"extra bytes the descriptor does not mention"
            elif is_manifest and fault == "huge":
                doc = json.loads(body)
                doc.setdefault("annotations", {})["padding"] = "x" * (5 << 20)
                body = json.dumps(doc).encode()
                out = [(k, v) for k, v in out if k.lower() != "docker-content-digest"]
            elif is_manifest and fault == "wrongdigest":
                body = body + b"\n"
            elif is_blob and fault in ("cut", "cutnorange") and count((fault, path)) == 1:
                cut = True
            elif is_blob and fault == "cutall":
                cut = True
            elif is_blob and fault == "stall":
                stall = True
        out.append(("Content-Length", str(len(body))))
        if method == "HEAD":
            self.send_response(resp.status)
            for k, v in out:
                self.send_header(k, v)
            self.end_headers()
            return
        self.send(resp.status, out, body, cut=cut, stall=stall)

    def do_GET(self):
        self.handle_any("GET")

    def do_HEAD(self):
        self.handle_any("HEAD")


server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
server.daemon_threads = True
server.serve_forever()
