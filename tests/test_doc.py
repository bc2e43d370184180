"""The README's field table is the one the spec makes."""

from mproxy_scapy import doc
from mproxy_scapy.spec import ALL_FIELDS, PROBLEMS

from support import REPO


def test_readme_field_table_is_generated_from_the_spec():
    readme = (REPO / "README.md").read_text()
    assert doc.with_table(readme) == readme, "run: python -m mproxy_scapy.doc --write README.md"


def test_table_names_every_field_and_problem():
    table = doc.field_table()
    assert all(f"`{field.filter}`" in table for field in ALL_FIELDS)
    assert all(f"`{kind}`" in table for kind in PROBLEMS)
