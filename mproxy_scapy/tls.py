"""TLS decryption with a key log, so ``wss://`` tunnels can be decoded like ``ws://`` ones.

Telebit devices reach their relay over ``wss://``; a capture of that is
opaque unless the endpoints logged their secrets (``SSLKEYLOGFILE``, the NSS
key log format Wireshark reads too). With the log, each TLS connection's
records are decrypted as they stream past and the plaintext goes on to the
carrier as if the connection were plain TCP.

Scope:

- TLS 1.3 with the three standard AEAD suites, from the ``*_TRAFFIC_SECRET``
  lines;
- TLS 1.2 with ECDHE key exchange and an AEAD suite (AES-GCM, ChaCha20-
  Poly1305), from the ``CLIENT_RANDOM`` line, which holds the session's
  master secret: the key block is the TLS 1.2 PRF of it (RFC 5246 section
  6.3), so a session with the extended master secret (RFC 7627), which
  changes only how the master secret is made, decrypts the same way.

Anything else (a CBC suite, RSA or DHE key exchange, TLS 1.1 and older) is
reported as ``tls_unsupported`` with the suite named; a missing key or a lost
segment stops decryption of that direction with a reported problem; the
bytes are counted as skipped. Records are parsed incrementally and only one
record per direction is ever held.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import UserError

TLS_PROBLEMS: dict[str, str] = {
    "tls_no_key": "The key log has no secrets for this TLS session: its bytes are skipped",
    "tls_unsupported": "Not TLS 1.3, nor TLS 1.2 with ECDHE and an AEAD suite: its bytes are skipped",
    "tls_decrypt_failed": "A TLS record did not decrypt with the logged secrets: the rest is skipped",
    "tls_gap": "Bytes of a TLS stream were lost in the capture: the rest of that direction is skipped",
    "tls_malformed": "A TLS record header is impossible: the rest of that direction is skipped",
}
"""Every problem kind the TLS stage reports (as ``tls.<kind>``)."""

TLS12, TLS13 = 0x0303, 0x0304

_SUITES13 = {
    0x1301: ("aes128gcm", "sha256", 16),
    0x1302: ("aes256gcm", "sha384", 32),
    0x1303: ("chacha20", "sha256", 32),
}
_SUITES12 = {
    0xC02B: ("gcm", "sha256", 16),
    0xC02C: ("gcm", "sha384", 32),
    0xC02F: ("gcm", "sha256", 16),
    0xC030: ("gcm", "sha384", 32),
    0xCCA8: ("chacha20", "sha256", 32),
    0xCCA9: ("chacha20", "sha256", 32),
}
"""TLS 1.2 suites decrypted: ECDHE (RSA or ECDSA) with AES-GCM or ChaCha20-Poly1305: (AEAD, PRF hash, key bytes)."""

SUITE_NAMES = {
    0x1301: "TLS_AES_128_GCM_SHA256",
    0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0xC02B: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    0xC02C: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    0xC02F: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    0xC030: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    0xCCA8: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCA9: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    0x002F: "TLS_RSA_WITH_AES_128_CBC_SHA",
    0x0035: "TLS_RSA_WITH_AES_256_CBC_SHA",
    0x003C: "TLS_RSA_WITH_AES_128_CBC_SHA256",
    0x003D: "TLS_RSA_WITH_AES_256_CBC_SHA256",
    0x009C: "TLS_RSA_WITH_AES_128_GCM_SHA256",
    0x009D: "TLS_RSA_WITH_AES_256_GCM_SHA384",
    0x0033: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
    0x0039: "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
    0x0067: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256",
    0x006B: "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256",
    0x009E: "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    0x009F: "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    0xCCAA: "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    0xC009: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    0xC00A: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    0xC013: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    0xC014: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    0xC023: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    0xC024: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
    0xC027: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    0xC028: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
}
"""IANA names of the suites a relay is likely to pick, so a report can name what it did not decrypt."""

_VERSION_NAMES = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", TLS12: "TLS 1.2", TLS13: "TLS 1.3"}
_CONTENT_CCS, _CONTENT_ALERT, _CONTENT_HANDSHAKE, _CONTENT_APPDATA = 20, 21, 22, 23
_HANDSHAKE_KEY_UPDATE = 24
_EXT_EXTENDED_MASTER_SECRET, _EXT_SUPPORTED_VERSIONS = 0x0017, 0x002B
_RECORD = struct.Struct("!BHH")
_AAD12 = struct.Struct("!QBHH")
_TAG = 16
_EXPLICIT_NONCE = 8
MAX_RECORD = (1 << 14) + 2048
MAX_HELD_BEFORE_KEYS = 1 << 20
"""Encrypted bytes held per direction while the ServerHello that says how to decrypt them is not seen."""

_SECRET_SIZES = {
    "CLIENT_RANDOM": (48,),
    "CLIENT_HANDSHAKE_TRAFFIC_SECRET": (32, 48),
    "SERVER_HANDSHAKE_TRAFFIC_SECRET": (32, 48),
    "CLIENT_TRAFFIC_SECRET_0": (32, 48),
    "SERVER_TRAFFIC_SECRET_0": (32, 48),
    "EXPORTER_SECRET": (32, 48),
    "CLIENT_EARLY_TRAFFIC_SECRET": (32, 48),
    "EARLY_EXPORTER_SECRET": (32, 48),
}
"""Labels of the NSS key log format with their secret sizes (48 bytes: TLS 1.2 master secret or SHA-384)."""
MAX_KEYLOG_WARNINGS = 20
"""Warnings listed one by one; past this many a key log gets one line counting the rest."""


class KeyLog:
    """Secrets from an NSS key log file, by (label, client random).

    ``warnings`` names every line that was not used and why (``FILE:LINE:
    ...``): malformed, truncated, an unknown label, or a repeat. The usable
    lines are kept, so decoding goes on with them.
    """

    def __init__(self, secrets: dict[tuple[str, bytes], bytes], warnings: list[str] | None = None) -> None:
        self.secrets = secrets
        self.warnings = warnings or []

    @classmethod
    def load(cls, path: str | Path) -> KeyLog:
        try:
            text = Path(path).read_text(encoding="ascii", errors="replace")
        except OSError as exc:
            raise UserError(f"{path}: cannot read the TLS key log: {exc.strerror}") from None
        secrets: dict[tuple[str, bytes], bytes] = {}
        seen_at: dict[tuple[str, bytes], int] = {}
        problems: list[str] = []
        for number, line in enumerate(text.splitlines(), 1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            entry = _keylog_entry(stripped)
            if isinstance(entry, str):
                problems.append(f"{path}:{number}: {entry}")
                continue
            key, secret = entry
            first = seen_at.get(key)
            if first is None:
                secrets[key], seen_at[key] = secret, number
            elif secrets[key] == secret:
                problems.append(f"{path}:{number}: repeats line {first} ({key[0]}): ignored")
            else:
                problems.append(f"{path}:{number}: {key[0]} for client random {key[1].hex()[:16]}... differs "
                                f"from line {first}: line {first} is used")
        warnings = problems[:MAX_KEYLOG_WARNINGS]
        if len(problems) > MAX_KEYLOG_WARNINGS:
            warnings.append(f"{path}: {len(problems) - MAX_KEYLOG_WARNINGS} more lines not used")
        return cls(secrets, warnings)

    def get(self, label: str, client_random: bytes) -> bytes | None:
        return self.secrets.get((label, client_random))


def _keylog_entry(line: str) -> tuple[tuple[str, bytes], bytes] | str:
    """``((label, client random), secret)`` of one key log line, or what is wrong with it."""
    parts = line.split()
    if len(parts) != 3:
        return f"expected 'LABEL CLIENT_RANDOM SECRET', found {len(parts)} fields"
    label, random_hex, secret_hex = parts
    sizes = _SECRET_SIZES.get(label)
    if sizes is None:
        return f"unknown label {label[:40]!r}: ignored"
    try:
        random, secret = bytes.fromhex(random_hex), bytes.fromhex(secret_hex)
    except ValueError:
        return f"{label}: the client random or the secret is not hex"
    if len(random) != 32:
        return f"{label}: the client random is {len(random)} bytes, not 32 (a cut line?)"
    if len(secret) not in sizes:
        want = " or ".join(str(s) for s in sizes)
        return f"{label}: the secret is {len(secret)} bytes, not {want} (a cut line?)"
    return (label, random), secret


def looks_like_tls(data: bytes | memoryview) -> bool:
    """A ClientHello record starts the stream: handshake type, TLS major version 3, handshake 1."""
    return len(data) >= 6 and data[0] == _CONTENT_HANDSHAKE and data[1] == 3 and data[5] == 1


def suite_name(suite: int) -> str:
    name = SUITE_NAMES.get(suite)
    return f"{name} (0x{suite:04x})" if name else f"cipher suite 0x{suite:04x}"


def tls12_prf(hash_name: str, secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """The TLS 1.2 PRF: ``P_hash(secret, label + seed)`` cut to ``length`` bytes (RFC 5246 section 5)."""
    digest = getattr(hashlib, hash_name)
    seed = label + seed
    out = bytearray()
    a = seed
    while len(out) < length:
        a = hmac.new(secret, a, digest).digest()
        out += hmac.new(secret, a + seed, digest).digest()
    return bytes(out[:length])


def _hkdf_expand_label(hash_name: str, secret: bytes, label: str, length: int) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

    algorithm = hashes.SHA384() if hash_name == "sha384" else hashes.SHA256()
    full = b"tls13 " + label.encode()
    info = struct.pack("!HB", length, len(full)) + full + b"\x00"
    return HKDFExpand(algorithm, length, info).derive(secret)


def _aead(cipher: str, key: bytes) -> Any:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

    return ChaCha20Poly1305(key) if cipher == "chacha20" else AESGCM(key)


class _Keys:
    """One direction's TLS 1.3 AEAD with its record sequence number."""

    __slots__ = ("aead", "hash_name", "iv", "secret", "seq", "suite")

    def __init__(self, suite: int, secret: bytes) -> None:
        cipher, hash_name, key_len = _SUITES13[suite]
        self.suite = suite
        self.hash_name = hash_name
        self.secret = secret
        key = _hkdf_expand_label(hash_name, secret, "key", key_len)
        self.iv = int.from_bytes(_hkdf_expand_label(hash_name, secret, "iv", 12), "big")
        self.aead: Any = _aead(cipher, key)
        self.seq = 0

    def open(self, header: bytes, ciphertext: bytes) -> bytes | None:
        nonce = (self.iv ^ self.seq).to_bytes(12, "big")
        try:
            plain = self.aead.decrypt(nonce, ciphertext, header)
        except Exception:  # cryptography's InvalidTag: the wrong key or a damaged record
            return None
        self.seq += 1
        return plain

    def updated(self) -> _Keys:
        size = 48 if self.hash_name == "sha384" else 32
        return _Keys(self.suite, _hkdf_expand_label(self.hash_name, self.secret, "traffic upd", size))


