#!/usr/bin/python3
"""A Docker token-auth server for the registry tests (loopback only).

Implements the token endpoint of the Docker registry token protocol:

    GET /token?service=S&scope=repository:NAME:pull,push[&scope=...]
        [Authorization: Basic base64(user:password)]
    -> 200 {"token": JWT, "expires_in": N, "issued_at": ...}

Requests with the right credentials get every action they ask for; anonymous requests get a token
with no access at all (so the registry refuses them); wrong credentials get 401. Tokens are ES256
JWTs whose header carries the signing certificate (x5c), which the registry checks against its
`rootcertbundle`.

The expected credentials come from the environment (EDGELOOP_TOKEN_USER,
EDGELOOP_TOKEN_PASSWORD), never from the command line. Once listening, the server writes its port
to --port-file; each issued or refused token appends one line to --log-file (no secrets).

Run with Debian's /usr/bin/python3 (python3-jwt, python3-cryptography).
"""

import argparse
import base64
import datetime
import json
import os
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization


def parse_scope(scope):
    """'repository:name:pull,push' -> (type, name, [actions]); None if malformed."""
    kind, sep, rest = scope.partition(":")
    name, sep2, actions = rest.rpartition(":")
    if not sep or not sep2 or not name:
        return None
    return kind, name, [a for a in actions.split(",") if a]


class TokenHandler(BaseHTTPRequestHandler):
    server_version = "edgeloop-test-token/1"

    def log_message(self, fmt, *args):  # keep test output quiet
        pass

    def _reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self, line):
        cfg = self.server.cfg
        with cfg["lock"]:
            with open(cfg["log_file"], "a", encoding="utf-8") as f:
                f.write(line + "\n")
                f.flush()

    def do_GET(self):
        cfg = self.server.cfg
        url = urlparse(self.path)
        if url.path != "/token":
            self._reply(404, {"errors": [{"code": "NOT_FOUND", "message": "no such endpoint"}]})
            return
        query = parse_qs(url.query)
        if query.get("service", [""])[0] != cfg["service"]:
            self._reply(400, {"errors": [{"code": "UNSUPPORTED", "message": "unknown service"}]})
            return

        user = ""
        header = self.headers.get("Authorization", "")
        if header:
            scheme, _, value = header.partition(" ")
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                decoded = ""
            name, _, password = decoded.partition(":")
            if scheme.lower() != "basic" or name != cfg["user"] or password != cfg["password"]:
                self._record("denied")
                self._reply(401, {"errors": [{"code": "UNAUTHORIZED",
                                              "message": "invalid credentials"}]})
                return
            user = name

        access = []
        scopes = query.get("scope", [])
        for scope in scopes:
            parsed = parse_scope(scope)
            if parsed is None:
                continue
            kind, name, actions = parsed
            # Anonymous callers get nothing; the registry then answers 401 insufficient_scope.
            access.append({"type": kind, "name": name, "actions": actions if user else []})

        now = int(time.time())
        claims = {
            "iss": cfg["issuer"],
            "sub": user,
            "aud": cfg["service"],
            "exp": now + cfg["ttl"],
            "nbf": now - 1,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        token = jwt.encode(claims, cfg["key"], algorithm="ES256",
                           headers={"x5c": [cfg["cert_b64"]]})
        self._record("issued user=%s scopes=%s" % (user or "-", ";".join(scopes) or "-"))
        issued_at = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
        body = {"expires_in": cfg["ttl"], "issued_at": issued_at.isoformat()}
        body[cfg["token_field"]] = token
        self._reply(200, body)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--key", required=True, help="PEM EC P-256 private key")
    parser.add_argument("--cert", required=True, help="PEM certificate of that key")
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--log-file", required=True)
    parser.add_argument("--ttl", type=int, default=300)
    parser.add_argument("--token-field", default="token", choices=["token", "access_token"])
    args = parser.parse_args()

    with open(args.key, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    with open(args.cert, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    cert_b64 = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()

    server = ThreadingHTTPServer(("127.0.0.1", 0), TokenHandler)
    server.daemon_threads = True
    server.cfg = {
        "key": key,
        "cert_b64": cert_b64,
        "issuer": args.issuer,
        "service": args.service,
        "user": os.environ.get("EDGELOOP_TOKEN_USER", ""),
        "password": os.environ.get("EDGELOOP_TOKEN_PASSWORD", ""),
        "ttl": args.ttl,
        "token_field": args.token_field,
        "log_file": args.log_file,
        "lock": threading.Lock(),
    }
    open(args.log_file, "a", encoding="utf-8").close()
    # Write the port atomically so that the fixture never reads half a number.
    tmp = args.port_file + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, args.port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
