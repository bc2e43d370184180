"""docs/EXPORT.md's table reference is the one the schema declaration makes, and each declared type is real."""

import pyarrow as pa

from mproxy_scapy import export_schema
from mproxy_scapy.export_schema import SCHEMA_VERSION, TABLES, VERSION_KEY, arrow_schema

from support import REPO


def test_export_doc_is_generated_from_the_schema():
    doc = (REPO / "docs" / "EXPORT.md").read_text()
    assert export_schema.with_schema_doc(doc) == doc, "run: python -m mproxy_scapy.export_schema --write docs/EXPORT.md"


def test_doc_names_every_table_and_column():
    doc = export_schema.schema_doc()
    for spec in TABLES.values():
        assert f"### `{spec.name}`" in doc
        assert all(f"| `{c.name}` | `{c.type}` |" in doc for c in spec.columns)


def test_declared_types_are_the_arrow_types_built():
    for name, spec in TABLES.items():
        schema = arrow_schema(name)
        assert schema.metadata[VERSION_KEY.encode()] == SCHEMA_VERSION.encode()
        assert [(f.name, str(f.type), f.nullable) for f in schema] == [
            (c.name, c.type, c.nullable) for c in spec.columns]
        assert len({c.name for c in spec.columns}) == len(spec.columns)


def test_the_frames_table_carries_every_dissect_json_key():
    from mproxy_scapy.render import FRAME_KEYS

    frames = arrow_schema("frames")
    assert set(FRAME_KEYS) <= set(frames.names)
    assert frames.field("body").type == pa.binary()
