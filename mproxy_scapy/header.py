"""Reading one M-PROXY text header.

Shared by the reference-faithful unpacker, the analyzer's frame parser and
the Scapy layer, so all three split, trim and classify a header the same way.
"""

from __future__ import annotations

from .spec import DATA_KIND, FAMILIES, HEADER_FIELDS, MESSAGE_KINDS, MIN_HEADER_FIELDS

_SERVICE_CHARS = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.+")
_HEADER_KEYS = tuple(f.key for f in HEADER_FIELDS)


class ParsedHeader:
    """The fields of one header as text, and what is wrong with it.

    ``values`` maps each header key (spec order) to its text, or None where
    the header has no such field. ``datalen`` is the body length when the
    datalen field is plain decimal digits, else None.
    """

    __slots__ = ("datalen", "dialect", "field_count", "problems", "text", "utf8", "values")

    def __init__(self, raw: bytes) -> None:
        try:
            text = raw.decode("utf-8")
            self.utf8 = True
        except UnicodeDecodeError:
            text = raw.decode("utf-8", errors="replace")
            self.utf8 = False
        self.text = text
        self.dialect = "go" if text.endswith("\n") else "js"
        body = text.strip() if self.dialect == "go" else text
        fields = body.split(",")
        if self.dialect == "go" and len(fields) > 1 and fields[-1] == "":
            fields.pop()
        self.field_count = len(fields)
        self.values = dict.fromkeys(_HEADER_KEYS)
        self.values.update(zip(_HEADER_KEYS, fields, strict=False))
        self.problems: list[tuple[str, str]] = []
        if not self.utf8:
            self.problems.append(("header_not_utf8", "header bytes are not valid UTF-8"))
        if self.field_count < MIN_HEADER_FIELDS:
            self.problems.append(
                ("too_few_fields", f"{self.field_count} fields, at least {MIN_HEADER_FIELDS} expected")
            )
        self.datalen = None
        datalen_text = self.values["datalen"]
        if datalen_text is not None:
            if datalen_text.isascii() and datalen_text.isdigit():
                self.datalen = int(datalen_text)
            elif datalen_text[:1] == "-" and datalen_text[1:].isascii() and datalen_text[1:].isdigit():
                self.problems.append(("datalen_negative", f"datalen {datalen_text!r}"))
            else:
                self.problems.append(("datalen_not_numeric", f"datalen {datalen_text!r}"))

    @property
    def decodable(self) -> bool:
        """A body length is known, so the frame's end is known: the stream stays in sync."""
        return self.datalen is not None

    @property
    def kind(self) -> str:
        service = self.values["service"]
        return service if service in MESSAGE_KINDS else DATA_KIND

    def looks_like_frame_start(self) -> bool:
        """The strict test used to find the next frame after garbage.

        Inside garbage a stray 0xFE is common; a header is only believed there
        when everything about it has the shape real packers write.
        """
        if self.problems or self.datalen is None:
            return False
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in self.text.rstrip("\n")):
            return False
        values = self.values
        if values["family"] not in FAMILIES and values["family"] != "":
            return False
        for key in ("port", "serviceport"):
            value = values[key]
            if value and not value.isdigit():
                return False
        service = values["service"] or ""
        return bool(service) and all(c in _SERVICE_CHARS for c in service.encode())


def number_or_none(text: str | None) -> int | None:
    """Ports travel as decimal text; anything else is kept as text by the caller."""
    if text and text.isascii() and text.isdigit():
        return int(text)
    return None
