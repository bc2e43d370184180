"""The Wireshark side of mproxy-scapy: the Lua dissector generated from the spec, and helpers around it."""

from __future__ import annotations

from .capture import dissector_path, file_capture, isolated_environment
from .generator import generate_lua
from .install import install, personal_plugin_dir, uninstall

__all__ = ["dissector_path", "file_capture", "generate_lua", "install", "isolated_environment",
           "personal_plugin_dir", "uninstall"]
