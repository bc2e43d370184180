"""TLS 1.3 decryption with a key log, so ``wss://`` tunnels can be decoded like ``ws://`` ones.

Telebit devices reach their relay over ``wss://``; a capture of that is
opaque unless the endpoints logged their secrets (``SSLKEYLOGFILE``, the NSS
key log format Wireshark reads too). With the log, each TLS connection's
records are decrypted as they stream past and the plaintext goes on to the
carrier as if the connection were plain TCP.

Scope: TLS 1.3 with the three standard AEAD suites (what every current
client and server negotiates). A TLS 1.2 session, a missing key or a lost
segment stops decryption of that direction with a reported problem; the
bytes are counted as skipped. Records are parsed incrementally and only
one record per direction is ever held.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import UserError

TLS_PROBLEMS: dict[str, str] = {
    "tls_no_key": "The key log has no secrets for this TLS session: its bytes are skipped",
    "tls_unsupported": "Not a TLS 1.3 session with a standard AEAD suite: its bytes are skipped",
    "tls_decrypt_failed": "A TLS record did not decrypt with the logged secrets: the rest is skipped",
    "tls_gap": "Bytes of a TLS stream were lost in the capture: the rest of that direction is skipped",
    "tls_malformed": "A TLS record header is impossible: the rest of that direction is skipped",
}
"""Every problem kind the TLS stage reports (as ``tls.<kind>``)."""

_SUITES = {
    0x1301: ("aes128gcm", "sha256", 16),
    0x1302: ("aes256gcm", "sha384", 32),
    0x1303: ("chacha20", "sha256", 32),
}
_CONTENT_CCS, _CONTENT_ALERT, _CONTENT_HANDSHAKE, _CONTENT_APPDATA = 20, 21, 22, 23
_HANDSHAKE_KEY_UPDATE = 24
_RECORD = struct.Struct("!BHH")
MAX_RECORD = (1 << 14) + 256
MAX_HELD_BEFORE_KEYS = 1 << 20
"""Encrypted bytes held per direction while the ServerHello that says how to decrypt them is not seen."""


class KeyLog:
    """Secrets from an NSS key log file, by (label, client random)."""

    def __init__(self, secrets: dict[tuple[str, bytes], bytes]) -> None:
        self.secrets = secrets

    @classmethod
    def load(cls, path: str | Path) -> KeyLog:
        secrets: dict[tuple[str, bytes], bytes] = {}
        try:
            lines = Path(path).read_text(encoding="ascii", errors="replace").splitlines()
        except OSError as exc:
            raise UserError(f"{path}: cannot read the TLS key log: {exc.strerror}") from None
        for line in lines:
            parts = line.split()
            if len(parts) != 3 or parts[0].startswith("#"):
                continue
            try:
                secrets[(parts[0], bytes.fromhex(parts[1]))] = bytes.fromhex(parts[2])
            except ValueError:
                continue
        return cls(secrets)

    def get(self, label: str, client_random: bytes) -> bytes | None:
        return self.secrets.get((label, client_random))


def looks_like_tls(data: bytes | memoryview) -> bool:
    """A ClientHello record starts the stream: handshake type, TLS major version 3, handshake 1."""
    return len(data) >= 6 and data[0] == _CONTENT_HANDSHAKE and data[1] == 3 and data[5] == 1


def _hkdf_expand_label(hash_name: str, secret: bytes, label: str, length: int) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

    algorithm = hashes.SHA384() if hash_name == "sha384" else hashes.SHA256()
    full = b"tls13 " + label.encode()
    info = struct.pack("!HB", length, len(full)) + full + b"\x00"
    return HKDFExpand(algorithm, length, info).derive(secret)


class _Keys:
    """One direction's AEAD with its record sequence number."""

    __slots__ = ("aead", "hash_name", "iv", "secret", "seq", "suite")

    def __init__(self, suite: int, secret: bytes) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

        cipher, hash_name, key_len = _SUITES[suite]
        self.suite = suite
        self.hash_name = hash_name
        self.secret = secret
        key = _hkdf_expand_label(hash_name, secret, "key", key_len)
        self.iv = int.from_bytes(_hkdf_expand_label(hash_name, secret, "iv", 12), "big")
        self.aead: Any = ChaCha20Poly1305(key) if cipher == "chacha20" else AESGCM(key)
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


class TlsDecryptor:
    """One TCP connection's TLS 1.3 session: ``feed(direction, data, frame_no, ts)`` -> plaintext events.

    Direction 0 is the TCP client (it sends the ClientHello).
    """

    def __init__(self, keylog: KeyLog) -> None:
        self.keylog = keylog
        self._buf = [bytearray(), bytearray()]
        self._client_random: bytes | None = None
        self._suite: int | None = None
        self._keys: list[_Keys | None] = [None, None]
        self._app_secret: list[bytes | None] = [None, None]
        self._app_phase = [False, False]
        self._dead = [False, False]
        self.skipped = [0, 0]
        self._drained_other = False

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
            if content == _CONTENT_APPDATA and self._suite is None:
                # encrypted records seen before the ServerHello (capture order): held until the keys are known
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
        if content == _CONTENT_HANDSHAKE and self._keys[direction] is None:
            return self._plain_handshake(direction, body, out)
        if content == _CONTENT_CCS:
            return True
        if content != _CONTENT_APPDATA or self._keys[direction] is None:
            if content == _CONTENT_ALERT:
                return True
            self._stop(direction, "tls_unsupported", f"content type {content} before keys were set up", out)
            return False
        keys = self._keys[direction]
        assert keys is not None
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

    def _enter_app_phase(self, direction: int) -> None:
        secret = self._app_secret[direction]
        if secret is not None and self._suite is not None:
            self._keys[direction] = _Keys(self._suite, secret)
        self._app_phase[direction] = True

    def _plain_handshake(self, direction: int, body: bytes, out: list[Any]) -> bool:
        if direction == 0 and body[:1] == b"\x01" and len(body) >= 38:
            self._client_random = body[6:38]
            return True
        if direction == 1 and body[:1] == b"\x02" and len(body) >= 39:
            sid_len = body[38]
            at = 39 + sid_len
            if len(body) < at + 2:
                self._stop(direction, "tls_malformed", "short ServerHello", out)
                return False
            suite = struct.unpack_from("!H", body, at)[0]
            if suite not in _SUITES or b"\x00\x2b\x00\x02\x03\x04" not in body:
                for d in (0, 1):
                    self._stop(d, "tls_unsupported", f"cipher suite 0x{suite:04x} / not TLS 1.3", out)
                return False
            return self._set_keys(suite, out)
        return True

    def _set_keys(self, suite: int, out: list[Any]) -> bool:
        self._suite = suite
        random = self._client_random
        for direction, (handshake_label, app_label) in enumerate(_LABELS):
            handshake = self.keylog.get(handshake_label, random) if random else None
            app = self.keylog.get(app_label, random) if random else None
            if handshake is None or app is None:
                detail = f"client random {random.hex() if random else '?'}"
                for d in (0, 1):
                    self._stop(d, "tls_no_key", detail, out)
                return False
            self._keys[direction] = _Keys(suite, handshake)
            self._app_secret[direction] = app
        return True


def load_keylogs(paths: Iterable[str | Path]) -> KeyLog | None:
    """All given key logs merged; None when there are none."""
    merged: dict[tuple[str, bytes], bytes] = {}
    any_loaded = False
    for path in paths:
        merged.update(KeyLog.load(path).secrets)
        any_loaded = True
    return KeyLog(merged) if any_loaded else None
