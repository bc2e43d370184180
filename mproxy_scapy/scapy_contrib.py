# scapy.contrib.description = M-PROXY tunnel protocol (proxy-packer, telebit)
# scapy.contrib.status = loads
"""``load_contrib("mproxy")``: the MProxy layers and ``MProxySession`` / ``rdmproxy``, once
``conf.exts.load("mproxy-scapy")`` registered them.

Scapy executes this file as ``scapy.contrib.mproxy``; it re-exports
``mproxy_scapy.layer`` and ``mproxy_scapy.scapy_session`` so there is one set
of layer classes and bindings.
"""

from mproxy_scapy.layer import MProxy, MProxyControl, MProxyError, bind, unbind
from mproxy_scapy.scapy_session import MProxySession, rdmproxy

__all__ = ["MProxy", "MProxyControl", "MProxyError", "MProxySession", "bind", "rdmproxy", "unbind"]
