"""TLS 1.2 decryption from CLIENT_RANDOM lines: the PRF against independent implementations, real sessions
made with Python's ssl (OpenSSL) for each AEAD suite and for the suites reported unsupported, and key log lines
that cannot be used."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_tls import TUN
from tls_session import decode_session, session_capture, tls_session

from mproxy_scapy.codec import pack
from mproxy_scapy.decoder import DecodedFrame, Decoder, StageEvent, decode_capture
from mproxy_scapy.parser import iter_frames
from mproxy_scapy.tls import KeyLog, tls12_prf

from support import CAPTURES

PUBLISHED_SHA256 = (  # the TLS 1.2 PRF test vector posted to the IETF TLS list (no official one exists)
    "9bbe436ba940f017b17652849a71db35", "test label", "a0ba9f936cda311827a6f796ffd5198c",
    "e3f229ba727be17b8d122620557cd453c2aab21d07c3d495329b52d4e61edb5a6b301791e90d35c9c9a46b4e14baf9af"
    "0fa022f7077def17abfd3797c0564bab4fbc91666e9def9b97fce34f796789baa48082d122ee42c5a72e5a5110fff7018734"
    "7b66",
)


def test_the_prf_gives_the_published_vector():
    secret, label, seed, expected = PUBLISHED_SHA256
    assert tls12_prf("sha256", bytes.fromhex(secret), label.encode(), bytes.fromhex(seed), 100).hex() == expected


def openssl_prf(digest: str, secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """OpenSSL's own TLS1-PRF (``openssl kdf``): an implementation that shares no code with ours."""
    if shutil.which("openssl") is None:
        pytest.fail("the openssl command is needed to cross-check the TLS 1.2 PRF (apt-get install openssl)")
    result = subprocess.run(
        ["openssl", "kdf", "-keylen", str(length), "-kdfopt", f"digest:{digest}", "-kdfopt",
         f"hexsecret:{secret.hex()}", "-kdfopt", f"hexseed:{(label + seed).hex()}", "TLS1-PRF"],
        capture_output=True, text=True, timeout=30, check=True)
    return bytes.fromhex(result.stdout.strip().replace(":", ""))


@settings(max_examples=12, deadline=None)
@given(digest=st.sampled_from(["sha256", "sha384"]), secret=st.binary(min_size=1, max_size=64),
       label=st.sampled_from([b"key expansion", b"master secret", b"client finished"]),
       seed=st.binary(min_size=1, max_size=80), length=st.integers(1, 200))
def test_the_prf_agrees_with_openssl(digest, secret, label, seed, length):
    assert tls12_prf(digest, secret, label, seed, length) == openssl_prf(digest.upper(), secret, label, seed, length)


def tls12_session(directory, to_server: bytes, to_client: bytes, ciphers: str, *, ems: bool = True):
    """Wire bytes each way of a real TLS 1.2 session with one of ``ciphers``, its key log, and the suite."""
    up, down, keylog, client = tls_session(directory, to_server, to_client, ciphers=ciphers, tls12=True, ems=ems)
    assert client.version() == "TLSv1.2"
    return up, down, keylog, client.cipher()[0]


def decode_tls12(tmp_path, up: bytes, down: bytes, keylog: KeyLog):
    return decode_session(session_capture(tmp_path / "tls12.pcap", up, down), keylog)


TO_SERVER = b"".join(pack(TUN, bytes([97 + i % 26]) * (100 + 3000 * i)) for i in range(5))
TO_CLIENT = pack(None, [1, "hello", 254, []], "control") + pack(TUN, b"reply", None)


