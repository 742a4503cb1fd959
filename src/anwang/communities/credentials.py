"""Device keys, hashed the way Mosquitto's password files hash passwords.

A key is ``dk_`` + 32 random bytes (URL-safe base64). It is stored only as
``$7$<iterations>$<salt>$<hash>`` — PBKDF2-HMAC-SHA512 over a 12-byte random salt, salt
and the 64-byte hash in base64 — which is the format ``mosquitto_passwd`` writes since
Mosquitto 2.0. The same stored value therefore checks a device's HTTP requests and goes
verbatim into the broker's password file (``anwang devices broker-config``), so anwang
never needs to keep a key it could leak. The low iteration count is Mosquitto's
default and is safe here because keys are random, not chosen by people.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

PREFIX = "dk_"
ITERATIONS = 101
SALT_BYTES = 12
#: Keys a person may choose must be at least this long.
MIN_KEY_LENGTH = 16


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str, *, iterations: int = ITERATIONS, salt: bytes | None = None) -> str:
    salt = salt if salt is not None else secrets.token_bytes(SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", key.encode(), salt, iterations, 64)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_key(stored: str, key: str) -> bool:
    """Whether ``key`` is the key ``stored`` was made from (constant time)."""
    try:
        _, scheme, iterations, salt_b64, hash_b64 = stored.split("$")
        if scheme != "7":
            return False
        salt = base64.b64decode(salt_b64, validate=True)
        want = base64.b64decode(hash_b64, validate=True)
        rounds = int(iterations)
    except ValueError:
        return False
    if not 1 <= rounds <= 1_000_000:
        return False
    got = hashlib.pbkdf2_hmac("sha512", key.encode(), salt, rounds, len(want))
    return hmac.compare_digest(got, want)
