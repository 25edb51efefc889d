"""Schemathesis hooks for the contract check (scripts/contract)."""

import re
import uuid

import schemathesis

# What the service takes as a key: 1 to 255 visible ASCII characters.
USABLE_KEY = re.compile(r"^[!-~]{1,255}$")


@schemathesis.hook
def map_headers(context, headers):
    """A fresh Idempotency-Key on every generated request that sends a usable one.

    Generated keys repeat ("0", "A", ...) across requests with other bodies, and reusing a key
    with another request is refused by design (Stripe's idempotency_error): a rule about earlier
    requests that no schema can state. Clients send a new UUID per request, as here. Malformed
    keys are sent as generated, so their refusal is still checked. (The coverage phase's fixed
    values do not pass through this hook: its reused keys get the 400 they should.)
    """
    if headers and USABLE_KEY.match(str(headers.get("Idempotency-Key", ""))):
        headers["Idempotency-Key"] = str(uuid.uuid4())
    return headers
