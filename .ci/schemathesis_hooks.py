"""Schemathesis hooks for the contract run (.ci/contract-test.sh).

JSON Schema counts 2.0 as an integer, so schemathesis sends integral floats
for `integer` fields. This service is stricter, as its contract says (like
pydantic's strict mode): a quantity must be a JSON integer literal. Writing
such floats as integers never changes whether a case is schema-valid.
"""

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
def map_body(ctx, body):
    return _integral_floats_as_ints(body)
