"""Reference side of the Epistula interop test: signs requests with `bittensor-wallet`'s
Keypair exactly the way Targon's `epistula.py` (v2) does, then tampers with them.

Usage: epistula_client.py URL SENDER_URI RECEIVER_SS58
Prints one JSON object: {case: {"status": int, "code": str|null}}.
"""
import json
import sys
import time
import urllib.error
import urllib.request
from hashlib import sha256
from math import ceil
from uuid import uuid4

from bittensor_wallet import Keypair


def generate_header(hotkey, body: bytes, signed_for=None, timestamp=None, uuid=None):
    # As targon/epistula.py: ms timestamp, uuid4, sha256 of the exact body bytes.
    timestamp = round(time.time() * 1000) if timestamp is None else timestamp
    timestamp_interval = ceil(timestamp / 1e4) * 1e4
    uuid = uuid or str(uuid4())
    message = f"{sha256(body).hexdigest()}.{uuid}.{timestamp}.{signed_for or ''}"
    headers = {
        "Epistula-Version": str(2),
        "Epistula-Timestamp": str(timestamp),
        "Epistula-Uuid": uuid,
        "Epistula-Signed-By": hotkey.ss58_address,
        "Epistula-Request-Signature": "0x" + hotkey.sign(message.encode()).hex(),
    }
    if signed_for:
        headers["Epistula-Signed-For"] = signed_for
        headers["Epistula-Secret-Signature-0"] = "0x" + hotkey.sign(f"{timestamp_interval - 1}.{signed_for}".encode()).hex()
        headers["Epistula-Secret-Signature-1"] = "0x" + hotkey.sign(f"{timestamp_interval}.{signed_for}".encode()).hex()
        headers["Epistula-Secret-Signature-2"] = "0x" + hotkey.sign(f"{timestamp_interval + 1}.{signed_for}".encode()).hex()
    return headers


def send(url, body, headers):
    request = urllib.request.Request(url, data=body, method="POST", headers={**headers, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return {"status": response.status, "code": None, "body": response.read().decode()}
    except urllib.error.HTTPError as err:
        payload = json.loads(err.read().decode() or "{}")
        return {"status": err.code, "code": payload.get("error", {}).get("code")}


def main(url, sender_uri, receiver):
    hotkey = Keypair.create_from_uri(sender_uri)
    body = json.dumps({"model": "smollm2", "messages": [{"role": "user", "content": "hi"}]}).encode()
    results = {}

    good = generate_header(hotkey, body, receiver)
    results["good"] = send(url, body, good)
    results["replayed"] = send(url, body, good)
    results["tampered_body"] = send(url, body.replace(b"hi", b"ho"), generate_header(hotkey, body, receiver))
    results["wrong_signed_for"] = send(url, body, generate_header(hotkey, body, hotkey.ss58_address))
    now = round(time.time() * 1000)
    results["stale"] = send(url, body, generate_header(hotkey, body, receiver, timestamp=now - 60_000))
    results["future"] = send(url, body, generate_header(hotkey, body, receiver, timestamp=now + 60_000))
    print(json.dumps(results))


if __name__ == "__main__":
    main(*sys.argv[1:4])
