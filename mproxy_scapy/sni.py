"""The server name of a TLS ClientHello, as the npm ``sni`` module finds it.

Used by ``mproxy pack`` (the reference names a frame by its body's SNI) and the
recorder; returns None for anything that is not a ClientHello with SNI.
"""

from __future__ import annotations

import struct

_HANDSHAKE = 0x16
_CLIENT_HELLO = 0x01
_EXT_SERVER_NAME = 0x0000
_HOST_NAME = 0x00


def client_hello_sni(data: bytes) -> str | None:
    try:
        return _parse(memoryview(data))
    except (IndexError, struct.error, UnicodeDecodeError):
        return None


def _parse(view: memoryview) -> str | None:
    if len(view) < 5 or view[0] != _HANDSHAKE:
        return None
    pos = 5
    if view[pos] != _CLIENT_HELLO:
        return None
    pos += 4 + 2 + 32
    pos += 1 + view[pos]
    (cipher_len,) = struct.unpack_from("!H", view, pos)
    pos += 2 + cipher_len
    pos += 1 + view[pos]
    (ext_total,) = struct.unpack_from("!H", view, pos)
    pos += 2
    end = min(pos + ext_total, len(view))
    while pos + 4 <= end:
        ext_type, ext_len = struct.unpack_from("!HH", view, pos)
        pos += 4
        if ext_type == _EXT_SERVER_NAME:
            list_end = pos + 2 + struct.unpack_from("!H", view, pos)[0]
            item = pos + 2
            while item + 3 <= list_end:
                name_type, name_len = view[item], struct.unpack_from("!H", view, item + 1)[0]
                if name_type == _HOST_NAME:
                    return bytes(view[item + 3 : item + 3 + name_len]).decode("ascii")
                item += 3 + name_len
            return None
        pos += ext_len
    return None
