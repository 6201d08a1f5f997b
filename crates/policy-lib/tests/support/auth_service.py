"""A loopback HTTP login service for the policy-library tests.

Usage: auth_service.py USER:PASSWORD ...

POST /auth with a form (user=...&password=...) or JSON body
({"user": ..., "password": ...}) answers 200 when the pair is known and
403 otherwise; every POST /auth is counted. GET /calls answers that count
(text). Binds 127.0.0.1 port 0 and prints
"auth service listening on 127.0.0.1:PORT" once ready. Any request to
/echo is answered (200) with its method, its headers (lower-case names, one
"name: value" a line), an empty line and its body, for tests of the
client's request building.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

USERS = dict(arg.split(":", 1) for arg in sys.argv[1:])
LOCK = threading.Lock()
CALLS = 0


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def reply(self, status, text):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Auth-Service", "nephele-test")
        self.end_headers()
        self.wfile.write(body)

    def echo(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode("utf-8", "replace")
        lines = [self.command] + [
            "%s: %s" % (name.lower(), value) for name, value in self.headers.items()
        ]
        self.reply(200, "\n".join(lines) + "\n\n" + body)

    def do_PUT(self):
        self.echo()

    def do_GET(self):
        if self.path.startswith("/echo"):
            self.echo()
        elif self.path == "/calls":
            with LOCK:
                self.reply(200, str(CALLS))
        else:
            self.reply(404, "not found")

    def do_POST(self):
        global CALLS
        if self.path.startswith("/echo"):
            self.echo()
            return
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length).decode("utf-8", "replace")
        if self.path != "/auth":
            self.reply(404, "not found")
            return
        with LOCK:
            CALLS += 1
        if self.headers.get("Content-Type", "").startswith("application/json"):
            fields = json.loads(raw or "{}")
        else:
            fields = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
        user, password = fields.get("user"), fields.get("password")
        if user in USERS and USERS[user] == password:
            self.reply(200, "yes")
        else:
            self.reply(403, "no")

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print("auth service listening on 127.0.0.1:%d" % server.server_address[1], flush=True)
server.serve_forever()