class _Keys12:
    """One direction's TLS 1.2 AEAD: write key and IV from the key block, and the record sequence number.

    AES-GCM (RFC 5288): the nonce is the 4-byte implicit IV then the 8
    explicit bytes that start each record. ChaCha20-Poly1305 (RFC 7905): the
    12-byte IV XOR the sequence number, nothing explicit. The additional data
    is ``seq, type, version, plaintext length`` either way.
    """

    __slots__ = ("aead", "cipher", "iv", "seq")

    def __init__(self, cipher: str, key: bytes, iv: bytes) -> None:
        self.cipher = cipher
        self.aead: Any = _aead(cipher, key)
        self.iv = iv
        self.seq = 0

    def open(self, content: int, version: int, fragment: bytes) -> bytes | None:
        if self.cipher == "gcm":
            if len(fragment) < _EXPLICIT_NONCE + _TAG:
                return None
            nonce = self.iv + fragment[:_EXPLICIT_NONCE]
            ciphertext = fragment[_EXPLICIT_NONCE:]
        else:
            if len(fragment) < _TAG:
                return None
            nonce = (int.from_bytes(self.iv, "big") ^ self.seq).to_bytes(12, "big")
            ciphertext = fragment
        aad = _AAD12.pack(self.seq, content, version, len(ciphertext) - _TAG)
        try:
            plain = self.aead.decrypt(nonce, ciphertext, aad)
        except Exception:  # cryptography's InvalidTag: the wrong key or a damaged record
            return None
        self.seq += 1
        return plain


