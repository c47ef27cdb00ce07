"""``find_zone``: an IANA zone or ``None``, never an exception (pure)."""

from __future__ import annotations

import shutil
import zoneinfo
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from newsletter.zones import find_zone


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(None, id="none"),
        pytest.param("", id="empty"),
        pytest.param("Europe", id="a-directory"),
        pytest.param("Mars/Olympus_Mons", id="unknown"),
        pytest.param("../etc/passwd", id="not-normalised"),
        pytest.param("/etc/localtime", id="absolute"),
        pytest.param("a" * 300, id="too-long-for-the-file-system"),
        pytest.param("Europe/Paris\x00", id="nul"),
    ],
)
def test_a_name_that_is_no_zone_is_none(name: str | None) -> None:
    assert find_zone(name) is None


def test_a_real_zone_is_found() -> None:
    zone = find_zone("Asia/Tokyo")
    assert zone is not None
    assert zone.key == "Asia/Tokyo"
    assert datetime(2026, 1, 1, tzinfo=UTC).astimezone(zone).hour == 9


@pytest.fixture
def zone_folder(tmp_path: Path) -> Iterator[Path]:
    """A time-zone folder of our own (holding copies of Tokyo's zone file) searched first,
    so names of any length can exist; the usual search path comes back afterwards."""
    before = zoneinfo.TZPATH
    zoneinfo.reset_tzpath(to=[str(tmp_path), *before])
    try:
        yield tmp_path
    finally:
        zoneinfo.reset_tzpath(to=before)


def _tokyo_named(folder: Path, length: int) -> str:
    tokyo = next(
        Path(d) / "Asia" / "Tokyo" for d in zoneinfo.TZPATH[1:] if (Path(d) / "Asia").is_dir()
    )
    name = "Z" * length
    shutil.copyfile(tokyo, folder / name)
    return name


@pytest.mark.parametrize(("length", "found"), [(63, True), (64, True), (65, False)])
def test_names_of_up_to_64_characters_are_looked_up(
    zone_folder: Path, length: int, found: bool
) -> None:
    name = _tokyo_named(zone_folder, length)
    zone = find_zone(name)
    assert (zone is not None) is found
    if zone is not None:
        assert datetime(2026, 1, 1, tzinfo=UTC).astimezone(zone).hour == 9
