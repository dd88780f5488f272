"""Verify a delivery with the independent `standardwebhooks` package.

Usage: verify_standard_webhooks.py SECRET HEADERS.json BODY_FILE
Exits 0 when the signature verifies, 1 with the library's error otherwise.
"""
import json
import sys

from standardwebhooks.webhooks import Webhook

secret, headers_path, body_path = sys.argv[1:4]
with open(headers_path) as f:
    headers = json.load(f)
with open(body_path, "rb") as f:
    body = f.read()
try:
    Webhook(secret).verify(body, headers, json_parse=False)
except Exception as e:  # the library raises WebhookVerificationError
    print(f"verification failed: {e}", file=sys.stderr)
    sys.exit(1)
print("verified")
