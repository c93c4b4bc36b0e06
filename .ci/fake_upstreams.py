"""Payments and kitchen services that always succeed, for the contract run.

One HTTP server answers both contracts (contracts/payments.yaml and
contracts/kitchen.yaml): POST /payments, POST /payments/{id}/refunds,
POST /kitchen/schedules, GET /kitchen/schedules/{id}/status and
POST /kitchen/schedules/{id}/cancel. Like the real services, the same
Idempotency-Key gets the same answer. Usage: fake_upstreams.py PORT
"""

import json
import re
import sys
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CANCEL = re.compile(r"^/kitchen/schedules/([0-9a-f-]{36})/cancel$")
STATUS = re.compile(r"^/kitchen/schedules/([0-9a-f-]{36})/status$")
REFUND = re.compile(r"^/payments/[0-9a-f-]{36}/refunds$")

# Answers already given, by (path kind, Idempotency-Key).
ANSWERS = {}
# Schedule id -> status.
SCHEDULES = {}


def once(kind, key, make):
    """The answer for this key, made the first time it is asked."""
    if key is None:
        return make()
    return ANSWERS.setdefault((kind, key), make())


class Handler(BaseHTTPRequestHandler):
    def _answer(self, status, body):
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self):
        status = STATUS.match(self.path)
        if status and status.group(1) in SCHEDULES:
            self._answer(200, {"status": SCHEDULES[status.group(1)]})
        else:
            self._answer(404, {"detail": "Not Found"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        key = self.headers.get("Idempotency-Key")
        cancel = CANCEL.match(self.path)
        if self.path == "/payments":
            self._answer(201, once("charge", key, lambda: {
                "payment_id": str(uuid.uuid4()), "status": "paid"}))
        elif REFUND.match(self.path):
            self._answer(201, once("refund", key, lambda: {
                "refund_id": str(uuid.uuid4()), "status": "refunded"}))
        elif self.path == "/kitchen/schedules":
            schedule = once("schedule", key, lambda: {
                "id": str(uuid.uuid4()),
                "scheduled": datetime.now(timezone.utc).isoformat(),
                "status": "pending",
                "order": body.get("order", []),
            })
            SCHEDULES.setdefault(schedule["id"], "pending")
            self._answer(201, schedule)
        elif cancel and SCHEDULES.get(cancel.group(1)) == "pending":
            SCHEDULES[cancel.group(1)] = "cancelled"
            self._answer(200, {"status": "cancelled"})
        else:
            self._answer(404, {"detail": "Not Found"})

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
