"""The Arrow schema of ``mproxy export``: every table, column, type, nullability and meaning, declared once.

The Parquet writer (``export.py``), the Dask frames meta (``distributed.py``)
and the table reference in docs/EXPORT.md (``python -m mproxy_scapy.export_schema
--write docs/EXPORT.md``) are all made from ``TABLES``; a test fails when the doc
is not what this makes. Types are written as Arrow prints them, so the
declaration needs no pyarrow to be read (the doc is made without it) and a test
checks that each text is the type pyarrow builds for it.

Bump ``SCHEMA_VERSION`` on any change a reader could notice (a column renamed,
removed, retyped or given another meaning); adding a column is a change too.
The version is stored in every Parquet file's key-value metadata.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, NamedTuple

SCHEMA_VERSION = "1"
VERSION_KEY = "mproxy.schema_version"
TABLE_KEY = "mproxy.table"
DESCRIPTION_KEY = "description"


class Column(NamedTuple):
    name: str
    type: str
    """The Arrow type as pyarrow prints it (``int64``, ``double``, ``list<element: ...>``)."""
    nullable: bool
    meaning: str


class Table(NamedTuple):
    name: str
    row: str
    """What one row is."""
    columns: tuple[Column, ...]


PROBLEM_LIST = "list<element: struct<kind: string, detail: string>>"
"""Named ``element`` as Parquet names list items, so a file read back has the type declared here."""

_FILE = Column("pcap_file", "string", True,
               "The capture file that held the packet (as given on the command line); null for standard input.")

FRAMES = Table("frames", "one decoded record of an M-PROXY stream, as a `dissect --json` line that is not a `stage` "
               "record: a frame, or (`kind` `garbage` / `gap`) bytes that are not one", (
    _FILE,
    Column("pcap_frame", "int64", False, "Number (from 1) of the packet that completed the record."),
    Column("ts", "double", False, "That packet's time, seconds since 1970-01-01 UTC (DuckDB: `to_timestamp(ts)`)."),
    Column("carrier", "string", False, "How the tunnel carries M-PROXY: `tcp` or `websocket`."),
    Column("tunnel", "int64", False, "The tunnel: the TCP connection's number in the capture (from 1)."),
    Column("direction", "int8", False, "0: tunnel client (device) to tunnel server (relay); 1: the other way."),
    Column("src", "string", False, "Sender of this direction, `ip:port` (`[v6]:port`)."),
    Column("dst", "string", False, "Receiver of this direction."),
    Column("offset", "int64", False, "Where the record starts in this direction's M-PROXY byte stream."),
    Column("length", "int64", False, "Bytes of the stream the record covers (header, body and any lost bytes)."),
    Column("version", "int64", True, "Version byte (254 = 0xFE, v1); null for garbage and gap records."),
    Column("hdrlen", "int64", True, "Header length byte."),
    Column("family", "string", True, "Header field: `IPv4` / `IPv6` of the tunneled client (empty for control)."),
    Column("address", "string", True, "Header field: the tunneled client's address."),
    Column("port", "int64", True, "Header field: the tunneled client's port; null when not a number (or past int64)."),
    Column("datalen", "int64", True, "Header field: the body length the header declares; null when unreadable."),
    Column("service", "string", True, "Header field: service (`http`, `tls`, `control`, `end`, `error`, ...)."),
    Column("serviceport", "int64", True, "Header field: the port the client reached on the relay."),
    Column("name", "string", True, "Header field: the routed name (SNI or Host)."),
    Column("servicename", "string", True, "Header field: the service the relay named on a `connection` frame."),
    Column("kind", "string", False, "`data`, `connection`, `control`, `end`, `error`, `pause`, `resume`, `garbage` "
           "or `gap`."),
    Column("dialect", "string", True, "`js` (proxy-packer) or `go` header dialect."),
    Column("client_id", "string", True, "The tunneled client, `family,address,port`; null for control and "
           "non-frames."),
    Column("body_len", "int64", False, "Body bytes that passed (lost bytes not counted)."),
    Column("body_sha256", "string", True, "sha256 of the body (hex); null when not all of it was seen."),
    Column("problems", PROBLEM_LIST, False, "The record's M-PROXY problems, as in `dissect --json` (kinds: "
           "README, Field reference)."),
    Column("control", "string", True, "Control frames: the body's JSON as text, tokens redacted unless "
           "`--show-secrets`; null when the body is not JSON or the frame is not a control frame."),
    Column("error", "string", True, "Error frames: the body's JSON as text (redacted likewise)."),
    Column("reply_to", "int64", True, "Control replies: `pcap_frame` of the request it answers."),
    Column("reply_time", "double", True, "Control replies: seconds since that request."),
    Column("body", "binary", True, "The body, only with `--bodies` (else null); also null when it was not held "
           "(over `--max-frame-held`, or bytes lost). Secrets are masked with `*` (same length) and a secret "
           "control command's arguments replaced, unless `--show-secrets`."),
))

CLIENTS = Table("clients", "one tunneled client connection (a session of `mproxy stats`): from its first frame "
                "to its `end` or `error` (a later `connection` frame for the same client id starts a new row)", (
    Column("tunnel", "int64", False, "The tunnel that carried it (`frames.tunnel`)."),
    Column("client", "string", False, "`family,address,port` (the reference's `addrToId`)."),
    Column("family", "string", False, "`IPv4` or `IPv6` (empty when the header had none)."),
    Column("address", "string", False, "The client's address."),
    Column("port", "int64", True, "The client's port."),
    Column("service", "string", False, "The service it reached: the `connection` frame's servicename, else the "
           "first data frame's service (as `mproxy stats`)."),
    Column("name", "string", False, "The routed name (SNI or Host), from its first frame that has one."),
    Column("serviceport", "int64", True, "The relay port it reached."),
    Column("inbound", "int8", False, "The tunnel direction that carries the client's own bytes (`frames.direction`)."),
    Column("first_file", "string", True, "Capture file of its first frame (null for standard input)."),
    Column("first_frame", "int64", False, "`pcap_frame` of its first frame."),
    Column("first_ts", "double", False, "Time of its first frame (seconds since 1970, UTC)."),
    Column("last_file", "string", True, "Capture file of its last frame."),
    Column("last_frame", "int64", False, "`pcap_frame` of its last frame."),
    Column("last_ts", "double", False, "Time of its last frame."),
    Column("duration", "double", False, "`last_ts - first_ts`."),
    Column("frames_in", "int64", False, "Frames in the inbound direction (`stats` `frames_in`)."),
    Column("frames_out", "int64", False, "Frames the other way (`stats` `frames_out`)."),
    Column("bytes_in", "int64", False, "Data body bytes from the client (`stats` `bytes_in`)."),
    Column("bytes_out", "int64", False, "Data body bytes to the client (`stats` `bytes_out`)."),
    Column("ended_by", "string", False, "`end`, `error` or `open at capture end`."),
    Column("error", "string", False, "The error frame's message, when it ended by `error` (else empty)."),
    Column("pauses", "int64", False, "`pause` frames."),
    Column("resumes", "int64", False, "`resume` frames."),
))

TUNNELS = Table("tunnels", "one TCP connection that carries M-PROXY", (
    Column("tunnel", "int64", False, "The tunnel's number (`frames.tunnel`)."),
    Column("first_file", "string", True, "Capture file of its first M-PROXY bytes (null for standard input)."),
    Column("client", "string", False, "Tunnel client (device) `ip:port`."),
    Column("server", "string", False, "Tunnel server (relay) `ip:port`."),
    Column("carrier", "string", False, "`tcp` or `websocket`."),
    Column("carrier_info", "map<string, string>", False, "What the carrier detection found (upgrade path, URL, "
           "TLS, ...); tokens redacted unless `--show-secrets`."),
    Column("frames_c2s", "int64", False, "Records (frames, garbage, gaps) client to server."),
    Column("frames_s2c", "int64", False, "Records server to client."),
    Column("bytes_c2s", "int64", False, "M-PROXY stream bytes client to server."),
    Column("bytes_s2c", "int64", False, "M-PROXY stream bytes server to client."),
    Column("sessions", "int64", False, "Rows of `clients` with this tunnel."),
    Column("first_ts", "double", True, "Time of its first M-PROXY bytes."),
    Column("last_ts", "double", True, "Time of its last M-PROXY bytes."),
    Column("duration", "double", False, "`last_ts - first_ts` (0 when it carried no bytes)."),
    Column("closed", "string", False, "How the TCP connection ended: `fin`, `rst`, `evicted`, `reused`, "
           "`capture_end`."),
))

CONTROL = Table("control", "one control request (`id > 0`) and its reply (`id < 0`, the other way on the same "
                "tunnel) when one came; unanswered requests, and replies to no request seen, too", (
    Column("tunnel", "int64", False, "The tunnel."),
    Column("direction", "int8", False, "The request's direction (for an unmatched reply: the way its request would "
           "have gone)."),
    Column("id", "int64", False, "The request id (a reply carries its negative)."),
    Column("command", "string", False, "The request's command (`hello`, `auth`, ...); empty for an unmatched reply."),
    Column("request", "string", True, "The request body's JSON as text, redacted unless `--show-secrets`; null for "
           "an unmatched reply."),
    Column("request_file", "string", True, "Capture file of the request."),
    Column("request_frame", "int64", True, "`pcap_frame` of the request."),
    Column("request_ts", "double", True, "Time of the request."),
    Column("reply", "string", True, "The reply body's JSON as text (redacted likewise); null when unanswered."),
    Column("reply_file", "string", True, "Capture file of the reply."),
    Column("reply_frame", "int64", True, "`pcap_frame` of the reply."),
    Column("reply_ts", "double", True, "Time of the reply."),
    Column("latency", "double", True, "`reply_ts - request_ts`, seconds."),
    Column("outcome", "string", False, "`ok`, the failed reply's code or message, `unanswered`, or "
           "`unmatched_reply`."),
))

PROBLEMS = Table("problems", "one problem: of an M-PROXY record (`frames.problems`) or of an earlier stage "
                 "(capture file, TCP, TLS, carrier: a `stage` record of `dissect --json`)", (
    _FILE,
    Column("pcap_frame", "int64", True, "The packet it was found at (null when no packet is named)."),
    Column("ts", "double", True, "That packet's time."),
    Column("tunnel", "int64", True, "The tunnel (TCP connection), when it is about one."),
    Column("direction", "int8", True, "The direction, when it is about one."),
    Column("src", "string", True, "Sender of that direction."),
    Column("dst", "string", True, "Receiver of that direction."),
    Column("stage", "string", False, "`mproxy` (a record's problem), `capture`, `tcp`, `tls` or `carrier`."),
    Column("kind", "string", False, "The key `mproxy stats` counts it under: the M-PROXY kind (`bad_version`), "
           "or `stage.kind` (`tcp.gap`)."),
    Column("detail", "string", False, "What exactly (stage details redacted unless `--show-secrets`)."),
    Column("offset", "int64", True, "For an M-PROXY record's problem: the record's `frames.offset`."),
    Column("nbytes", "int64", True, "For a stage problem: the bytes it is about (lost, skipped), else null."),
))

TABLES: dict[str, Table] = {t.name: t for t in (FRAMES, CLIENTS, TUNNELS, CONTROL, PROBLEMS)}


def _arrow_types() -> dict[str, Any]:
    import pyarrow as pa

    problem = pa.list_(pa.field("element", pa.struct([("kind", pa.string()), ("detail", pa.string())])))
    return {"int64": pa.int64(), "int8": pa.int8(), "double": pa.float64(), "string": pa.string(),
            "binary": pa.binary(), PROBLEM_LIST: problem, "map<string, string>": pa.map_(pa.string(), pa.string())}


def arrow_schema(table: str) -> Any:
    """The ``pyarrow.Schema`` of one table, with each column's meaning and the schema version as metadata."""
    import pyarrow as pa

    types = _arrow_types()
    spec = TABLES[table]
    fields = [pa.field(c.name, types[c.type], nullable=c.nullable, metadata={DESCRIPTION_KEY: c.meaning})
              for c in spec.columns]
    return pa.schema(fields, metadata={VERSION_KEY: SCHEMA_VERSION, TABLE_KEY: table})


