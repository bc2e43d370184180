"""The capture recorder: a real M-PROXY relay and device on loopback, recorded by tcpdump.

Run it with ``python captures/record.py`` (see captures/README.md). Each module does one
job: pacing the tunnel's writes, the truth log, the tunnel links, the relay, the device,
the services behind the device, the browser clients, tcpdump, and the impaired rewrite.
"""
