"""mproxy-scapy: analyzer for the M-PROXY tunnel protocol (proxy-packer, telebit).

``from mproxy_scapy import *`` gives the codec and, when Scapy is importable,
the ``MProxy`` layer, as a Scapy contrib module would.
"""

from __future__ import annotations

from .codec import (
    ClientPacker,
    Frame,
    FrameParser,
    Problem,
    Unpacker,
    addr_to_id,
    iter_frames,
    pack,
    pack_header,
    socket_to_addr,
    socket_to_id,
)

__version__ = "0.1.0"

__all__ = [
    "ClientPacker", "Frame", "FrameParser", "Problem", "Unpacker", "addr_to_id", "iter_frames",
    "pack", "pack_header", "socket_to_addr", "socket_to_id",
]