def tls12_keys(suite: int, master_secret: bytes, client_random: bytes,
               server_random: bytes) -> tuple[_Keys12, _Keys12]:
    """Client-write and server-write keys of a TLS 1.2 AEAD session from its master secret (RFC 5246 6.3)."""
    cipher, hash_name, key_len = _SUITES12[suite]
    iv_len = 12 if cipher == "chacha20" else 4
    block = tls12_prf(hash_name, master_secret, b"key expansion", server_random + client_random,
                      2 * (key_len + iv_len))
    client_key, server_key = block[:key_len], block[key_len:2 * key_len]
    client_iv, server_iv = block[2 * key_len:2 * key_len + iv_len], block[2 * key_len + iv_len:]
    return _Keys12(cipher, client_key, client_iv), _Keys12(cipher, server_key, server_iv)


class TlsPlain:
    """Decrypted application bytes of one direction."""

    __slots__ = ("data", "direction", "frame_no", "ts")

    def __init__(self, direction: int, data: bytes, frame_no: int, ts: float) -> None:
        self.direction = direction
        self.data = data
        self.frame_no = frame_no
        self.ts = ts


class TlsProblem:
    __slots__ = ("detail", "direction", "kind", "nbytes")

    def __init__(self, direction: int, kind: str, detail: str, nbytes: int = 0) -> None:
        self.direction = direction
        self.kind = kind
        self.detail = detail
        self.nbytes = nbytes