@pytest.mark.parametrize("ciphers, suite", [
    ("ECDHE-RSA-AES128-GCM-SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
    ("ECDHE-ECDSA-AES256-GCM-SHA384", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
    ("ECDHE-ECDSA-CHACHA20-POLY1305", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
    ("ECDHE-RSA-CHACHA20-POLY1305", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256"),
    ("ECDHE-ECDSA-AES128-GCM-SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
])
def test_a_tls12_aead_session_decodes_from_its_client_random_line(tmp_path, ciphers, suite):
    up, down, keylog, _ = tls12_session(tmp_path, TO_SERVER, TO_CLIENT, ciphers)
    assert "CLIENT_RANDOM" in keylog.read_text()
    decoder, records = decode_tls12(tmp_path, up, down, KeyLog.load(keylog))
    frames = [r for r in records if isinstance(r, DecodedFrame)]
    assert [(r.frame.kind, r.frame.body) for r in frames if r.direction == 0] == [
        (f.kind, f.body) for f in iter_frames(TO_SERVER)]
    assert [(r.frame.kind, r.frame.body) for r in frames if r.direction == 1] == [
        (f.kind, f.body) for f in iter_frames(TO_CLIENT)]
    assert not decoder.problem_counts
    # OpenSSL negotiates the extended master secret by default; the CLIENT_RANDOM line is its result
    assert decoder.tunnels[1].carrier_info["tls"] == f"TLS 1.2 {suite}, extended master secret, decrypted with " \
        "the key log"


def test_a_session_without_the_extended_master_secret_decodes_too(tmp_path):
    up, down, keylog, _ = tls12_session(tmp_path, TO_SERVER, TO_CLIENT, "ECDHE-RSA-AES256-GCM-SHA384", ems=False)
    decoder, records = decode_tls12(tmp_path, up, down, KeyLog.load(keylog))
    assert len([r for r in records if isinstance(r, DecodedFrame)]) == len(iter_frames(TO_SERVER)) + len(
        iter_frames(TO_CLIENT))
    assert not decoder.problem_counts
    assert decoder.tunnels[1].carrier_info["tls"] == ("TLS 1.2 TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, decrypted with "
                                                      "the key log")


@pytest.mark.parametrize("ciphers, named", [
    ("ECDHE-RSA-AES128-SHA256", "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256 (0xc027): CBC suites are not decrypted"),
    ("AES128-GCM-SHA256", "TLS_RSA_WITH_AES_128_GCM_SHA256 (0x009c): only ECDHE key exchange"),
])
def test_a_cbc_or_rsa_session_is_reported_unsupported_with_its_suite(tmp_path, ciphers, named):
    up, down, keylog, _ = tls12_session(tmp_path, TO_SERVER, TO_CLIENT, ciphers)
    _, records = decode_tls12(tmp_path, up, down, KeyLog.load(keylog))
    problems = [r for r in records if isinstance(r, StageEvent) and r.is_problem]
    assert {p.kind for p in problems} == {"tls_unsupported"}
    assert all(named in p.detail for p in problems), [p.detail for p in problems]
    assert not [r for r in records if isinstance(r, DecodedFrame)]


def test_a_key_log_with_bad_lines_names_each_and_the_usable_line_still_decrypts(tmp_path):
    up, down, keylog, _ = tls12_session(tmp_path, TO_SERVER, TO_CLIENT, "ECDHE-RSA-AES128-GCM-SHA256")
    good = next(line for line in keylog.read_text().splitlines() if line.startswith("CLIENT_RANDOM"))
    _, random, secret = good.split()
    other = "ab" * 32
    lines = [
        "# a comment",
        good[:-10],                                     # 2: cut short: the secret is 43 bytes
        "CLIENT_RANDOM " + random,                      # 3: a field missing
        f"CLIENT_RANDOM {random[:40]} {secret}",        # 4: the client random cut
        f"CLIENT_RANDOM zz{random[2:]} {secret}",       # 5: not hex
        f"SERVER_RANDOM {random} {secret}",             # 6: no such label
        good,                                           # 7: used
        good,                                           # 8: the same again
        f"CLIENT_RANDOM {random} {other * 1}{'cd' * 16}",  # 9: the same session, another secret
    ]
    messy = tmp_path / "messy.keys"
    messy.write_text("\n".join(lines) + "\n")
    loaded = KeyLog.load(messy)
    assert [w.split(": ", 1)[0] for w in loaded.warnings] == [f"{messy}:{n}" for n in (2, 3, 4, 5, 6, 8, 9)]
    assert "the secret is 43 bytes, not 48" in loaded.warnings[0]
    assert "found 2 fields" in loaded.warnings[1]
    assert "the client random is 20 bytes, not 32" in loaded.warnings[2]
    assert "not hex" in loaded.warnings[3]
    assert "unknown label 'SERVER_RANDOM'" in loaded.warnings[4]
    assert "repeats line 7" in loaded.warnings[5]
    assert "differs from line 7: line 7 is used" in loaded.warnings[6]
    decoder, records = decode_tls12(tmp_path, up, down, loaded)
    assert len([r for r in records if isinstance(r, DecodedFrame)]) == len(iter_frames(TO_SERVER)) + len(
        iter_frames(TO_CLIENT))
    assert not decoder.problem_counts


def test_the_cli_prints_each_unusable_key_log_line_and_decodes_on(tmp_path):
    messy = tmp_path / "messy.keys"
    messy.write_text((CAPTURES / "wss.keys").read_text() + "CLIENT_RANDOM 00 " + "11" * 48 + "\n")
    run = subprocess.run([sys.executable, "-m", "mproxy_scapy.cli", "dissect", "--json", "--tls-keylog", str(messy),
                          str(CAPTURES / "wss.pcapng")], capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    lines = (CAPTURES / "wss.keys").read_text().count("\n") + 1
    assert f"mproxy: warning: {messy}:{lines}: CLIENT_RANDOM: the client random is 1 bytes, not 32" in run.stderr
    assert len(run.stdout.splitlines()) == 51


def test_the_recorded_tls12_capture_decrypts_from_the_devices_own_key_log():
    decoder = Decoder(keylog=KeyLog.load(CAPTURES / "wss-tls12.keys"), keep_closed_tunnels=True)
    frames = [r for r in decode_capture(CAPTURES / "wss-tls12.pcapng", decoder=decoder)
              if isinstance(r, DecodedFrame)]
    assert len(frames) == 47 and not decoder.problem_counts
    (tunnel,) = decoder.tunnels.values()
    assert tunnel.carrier_info["tls"] == ("TLS 1.2 TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, extended master secret, "
                                          "decrypted with the key log")
