"""Each chart as a PNG, rendered without a browser (``vl-convert``'s embedded Vega), for tickets and mail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .output import prepare_folder, write_atomic

PNG_SCALE = 1
"""Pixels per CSS pixel. 2 looks sharper but takes vl-convert four times as long (10 s for the timeline of
2000 clients), so 1: the chart as the page shows it."""


def write_pngs(specs: dict[str, dict[str, Any]], folder: Path) -> list[Path]:
    """``NAME.png`` in ``folder`` per chart; returns the files written."""
    import vl_convert

    prepare_folder(folder)
    written = []
    for name, spec in specs.items():
        path = folder / f"{name}.png"
        write_atomic(path, vl_convert.vegalite_to_png(spec, scale=PNG_SCALE))
        written.append(path)
    return written
