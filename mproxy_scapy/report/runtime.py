"""The Vega runtime the page inlines, bundled by vl-convert while the capture decodes."""

from __future__ import annotations

import threading


class VegaBundle:
    """Vega, Vega-Lite and Vega-Embed in one script, at the Vega-Lite version Altair writes.

    Bundling takes vl-convert about 2 s, in native code that releases the GIL:
    it runs in a thread while the capture decodes.
    """

    def __init__(self) -> None:
        self._script: str | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._make, name="vega-bundle", daemon=True)
        self._thread.start()

    def _make(self) -> None:
        import altair
        import vl_convert

        version = ".".join(altair.SCHEMA_VERSION.lstrip("v").split(".")[:2])
        try:
            available = vl_convert.get_vegalite_versions()
            self._script = vl_convert.javascript_bundle(vl_version=version if version in available else None)
        except Exception as exc:  # handed to the main thread, which reports it
            self._error = exc

    def result(self) -> str:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._script is not None
        return self._script
