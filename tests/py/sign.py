"""Sign a request the way each provider does, with Python's own `hmac` module:
an implementation independent of the router's, for the inbound verification
tests. Standard library only. (Standard Webhooks requests are signed in the
tests with the spec's own Rust library instead.)

Usage: sign.py SCHEME SECRET BODY_FILE
Prints the signature headers as a JSON object.
"""
import base64
import hashlib
import hmac
import json
import sys
import time

scheme, secret, body_path = sys.argv[1:4]
with open(body_path, "rb") as f:
    body = f.read()
now = int(time.time())


def mac(msg: bytes):
    return hmac.new(secret.encode(), msg, hashlib.sha256)


if scheme == "github":
    out = {"X-Hub-Signature-256": "sha256=" + mac(body).hexdigest()}
elif scheme == "stripe":
    # Stripe keys the HMAC with the whole whsec_ string, as stripe-python does.
    out = {"Stripe-Signature": f"t={now},v1=" + mac(f"{now}.".encode() + body).hexdigest()}
elif scheme == "slack":
    out = {
        "X-Slack-Request-Timestamp": str(now),
        "X-Slack-Signature": "v0=" + mac(f"v0:{now}:".encode() + body).hexdigest(),
    }
elif scheme == "shopify":
    out = {"X-Shopify-Hmac-Sha256": base64.b64encode(mac(body).digest()).decode()}
elif scheme == "hmac":
    out = {"X-Signature": "sha256=" + mac(f"{now}.".encode() + body).hexdigest(), "X-Timestamp": str(now)}
else:
    sys.exit(f"unknown scheme {scheme}")
print(json.dumps(out))
