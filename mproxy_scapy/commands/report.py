"""``mproxy report INPUT... -o report.html``: the capture as one self-contained HTML page of charts (and PNGs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ._filters import add_filter_arguments, filter_text, frame_filter, stage_events_shown
from ._source import Source, add_file_argument, check_source, positive_int


def register(subparsers: Any) -> None:
    from ..report.model import DEFAULT_MAX_CLIENTS

    parser = subparsers.add_parser(
        "report",
        help="write one self-contained HTML page of charts: client timeline, throughput, control, problems",
        description="Draw a capture: every tunneled client on a timeline (grouped by tunnel, coloured by "
        "service, pauses and errors marked), throughput per tunnel and direction, the busiest clients, control "
        "request latency, problems over time, and sortable tables. The page inlines everything it needs: it "
        "opens offline and makes no network request. Takes the inputs and filters of dissect: several "
        "inputs (files, directories, - for standard input) are read as one capture merged by packet time.",
        epilog="Needs the report extra: pip install 'mproxy-scapy[report]'. Tokens are redacted unless "
        "--show-secrets is given.",
    )
    add_file_argument(parser, live=False)
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="HTML", help="the page to write")
    parser.add_argument("--png", type=Path, metavar="DIR",
                        help="also write each chart as DIR/NAME.png (rendered without a browser)")
    parser.add_argument("--max-clients", type=positive_int, default=DEFAULT_MAX_CLIENTS, metavar="N",
                        help="clients drawn on the timeline; past it the busiest N are drawn and the rest "
                        f"summarised (default {DEFAULT_MAX_CLIENTS})")
    add_filter_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..report import require_libraries

    require_libraries()
    from ..report.charts import chart_specs
    from ..report.images import write_pngs
    from ..report.model import ReportModel
    from ..report.output import check_writable, prepare_folder, write_atomic
    from ..report.page import render_page
    from ..report.runtime import VegaBundle

    check_writable(args.output)
    if args.png is not None:
        prepare_folder(args.png)
    bundle = VegaBundle()
    source = Source(args, keep_closed_tunnels=True)
    model = ReportModel(keep=frame_filter(args), stage_events=stage_events_shown(args),
                        show_secrets=args.show_secrets)
    for record in source:
        model.add(record)
    data = model.finish(source.totals, max_clients=args.max_clients)
    specs = chart_specs(data)
    vega_js = bundle.result() if specs else ""
    page = render_page(data, specs, files=[f.name for f in source.files], vega_js=vega_js,
                       show_secrets=args.show_secrets, selection=filter_text(args)).encode("utf-8")
    write_atomic(args.output, page)
    written = [args.output]
    if args.png is not None:
        written += write_pngs(specs, args.png)
    hidden = data["clients_hidden"]["count"]
    print(f"mproxy: wrote {', '.join(map(str, written))} ({len(page):,} bytes of HTML; "
          f"{data['clients_total']} tunneled clients" + (f", {hidden} not drawn" if hidden else "")
          + f", {len(data['tunnels'])} tunnels)", file=sys.stderr)
    check_source(source)  # a damaged capture: the page shows what was decoded, and the run fails (exit 2)
    return 0
