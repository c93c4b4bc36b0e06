"""Schemathesis hooks for the contract run (.ci/contract-test.sh).

JSON Schema counts 2.0 as an integer, so schemathesis sends integral floats
for `integer` fields. This service is stricter, as its contract says (like
pydantic's strict mode): a quantity must be a JSON integer literal. Writing
such floats as integers never changes whether a case is schema-valid.
"""

import uuid

import schemathesis


def _integral_floats_as_ints(value):
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral_floats_as_ints(item) for item in value]
    if isinstance(value, dict):
        return {key: _integral_floats_as_ints(item) for key, item in value.items()}
    return value


@schemathesis.hook
def before_call(ctx, case, kwargs):
    """Applied to every case of every phase, just before it is sent.

    - Integral floats are written as integers (see above).
    - Each request gets a fresh Idempotency-Key: schemathesis repeats small
      keys ("0") across unrelated bodies, and reusing a key for a different
      order is refused with 422 by design (as the IETF idempotency-key draft
      says); the integration tests cover that. Here every generated request
      stands for a new order.
    """
    if isinstance(case.body, (dict, list)):
        case.body = _integral_floats_as_ints(case.body)
    if case.headers and "Idempotency-Key" in case.headers:
        case.headers["Idempotency-Key"] = str(uuid.uuid4())