_LABELS = (("CLIENT_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0"),
           ("SERVER_HANDSHAKE_TRAFFIC_SECRET", "SERVER_TRAFFIC_SECRET_0"))


class _ServerHello:
    """What decryption needs from a ServerHello: version, suite, server random, extended master secret."""

    __slots__ = ("ems", "random", "suite", "version")

    def __init__(self, body: bytes) -> None:
        """Raises ValueError when the message is too short for what it declares."""
        if len(body) < 39:
            raise ValueError("short ServerHello")
        self.version = struct.unpack_from("!H", body, 4)[0]
        self.random = body[6:38]
        at = 39 + body[38]
        if len(body) < at + 3:
            raise ValueError("short ServerHello")
        self.suite = struct.unpack_from("!H", body, at)[0]
        self.ems = False
        at += 3
        if len(body) >= at + 2:
            end = min(len(body), at + 2 + struct.unpack_from("!H", body, at)[0])
            at += 2
            while at + 4 <= end:
                kind, size = struct.unpack_from("!HH", body, at)
                data = body[at + 4:at + 4 + size]
                if kind == _EXT_SUPPORTED_VERSIONS and len(data) == 2:
                    self.version = struct.unpack("!H", data)[0]
                elif kind == _EXT_EXTENDED_MASTER_SECRET:
                    self.ems = True
                at += 4 + size


