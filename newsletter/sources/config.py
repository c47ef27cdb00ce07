"""``sources.yaml``: parsed and checked with the line of each problem (pure: text in)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml
from limits import parse_many

from newsletter.errors import ContentError
from newsletter.sources.presets import MAP_FIELDS, PRESETS, compile_map

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,127}")
KEYS = frozenset(
    {
        "preset",
        "secret_env",
        "opt_in",
        "tags",
        "consent_text",
        "map",
        "verify",
        "rate_limit",
        "max_body_bytes",
    }
)
DEFAULT_RATE_LIMIT = "120/minute"
DEFAULT_MAX_BODY_BYTES = 256 * 1024
MAX_BODY_CEILING = 8 * 1024 * 1024


@dataclass(frozen=True)
class SourceConfig:
    name: str
    preset: str
    secret_env: str
    opt_in: Literal["double", "single_if_consent"] = "double"
    tags: tuple[str, ...] = ()
    consent_text: str | None = None
    map: dict[str, str] = field(default_factory=dict)
    verify: Literal["signature", "token"] = "signature"
    rate_limit: str = DEFAULT_RATE_LIMIT
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    line: int = 0

    @property
    def single_opt_in_allowed(self) -> bool:
        return self.opt_in == "single_if_consent"


class _Problems:
    def __init__(self, path: str) -> None:
        self.path = path
        self.found: list[ContentError] = []

    def add(self, node: yaml.Node | None, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else None
        self.found.append(ContentError(message, self.path, line))


def _scalar(node: yaml.Node) -> Any:
    return yaml.safe_load(yaml.serialize(node)) if node is not None else None


def parse_sources(text: str, path: str) -> tuple[dict[str, SourceConfig], list[ContentError]]:
    """Every valid source and every problem (``path:line: message``), in file order."""
    problems = _Problems(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        return {}, [ContentError(f"not valid YAML: {getattr(exc, 'problem', exc)}", path, line)]
    if root is None:
        return {}, []
    if not isinstance(root, yaml.MappingNode) or [k.value for k, _ in root.value] != ["sources"]:
        problems.add(root, "the file must hold one key, 'sources:', mapping names to sources")
        return {}, problems.found
    node = root.value[0][1]
    if not isinstance(node, yaml.MappingNode):
        problems.add(node, "'sources:' must map each source name to its settings")
        return {}, problems.found
    sources: dict[str, SourceConfig] = {}
    for key, value in node.value:
        name = str(key.value)
        if not NAME.fullmatch(name):
            problems.add(key, f"source name {name!r} must be lower-case letters, digits, - or _")
            continue
        if name in sources:
            problems.add(key, f"source {name!r} is defined twice")
            continue
        before = len(problems.found)
        source = _source(name, key, value, problems)
        if source is not None and len(problems.found) == before:
            sources[name] = source
    return sources, problems.found


def _source(name: str, key: yaml.Node, node: yaml.Node, problems: _Problems) -> SourceConfig | None:
    if not isinstance(node, yaml.MappingNode):
        problems.add(node, f"source {name!r} must be a mapping with at least 'preset:'")
        return None
    nodes = {str(k.value): (k, v) for k, v in node.value}
    for unknown in sorted(set(nodes) - KEYS):
        problems.add(
            nodes[unknown][0], f"{name}: unknown key {unknown!r}; known: {', '.join(sorted(KEYS))}"
        )
    values = {k: _scalar(v) for k, (_, v) in nodes.items()}

    def where(k: str) -> yaml.Node:
        return nodes[k][1] if k in nodes else key

    preset = values.get("preset")
    if preset not in PRESETS:
        problems.add(
            where("preset"),
            f"{name}: preset {preset!r} is unknown; use one of {', '.join(PRESETS)}",
        )
        return None
    secret_env = values.get("secret_env")
    if not isinstance(secret_env, str) or not ENV_NAME.fullmatch(secret_env):
        problems.add(
            where("secret_env"),
            f"{name}: secret_env must name an environment variable (e.g. "
            f"NEWSLETTER_SOURCE_{name.upper().replace('-', '_')}_SECRET) holding the secret",
        )
    opt_in = values.get("opt_in", "double")
    if opt_in not in ("double", "single_if_consent"):
        problems.add(
            where("opt_in"),
            f"{name}: opt_in must be 'double' or 'single_if_consent', got {opt_in!r}",
        )
    elif opt_in == "single_if_consent":
        if not PRESETS[preset].consent_flag:
            allowed = ", ".join(p.name for p in PRESETS.values() if p.consent_flag)
            problems.add(
                where("opt_in"),
                f"{name}: single_if_consent is only for signed checkout presets that carry a "
                f"consent flag ({allowed}); {preset} stays double opt-in",
            )
        if not isinstance(values.get("consent_text"), str):
            problems.add(
                where("opt_in"),
                f"{name}: single_if_consent needs consent_text: the exact wording of the "
                "checkout's marketing checkbox",
            )
    tags = values.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) and t.strip() for t in tags):
        problems.add(where("tags"), f"{name}: tags must be a list of words, e.g. [customers]")
        tags = []
    consent_text = values.get("consent_text")
    if consent_text is not None and (not isinstance(consent_text, str) or not consent_text.strip()):
        problems.add(where("consent_text"), f"{name}: consent_text must be the wording shown")
    verify_by = values.get("verify", "signature")
    if verify_by not in ("signature", "token") or (verify_by == "token" and preset != "generic"):
        problems.add(
            where("verify"),
            f"{name}: verify: token is for the generic preset only (others use the sender's "
            f"own scheme); got {verify_by!r}",
        )
    mapping = values.get("map", {})
    if mapping and preset != "generic":
        problems.add(
            where("map"), f"{name}: map: is for the generic preset; {preset} maps its own fields"
        )
    elif not isinstance(mapping, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
    ):
        problems.add(where("map"), f"{name}: map must map field names to JMESPath strings")
        mapping = {}
    else:
        for unknown in sorted(set(mapping) - set(MAP_FIELDS)):
            problems.add(
                where("map"), f"{name}: map.{unknown} is unknown; known: {', '.join(MAP_FIELDS)}"
            )
        if mapping and "email" not in mapping:
            problems.add(where("map"), f"{name}: map needs an email: expression")
        try:
            compile_map(mapping)
        except ValueError as exc:
            problems.add(where("map"), f"{name}: {exc}")
    rate_limit = values.get("rate_limit", DEFAULT_RATE_LIMIT)
    try:
        parse_many(str(rate_limit))  # every limit of ``10/minute;100/day``, not the first
    except ValueError:
        problems.add(
            where("rate_limit"),
            f"{name}: rate_limit {rate_limit!r} must look like 120/minute "
            "(or several limits: 10/minute;100/day)",
        )
    max_body = values.get("max_body_bytes", DEFAULT_MAX_BODY_BYTES)
    if (
        isinstance(max_body, bool)
        or not isinstance(max_body, int)
        or not 1024 <= max_body <= MAX_BODY_CEILING
    ):
        problems.add(
            where("max_body_bytes"),
            f"{name}: max_body_bytes must be a number from 1024 to {MAX_BODY_CEILING}",
        )
        max_body = DEFAULT_MAX_BODY_BYTES
    return SourceConfig(
        name=name,
        preset=preset,
        secret_env=str(secret_env),
        opt_in=opt_in if opt_in in ("double", "single_if_consent") else "double",
        tags=tuple(t.strip() for t in tags),
        consent_text=consent_text.strip() if isinstance(consent_text, str) else None,
        map=dict(mapping) if isinstance(mapping, dict) else {},
        verify="token" if verify_by == "token" else "signature",
        rate_limit=str(rate_limit),
        max_body_bytes=max_body,
        line=key.start_mark.line + 1,
    )
