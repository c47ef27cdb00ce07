"""YAML documents that remember where each key was written.

Pure: takes text, returns Python values plus the line of every mapping key, so that
validation errors can say ``file:line``. Safe loading only (no Python tags).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from newsletter.errors import ContentError

Key = str | int
_UNQUOTED_JINJA = re.compile(r":\s*\{[{%]")


@dataclass(frozen=True)
class YamlDocument:
    """A parsed YAML document: ``data`` plus the 1-based line of every key path."""

    data: Any
    path: str
    first_line: int  # line of the document's first character in the file
    lines: dict[tuple[Key, ...], int] = field(default_factory=dict)

    def line_of(self, *keys: Key) -> int:
        """Line of the deepest known prefix of *keys* (the document start if none)."""
        for end in range(len(keys), 0, -1):
            line = self.lines.get(tuple(keys[:end]))
            if line is not None:
                return line
        return self.first_line

    def error(self, message: str, *keys: Key) -> ContentError:
        return ContentError(message, self.path, self.line_of(*keys))


def parse_yaml(text: str, path: str, *, line_offset: int = 0) -> YamlDocument:
    """Parse *text*; raise ``ContentError`` at the line YAML reports for bad syntax.

    ``line_offset`` is the number of file lines before *text* (front matter starts after
    its opening ``---``). Duplicate mapping keys are errors (YAML would keep the last).
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return YamlDocument(None, path, line_offset + 1)
        lines: dict[tuple[Key, ...], int] = {}
        _collect_lines(node, (), lines, path, line_offset)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = line_offset + (mark.line + 1 if mark is not None else 1)
        problem = exc.problem or exc.context or "invalid YAML"
        source_lines = text.splitlines()
        offending = (
            source_lines[mark.line] if mark is not None and mark.line < len(source_lines) else ""
        )
        if _UNQUOTED_JINJA.search(offending):
            problem += '; quote values that start with {{ or {%, e.g. subject: "{{ ... }}"'
        raise ContentError(f"invalid YAML: {problem}", path, line) from None
    except yaml.YAMLError as exc:
        raise ContentError(f"invalid YAML: {exc}", path, line_offset + 1) from None
    finally:
        loader.dispose()
    return YamlDocument(data, path, line_offset + node.start_mark.line + 1, lines)


def _collect_lines(
    node: yaml.Node,
    prefix: tuple[Key, ...],
    lines: dict[tuple[Key, ...], int],
    path: str,
    offset: int,
) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = offset + key_node.start_mark.line + 1
            if key in seen:
                raise ContentError(
                    f"duplicate key {key!r}; keep only one of them", path, line
                ) from None
            seen.add(key)
            lines[(*prefix, key)] = line
            _collect_lines(value_node, (*prefix, key), lines, path, offset)
    elif isinstance(node, yaml.SequenceNode):
        for index, child in enumerate(node.value):
            lines[(*prefix, index)] = offset + child.start_mark.line + 1
            _collect_lines(child, (*prefix, index), lines, path, offset)