class TlsDecryptor:
    """One TCP connection's TLS session: ``feed(direction, data, frame_no, ts)`` -> plaintext events.

    Direction 0 is the TCP client (it sends the ClientHello). ``description``
    says what was negotiated once the ServerHello is seen.
    """

    def __init__(self, keylog: KeyLog) -> None:
        self.keylog = keylog
        self._buf = [bytearray(), bytearray()]
        self._client_random: bytes | None = None
        self._suite: int | None = None
        self._version: int | None = None
        self._keys: list[Any] = [None, None]
        self._pending12: list[_Keys12 | None] = [None, None]
        """TLS 1.2 keys of each direction, in force from that direction's ChangeCipherSpec."""
        self._app_secret: list[bytes | None] = [None, None]
        self._app_phase = [False, False]
        self._dead = [False, False]
        self.skipped = [0, 0]
        self._drained_other = False
        self.description = "TLS"

    def feed(self, direction: int, data: bytes | memoryview, frame_no: int, ts: float) -> list[Any]:
        out: list[Any] = []
        if self._dead[direction]:
            self.skipped[direction] += len(data)
            return out
        self._buf[direction] += data
        self._drain(direction, frame_no, ts, out)
        return out

    def _drain(self, direction: int, frame_no: int, ts: float, out: list[Any]) -> None:
        buf = self._buf[direction]
        while len(buf) >= 5 and not self._dead[direction]:
            content, version, length = _RECORD.unpack_from(buf)
            if version >> 8 != 3 or length > MAX_RECORD or content not in (20, 21, 22, 23):
                self._stop(direction, "tls_malformed", f"record header {bytes(buf[:5]).hex()}", out)
                return
            if len(buf) < 5 + length:
                return
            if self._suite is None and content in (_CONTENT_APPDATA, _CONTENT_CCS):
                # encrypted records (TLS 1.2: all that follow a ChangeCipherSpec) seen before the ServerHello
                # (capture order): held until the keys are known
                if len(buf) > MAX_HELD_BEFORE_KEYS:
                    self._stop(direction, "tls_unsupported", "encrypted records without a ServerHello", out)
                return
            header = bytes(buf[:5])
            body = bytes(buf[5:5 + length])
            del buf[:5 + length]
            if not self._record(direction, content, header, body, frame_no, ts, out):
                return
            if self._suite is not None and self._buf[1 - direction] and not self._drained_other:
                self._drained_other = True
                self._drain(1 - direction, frame_no, ts, out)

    def gap(self, direction: int, length: int) -> list[Any]:
        out: list[Any] = []
        if not self._dead[direction]:
            self._stop(direction, "tls_gap", f"{length} bytes lost", out)
        self.skipped[direction] += length
        return out

    def _stop(self, direction: int, kind: str, detail: str, out: list[Any]) -> None:
        self._dead[direction] = True
        held = len(self._buf[direction])
        self._buf[direction].clear()
        self.skipped[direction] += held
        out.append(TlsProblem(direction, kind, detail, held))

    def _record(self, direction: int, content: int, header: bytes, body: bytes, frame_no: int, ts: float,
                out: list[Any]) -> bool:
        keys = self._keys[direction]
        if keys is None:
            if content == _CONTENT_HANDSHAKE:
                return self._plain_handshake(direction, body, out)
            if content == _CONTENT_CCS:
                if self._version == TLS12:
                    self._keys[direction] = self._pending12[direction]
                return True
            if content == _CONTENT_ALERT:
                return True
            self._stop(direction, "tls_unsupported", f"content type {content} before keys were set up", out)
            return False
        if self._version == TLS12:
            return self._record12(direction, keys, content, header, body, frame_no, ts, out)
        if content == _CONTENT_CCS:
            return True
        if content != _CONTENT_APPDATA:
            if content == _CONTENT_ALERT:
                return True
            self._stop(direction, "tls_unsupported", f"content type {content} after keys were set up", out)
            return False
        plain = keys.open(header, body)
        if plain is None and not self._app_phase[direction]:
            self._enter_app_phase(direction)
            keys = self._keys[direction]
            assert keys is not None
            plain = keys.open(header, body)
        if plain is None:
            self._stop(direction, "tls_decrypt_failed", f"record of {len(body)} bytes", out)
            return False
        stripped = plain.rstrip(b"\x00")
        if not stripped:
            return True
        inner, payload = stripped[-1], stripped[:-1]
        if inner == _CONTENT_APPDATA:
            if not self._app_phase[direction]:
                self._app_phase[direction] = True
            if payload:
                out.append(TlsPlain(direction, payload, frame_no, ts))
        elif inner == _CONTENT_HANDSHAKE and self._app_phase[direction] and payload[:1] == bytes(
                [_HANDSHAKE_KEY_UPDATE]):
            self._keys[direction] = keys.updated()
        return True

    def _record12(self, direction: int, keys: _Keys12, content: int, header: bytes, body: bytes, frame_no: int,
                  ts: float, out: list[Any]) -> bool:
        """A TLS 1.2 record after the direction's ChangeCipherSpec: every one is encrypted, whatever its type."""
        if content == _CONTENT_CCS:
            self._stop(direction, "tls_unsupported", "a second ChangeCipherSpec (renegotiation)", out)
            return False
        plain = keys.open(content, struct.unpack_from("!H", header, 1)[0], body)
        if plain is None:
            self._stop(direction, "tls_decrypt_failed", f"record {keys.seq} of {len(body)} bytes", out)
            return False
        if content == _CONTENT_APPDATA and plain:
            out.append(TlsPlain(direction, plain, frame_no, ts))
        return True

    def _enter_app_phase(self, direction: int) -> None:
        secret = self._app_secret[direction]
        if secret is not None and self._suite is not None:
            self._keys[direction] = _Keys(self._suite, secret)
        self._app_phase[direction] = True

    def _plain_handshake(self, direction: int, body: bytes, out: list[Any]) -> bool:
        if direction == 0 and body[:1] == b"\x01" and len(body) >= 38:
            self._client_random = body[6:38]
            return True
        if direction == 1 and body[:1] == b"\x02" and self._suite is None:
            try:
                hello = _ServerHello(body)
            except ValueError as exc:
                self._stop(direction, "tls_malformed", str(exc), out)
                return False
            return self._negotiated(hello, out)
        return True

    def _negotiated(self, hello: _ServerHello, out: list[Any]) -> bool:
        version_name = _VERSION_NAMES.get(hello.version, f"version 0x{hello.version:04x}")
        if hello.version == TLS13 and hello.suite in _SUITES13:
            self.description = f"TLS 1.3 {SUITE_NAMES[hello.suite]}, decrypted with the key log"
            return self._set_keys13(hello.suite, out)
        if hello.version == TLS12 and hello.suite in _SUITES12:
            ems = ", extended master secret" if hello.ems else ""
            self.description = f"TLS 1.2 {SUITE_NAMES[hello.suite]}{ems}, decrypted with the key log"
            return self._set_keys12(hello, out)
        if hello.version == TLS12:
            name = SUITE_NAMES.get(hello.suite, "")
            why = ("CBC suites are not decrypted" if "_CBC_" in name
                   else "only ECDHE key exchange with AES-GCM or ChaCha20-Poly1305 is decrypted")
            detail = f"TLS 1.2 {suite_name(hello.suite)}: {why}"
        else:
            detail = f"{version_name} {suite_name(hello.suite)}: only TLS 1.2 and 1.3 are decrypted"
        self.description = f"{version_name} {suite_name(hello.suite)}, not decrypted"
        for d in (0, 1):
            self._stop(d, "tls_unsupported", detail, out)
        return False

    def _no_key(self, what: str, out: list[Any]) -> bool:
        random = self._client_random
        detail = f"{what} for client random {random.hex() if random else '?'}"
        for d in (0, 1):
            self._stop(d, "tls_no_key", detail, out)
        return False

    def _set_keys12(self, hello: _ServerHello, out: list[Any]) -> bool:
        random = self._client_random
        master = self.keylog.get("CLIENT_RANDOM", random) if random else None
        if master is None or random is None:
            return self._no_key("no CLIENT_RANDOM line", out)
        self._suite, self._version = hello.suite, TLS12
        client, server = tls12_keys(hello.suite, master, random, hello.random)
        self._pending12 = [client, server]
        return True

    def _set_keys13(self, suite: int, out: list[Any]) -> bool:
        self._suite, self._version = suite, TLS13
        random = self._client_random
        for direction, (handshake_label, app_label) in enumerate(_LABELS):
            handshake = self.keylog.get(handshake_label, random) if random else None
            app = self.keylog.get(app_label, random) if random else None
            if handshake is None or app is None:
                return self._no_key("no TLS 1.3 traffic secrets", out)
            self._keys[direction] = _Keys(suite, handshake)
            self._app_secret[direction] = app
        return True


def load_keylogs(paths: Iterable[str | Path]) -> KeyLog | None:
    """All given key logs merged (their warnings too); None when there are none."""
    merged: dict[tuple[str, bytes], bytes] = {}
    warnings: list[str] = []
    any_loaded = False
    for path in paths:
        keylog = KeyLog.load(path)
        merged.update(keylog.secrets)
        warnings += keylog.warnings
        any_loaded = True
    return KeyLog(merged, warnings) if any_loaded else None
