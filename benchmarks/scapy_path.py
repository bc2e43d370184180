"""Scapy's own way to read M-PROXY from a capture: ``sniff(offline=..., session=TCPSession)``.

The MProxy layer is bound to the tunnel port with ``mproxy_scapy.layer.bind``; Scapy's
``TCPSession`` reassembles each TCP stream and calls ``MProxy.tcp_reassemble`` until a
whole frame is there. This is the baseline a Scapy user gets without ``mproxy dissect``.

Prints the number of M-PROXY layers seen, so the harness can check the path worked.
"""

from __future__ import annotations

import argparse
import sys

from scapy.all import TCPSession, sniff

from mproxy_scapy.layer import MProxy, bind


def count_frames(path: str, port: int) -> int:
    bind(port)
    frames = 0

    def seen(packet: object) -> None:
        nonlocal frames
        layer = packet.getlayer(MProxy)  # type: ignore[attr-defined]
        while layer is not None:
            frames += 1
            layer = layer.payload.getlayer(MProxy)

    sniff(offline=path, session=TCPSession, store=False, prn=seen)
    return frames


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("capture")
    parser.add_argument("--port", type=int, required=True, help="tunnel TCP port to bind the MProxy layer to")
    args = parser.parse_args()
    print(count_frames(args.capture, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
