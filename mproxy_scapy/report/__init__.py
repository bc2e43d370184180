"""``mproxy report``: a capture as one self-contained HTML page of charts and tables (and PNGs).

``model`` aggregates while the records stream (on top of the ``stats``
session tracker), ``charts`` turns its data into Vega-Lite specs, ``page``
inlines them with the Vega runtime (``runtime``) into one HTML file,
``images`` renders them to PNG, ``output`` writes files whole or not at all. Altair and
vl-convert come with the ``report`` extra; ``require_libraries`` says so
when they are missing.
"""

from __future__ import annotations

from ..errors import UserError

INSTALL_HINT = "mproxy report needs the report extra: pip install 'mproxy-scapy[report]' (altair, vl-convert-python)"


def require_libraries() -> None:
    """A one-line UserError when the charting libraries of the ``report`` extra are not installed."""
    try:
        import altair  # noqa: F401
        import vl_convert  # noqa: F401
    except ImportError:
        raise UserError(INSTALL_HINT) from None
