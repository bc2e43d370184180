"""The "ws" heuristic: WebSocket messages from Wireshark's own websocket dissector, reassembled across messages.

Normally our own unframer takes a tunnel's WebSocket connection. This test
gives the connection back to Wireshark (the tcp heuristic off, http.upgrade
"websocket" pointed at Wireshark's websocket dissector, Decode As http on the
tunnel port), so each message reaches the "ws" heuristic list, as it does for
anyone who decodes the tunnel as WebSocket by hand. The relay sends a frame's
header and body as two messages; the frames must still come out whole and
equal to the decoder's. Only the packet numbers may differ: a message is
handed over when it is complete, the decoder streams payload as it arrives.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from wireshark.conftest import CAPTURES
from wireshark.decoders import COMPARED, python_records
from wireshark.matrix import Version
from wireshark.tshark_records import records_from_json, run_tshark

pytestmark = pytest.mark.tshark


def test_messages_are_reassembled_into_the_decoders_frames(tshark_home: Path, wireshark: Version) -> None:
    pcap = CAPTURES / "websocket.pcap"
    (tshark_home / "config" / "heuristic_protos").write_text("mproxy_tcp,0\n")
    give_back = tshark_home / "websocket_back.lua"
    give_back.write_text('DissectorTable.get("http.upgrade"):add("websocket", Dissector.get("websocket"))\n')
    port = run_tshark(["-r", str(pcap), "-c", "1", "-T", "fields", "-e", "tcp.dstport"], tshark_home,
                      wireshark).stdout.strip()
    result = run_tshark(["-X", f"lua_script:{give_back}", "-r", str(pcap), "-d", f"tcp.port=={port},http",
                         "-2", "-R", "frame", "-o", "mproxy.show_tokens:TRUE", "-T", "json", "--no-duplicate-keys",
                         "-J", "frame ip ipv6 tcp mproxy websocket"], tshark_home, wireshark)
    assert result.returncode == 0 and result.stderr == ""
    assert '"websocket"' in result.stdout
    lua = records_from_json(result.stdout)
    python = python_records(pcap)

    def key(record: dict) -> tuple:
        return record["src"], record["offset"]

    fields = [k for k in COMPARED if k not in ("pcap_frame", "reply_to")]
    assert [[r.get(k) for k in fields] for r in sorted(lua, key=key)] == \
        [[r.get(k) for k in fields] for r in sorted(python, key=key)]
    continuation = run_tshark(["-X", f"lua_script:{give_back}", "-r", str(pcap), "-d", f"tcp.port=={port},http",
                               "-2", "-R", "frame", "-Y", "mproxy.reassembled_in || mproxy.header_in", "-T",
                               "fields", "-e", "mproxy.header_in", "-e", "mproxy.reassembled_in"], tshark_home,
                              wireshark)
    assert continuation.stdout.strip(), "no record links the message that held its header"
