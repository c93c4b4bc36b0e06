"""A stand-in for an OpenTelemetry collector's OTLP/HTTP receiver, for
bench/tracing.sh: answers 200 to every POST /v1/traces and counts the
batches and bytes it took (printed when stopped)."""

import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

batches = 0
received = 0


class Receiver(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        global batches, received
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        batches += 1
        received += length
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def stop(*_):
    print(f"batches {batches}, bytes {received}", flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Receiver).serve_forever()