BEGIN = "<!-- export-schema:begin (generated by python -m mproxy_scapy.export_schema --write docs/EXPORT.md) -->"
END = "<!-- export-schema:end -->"


def schema_doc() -> str:
    """The markdown reference of every table, in declaration order."""
    out = [f"Schema version **{SCHEMA_VERSION}** (Parquet key-value metadata `{VERSION_KEY}`; each file also "
           f"names its table under `{TABLE_KEY}`, and each column's meaning is its Arrow field metadata "
           f"`{DESCRIPTION_KEY}`)."]
    for spec in TABLES.values():
        out += ["", f"### `{spec.name}`", "", f"One row: {spec.row}.", "",
                "| column | Arrow type | null? | meaning |", "|---|---|---|---|"]
        out += [f"| `{c.name}` | `{c.type}` | {'yes' if c.nullable else 'no'} | {c.meaning} |" for c in spec.columns]
    return "\n".join(out)


def with_schema_doc(text: str) -> str:
    """``text`` with the generated reference between the markers (which must both be present)."""
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[:start] + "\n" + schema_doc() + "\n" + text[end:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", type=Path, metavar="EXPORT.md", help="update the reference in this file")
    args = parser.parse_args()
    if args.write:
        args.write.write_text(with_schema_doc(args.write.read_text()))
    else:
        print(schema_doc())


if __name__ == "__main__":
    main()
