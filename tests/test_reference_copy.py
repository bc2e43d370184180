"""The suite's copy of the reference vectors is the shared one, unedited."""

from pathlib import Path

from support import REFERENCE, REPO

SHARED = REPO.parent / "shared" / "reference"


def test_copy_matches_shared_reference_when_present():
    names = sorted(p.name for p in REFERENCE.iterdir())
    assert names == [
        "input.json", "output.bin", "proxy-packer-readme.txt", "readme-example.bin", "sni.hello.bin", "vectors.json",
    ]
    if SHARED.is_dir():
        for name in names:
            assert (REFERENCE / name).read_bytes() == (SHARED / name).read_bytes(), name


def test_vectors_are_the_seventeen_documented(vectors):
    assert len(vectors) == 17
    assert Path(REFERENCE / "output.bin").stat().st_size == 255
