"""Differential testing of a packer under test against proxy-packer 2.0.4 (``mproxy conform``).

The oracle is our codec (``codec.pack``/``pack_header``/``Unpacker``), which is
byte-exact with the reference. Cases are line-protocol requests
(docs/CONFORMANCE.md): the reference vectors, named edge cases, then random
ones from Hypothesis. A divergence is shrunk while it still breaks the same
reference behaviour (``rules.BEHAVIOURS``), then reported with both outputs
and a hexdump diff.

- ``packer``: the child process and the line protocol's transport;
- ``oracle``: what the reference answers; ``judge``: a case run and named;
- ``shrink``: minimising a divergence; ``cases``: the named cases;
- ``strategies``: the random cases; ``engine``: a whole run; ``report``: its output.
"""

from .cases import BASE_META, REFERENCE_DATA, named_cases
from .engine import CaseResult, Divergence, Report, run
from .oracle import Case, Refused, expected_events, expected_wire, stream_of
from .shrink import shrink

__all__ = ["BASE_META", "REFERENCE_DATA", "Case", "CaseResult", "Divergence", "Refused", "Report", "expected_events",
           "expected_wire", "named_cases", "run", "shrink", "stream_of"]
