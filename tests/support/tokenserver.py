#!/usr/bin/env python3
"""A small token server for distribution's `auth: token:` mode, for tests.

No packaged token server exists here, so this stands in for the one a public
registry runs; the registry itself stays real. It signs RS256 JWTs with the
key whose certificate is the registry's rootcertbundle (sent as `x5c`), using
the openssl command line so no Python packages are needed.

  tokenserver.py PORT CERT KEY ISSUER SERVICE USERS REFRESH_TOKENS LOG

USERS is "user:pass,user2:pass2"; REFRESH_TOKENS is "tok1,tok2" (OAuth2
refresh-token grant). Every token request is appended to LOG as one JSON line.
Env TOKEN_EXP_OFFSET (seconds, default 300) sets the JWT lifetime; a negative
value makes tokens that the registry accepts only within its clock leeway.
"""
import base64, json, os, subprocess, sys, time, urllib.parse, uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, cert, key, issuer, service, users, refresh, log = sys.argv[1:9]
users = dict(u.split(":", 1) for u in users.split(",") if u)
refresh = set(t for t in refresh.split(",") if t)
exp_offset = int(os.environ.get("TOKEN_EXP_OFFSET", "300"))
der = subprocess.run(["openssl", "x509", "-in", cert, "-outform", "DER"], check=True, capture_output=True).stdout


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign(scopes):
    access = []
    for scope in scopes:
        parts = scope.split(":")
        if len(parts) >= 3:
            access.append({"type": parts[0], "name": ":".join(parts[1:-1]), "actions": parts[-1].split(",")})
    now = int(time.time())
    header = {"alg": "RS256", "typ": "JWT", "x5c": [base64.b64encode(der).decode()]}
    claims = {"iss": issuer, "sub": "test", "aud": service, "exp": now + exp_offset, "nbf": now - 10,
              "iat": now, "jti": str(uuid.uuid4()), "access": access}
    signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", key], input=signing_input.encode(),
                         check=True, capture_output=True).stdout
    return signing_input + "." + b64(sig)


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def record(self, entry):
        with open(log, "a") as f:
            f.write(json.dumps(entry) + "\n")

    def do_GET(self):
        q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        scopes = q.get("scope", [])
        user = None
        h = self.headers.get("Authorization", "")
        if h.startswith("Basic "):
            u, _, p = base64.b64decode(h[6:]).decode().partition(":")
            if users.get(u) != p:
                self.record({"grant": "basic", "ok": False, "user": u})
                return self.answer(401, {"details": "bad credentials"})
            user = u
        if user is None:
            # Anonymous: no access to anything.
            self.record({"grant": "anonymous", "ok": False})
            return self.answer(401, {"details": "authentication required"})
        self.record({"grant": "basic", "ok": True, "user": user, "scope": scopes})
        self.answer(200, {"token": sign(scopes), "expires_in": 3600})

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        form = urllib.parse.parse_qs(self.rfile.read(n).decode())
        if form.get("grant_type") != ["refresh_token"] or form.get("refresh_token", [""])[0] not in refresh:
            self.record({"grant": "refresh_token", "ok": False})
            return self.answer(401, {"error": "invalid_grant"})
        scopes = form.get("scope", [])
        self.record({"grant": "refresh_token", "ok": True, "scope": scopes})
        self.answer(200, {"access_token": sign(scopes), "expires_in": 3600})


ThreadingHTTPServer(("127.0.0.1", int(port)), Handler).serve_forever()
