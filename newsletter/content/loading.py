"""Reading the content folder: every item and sequence, with every problem found.

The file-system edge of the content library; parsing itself is pure (``items``,
``sequences``). Problems are collected, not raised, so ``content check`` can list them all.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

from newsletter.content.items import ItemLines, parse_item
from newsletter.content.model import KINDS, ContentItem, Sequence
from newsletter.content.sequences import parse_sequence
from newsletter.errors import ContentError

SEQUENCES_DIR = "sequences"


@dataclass
class ScannedContent:
    items: dict[str, tuple[ContentItem, ItemLines]] = field(default_factory=dict)
    broken: set[str] = field(default_factory=set)  # ids of item files with problems
    sequences: dict[str, Sequence] = field(default_factory=dict)
    problems: list[ContentError] = field(default_factory=list)


def scan_content(content_dir: Path, templates: Collection[str]) -> ScannedContent:
    """Parse ``content/<kind>/<slug>.md`` and ``content/sequences/<name>.yaml``."""
    scanned = ScannedContent()
    if not content_dir.is_dir():
        scanned.problems.append(
            ContentError(
                "content folder not found; set NEWSLETTER_CONTENT_DIR or run from the project root",
                str(content_dir),
            )
        )
        return scanned
    for folder in sorted(content_dir.iterdir()):
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        if folder.name not in (*KINDS, SEQUENCES_DIR):
            scanned.problems.append(
                ContentError(
                    f"unknown folder {folder.name!r}; content folders are "
                    f"{', '.join((*KINDS, SEQUENCES_DIR))}",
                    str(folder),
                )
            )
    for kind in KINDS:
        for path in _files(content_dir / kind, ".md", scanned.problems):
            _scan_item(path, kind, templates, scanned)
    items = {item_id: item for item_id, (item, _) in scanned.items.items()}
    for path in _files(content_dir / SEQUENCES_DIR, (".yaml", ".yml"), scanned.problems):
        try:
            sequence = parse_sequence(_read(path), str(path), path.stem, items, scanned.broken)
        except ContentError as exc:
            scanned.problems.extend(getattr(exc, "problems", [exc]))
            continue
        scanned.sequences[sequence.name] = sequence
    return scanned


def _scan_item(path: Path, kind: str, templates: Collection[str], scanned: ScannedContent) -> None:
    try:
        item, lines = parse_item(_read(path), str(path), kind, path.stem, templates)
    except ContentError as exc:
        scanned.problems.extend(getattr(exc, "problems", [exc]))
        scanned.broken.add(f"{kind}/{path.stem}")
        return
    scanned.items[item.id] = (item, lines)


def _files(
    folder: Path, suffixes: str | tuple[str, ...], problems: list[ContentError]
) -> list[Path]:
    if not folder.is_dir():
        return []
    wanted = (suffixes,) if isinstance(suffixes, str) else suffixes
    found = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_file() and path.suffix in wanted:
            found.append(path)
        else:
            problems.append(
                ContentError(
                    f"not a content file: expected {' or '.join(wanted)} files here", str(path)
                )
            )
    return found


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ContentError(f"not UTF-8 text ({exc.reason}); save it as UTF-8", str(path)) from None
    except OSError as exc:
        raise ContentError(f"cannot read: {exc.strerror}", str(path)) from None
