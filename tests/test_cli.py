"""The ``mproxy`` command itself: its version and its top-level help."""

from __future__ import annotations

import importlib.metadata
import platform

from cli_run import mproxy

import mproxy_scapy


def test_version_names_mproxy_python_and_scapy():
    result = mproxy("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (f"mproxy {mproxy_scapy.__version__} (Python {platform.python_version()}, "
                             f"Scapy {importlib.metadata.version('scapy')})\n")


def test_the_package_version_is_the_installed_distributions():
    assert importlib.metadata.version("mproxy-scapy") == mproxy_scapy.__version__


def test_top_level_help_offers_version():
    result = mproxy("--help")
    assert result.returncode == 0 and "--version" in result.stdout
