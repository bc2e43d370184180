"""The Scapy extension entry point (Scapy >= 2.6 ``conf.exts.load("mproxy-scapy")``).

Scapy's loader imports each package named in the distribution's
``top_level.txt`` and calls its ``scapy_ext(plg)``; the contrib module
registered here is what ``load_contrib("mproxy")`` then imports. Nothing
here imports Scapy, so the package stays cheap to import without it.
"""

from __future__ import annotations

import pathlib
from typing import Any

CONTRIB_NAME = "mproxy"
_CONTRIB_FILE = pathlib.Path(__file__).with_name("scapy_contrib.py")


def scapy_ext(plg: Any) -> None:
    """Called by Scapy's ExtsManager with a ``ScapyExt`` to fill in."""
    from . import __version__

    plg.config("mproxy-scapy", __version__)
    plg.register(name=CONTRIB_NAME, mode=plg.MODE.CONTRIB, path=_CONTRIB_FILE, default=False)
