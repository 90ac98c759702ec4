"""The lab's test application: an HTTP server that answers with the pod and node it runs on.

    GET  /          "<pod> <node>\n" (from $POD_NAME and $NODE_NAME, the downward API)
    GET  /healthz   200 "ready" while ready, 503 "not ready" otherwise (the readiness probe)
    POST /ready     become ready;  POST /unready: stop being ready (tests flip readiness)

Standard library only; listens on $PORT (default 8080) on every address.
"""

import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

POD = os.environ.get("POD_NAME") or socket.gethostname()
NODE = os.environ.get("NODE_NAME", "unknown")
ready = threading.Event()
if os.environ.get("START_READY", "true") == "true":
    ready.set()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):
        pass

    def reply(self, status, text):
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/healthz":
            if ready.is_set():
                self.reply(200, "ready\n")
            else:
                self.reply(503, "not ready\n")
        else:
            self.reply(200, f"{POD} {NODE}\n")

    def do_POST(self):
        if self.path == "/ready":
            ready.set()
        elif self.path == "/unready":
            ready.clear()
        else:
            self.reply(404, "not found\n")
            return
        self.reply(200, "ready\n" if ready.is_set() else "not ready\n")


if __name__ == "__main__":
    server = ThreadingHTTPServer(("", int(os.environ.get("PORT", "8080"))), Handler)
    server.daemon_threads = True
    server.serve_forever()
