"""mproxy-scapy: analyzer for the M-PROXY tunnel protocol (proxy-packer, telebit).

``from mproxy_scapy import *`` gives the codec and, when Scapy is importable,
the ``MProxy`` layers with ``bind``/``unbind`` and the ``MProxySession`` /
``rdmproxy`` decoding for ``sniff()``, as ``load_contrib("mproxy")`` does.
"""

from __future__ import annotations

import importlib.util
from typing import Any

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
from .extension import scapy_ext as scapy_ext

__version__ = "0.1.0"

__all__ = [
    "ClientPacker", "Frame", "FrameParser", "Problem", "Unpacker", "addr_to_id", "iter_frames",
    "pack", "pack_header", "socket_to_addr", "socket_to_id",
]

_SCAPY_NAMES = ("MProxy", "MProxyControl", "MProxyError", "bind", "unbind")
_SESSION_NAMES = ("MProxySession", "rdmproxy")
if importlib.util.find_spec("scapy") is not None:
    __all__ += _SCAPY_NAMES + _SESSION_NAMES


def __getattr__(name: str) -> Any:
    """The Scapy layers, ``bind``/``unbind`` and the session load on first use: the CLI's fast path never imports
    Scapy."""
    if name in _SCAPY_NAMES:
        from . import layer

        return getattr(layer, name)
    if name in _SESSION_NAMES:
        from . import scapy_session

        return getattr(scapy_session, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
