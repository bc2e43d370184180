"""Regenerate every capture in captures/ from a real M-PROXY tunnel on loopback.

    python captures/record.py            # all captures, into captures/
    python captures/record.py --out DIR  # somewhere else (the slow test does this)

Needs root (or tcpdump capabilities), tcpdump, editcap, node and npm; see captures/README.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

try:
    from recorder.main import main
except ImportError as exc:
    sys.exit(f"record.py: missing Python package {exc.name!r}: run  pip install -e '.[test]'  first")

if __name__ == "__main__":
    sys.exit(main(argparse.ArgumentParser(description=__doc__.splitlines()[0])))
