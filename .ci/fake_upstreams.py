"""Payments and kitchen services that always succeed, for the contract run.

One HTTP server answers both contracts (contracts/payments.yaml and
contracts/kitchen.yaml): POST /payments, POST /kitchen/schedules and
POST /kitchen/schedules/{id}/cancel. Usage: fake_upstreams.py PORT
"""

import json
import re
import sys
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CANCEL = re.compile(r"^/kitchen/schedules/[0-9a-f-]{36}/cancel$")


class Handler(BaseHTTPRequestHandler):
    def _answer(self, status, body):
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        if self.path == "/payments":
            self._answer(201, {"payment_id": str(uuid.uuid4()), "status": "paid"})
        elif self.path == "/kitchen/schedules":
            self._answer(201, {
                "id": str(uuid.uuid4()),
                "scheduled": datetime.now(timezone.utc).isoformat(),
                "status": "pending",
                "order": body.get("order", []),
            })
        elif CANCEL.match(self.path):
            self._answer(200, {"status": "cancelled"})
        else:
            self._answer(404, {"detail": "Not Found"})

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
