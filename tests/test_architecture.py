"""The layering STYLE.md asks for, checked with ``ast``: the pure core does no I/O."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PURE = [
    "newsletter/tokens.py",
    "newsletter/addresses.py",
    "newsletter/backoff.py",
    "newsletter/compose.py",
    "newsletter/content/model.py",
    "newsletter/drip/timing.py",
    "newsletter/drip/planning.py",
    "newsletter/campaigns/schedule.py",
    "newsletter/delivery/personalization.py",
    "newsletter/events/parsing.py",
    "newsletter/events/redaction.py",
    "newsletter/web/form_input.py",
    "newsletter/web/rate_limit.py",
    "newsletter/one_line.py",
    "newsletter/delivery/checks.py",
    "newsletter/zones.py",
    "newsletter/webhooks/catalog.py",
    "newsletter/webhooks/signing.py",
    "newsletter/webhooks/retries.py",
    "newsletter/webhooks/targets.py",
    "newsletter/webhooks/payloads.py",
    "newsletter/sources/config.py",
    "newsletter/sources/decide.py",
    "newsletter/sources/fields.py",
    "newsletter/sources/presets.py",
    "newsletter/sources/safe_json.py",
    "newsletter/sources/verify.py",
    "newsletter/attention/cap.py",
    "newsletter/attention/priority.py",
    "newsletter/attention/decide.py",
    "newsletter/attention/topics.py",
    "newsletter/attention/forecast.py",
]
IO_MODULES = {
    "sqlalchemy",
    "sendgrid",
    "smtplib",
    "click",
    "apscheduler",
    "fastapi",
    "starlette",
    "os",
    "httpx",
    "socket",
    "subprocess",
}
CLOCK_CALLS = {"now", "utcnow", "today", "time"}


def imported_roots(tree: ast.AST) -> set[str]:
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("path", PURE)
def test_pure_module_does_no_io_and_reads_no_clock(path: str) -> None:
    tree = ast.parse((ROOT / path).read_text())
    assert imported_roots(tree) & IO_MODULES == set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = ast.unparse(node.func.value)
            assert not (node.func.attr in CLOCK_CALLS and owner in {"datetime", "date", "time"}), (
                f"{path} reads the clock: {ast.unparse(node)}"
            )


def test_sendgrid_sdk_is_imported_only_at_its_two_edges() -> None:
    """Mail sending and event-webhook verification; nowhere else."""
    users = sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "newsletter").rglob("*.py")
        if "sendgrid" in imported_roots(ast.parse(p.read_text()))
    )
    assert users == ["newsletter/delivery/sendgrid.py", "newsletter/events/signature.py"]


def test_limits_is_used_only_to_read_rate_strings() -> None:
    """Rate limits are ``web/rate_limit.py``'s ``MovingWindow``: ``limits``' storages start
    a timer thread on hits and ``limits.parse`` keeps only the first limit of a rate."""
    users = {}
    for p in (ROOT / "newsletter").rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Import):
                names = {a.name for a in node.names if a.name.split(".")[0] == "limits"}
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "limits":
                names = {f"{node.module}.{a.name}" for a in node.names}
            else:
                continue
            if names:
                users.setdefault(str(p.relative_to(ROOT)), set()).update(names)
    assert users == {
        "newsletter/settings.py": {"limits.parse_many"},
        "newsletter/sources/config.py": {"limits.parse_many"},
        "newsletter/web/rate_limit.py": {"limits.parse_many"},
    }


def _newsletter_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("newsletter")}
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("newsletter")
        ):
            found.add(node.module)
    return found


def test_only_entry_points_import_the_cli() -> None:
    """Imports point down: nothing outside ``newsletter/cli/`` imports the CLI."""
    offenders = sorted(
        str(p.relative_to(ROOT))
        for p in (ROOT / "newsletter").rglob("*.py")
        if "cli" not in p.relative_to(ROOT / "newsletter").parts[:1]
        and any(
            m == "newsletter.cli" or m.startswith("newsletter.cli.") for m in _newsletter_imports(p)
        )
    )
    assert offenders == []


def test_families_of_modules_are_packages_not_filename_prefixes() -> None:
    """The ``cli_*`` and ``campaign_*`` modules live in ``cli/`` and ``campaigns/``."""
    flat = sorted(p.name for p in (ROOT / "newsletter").glob("*.py"))
    assert [n for n in flat if n.startswith(("cli_", "campaign_", "campaigns"))] == []
    prefixes: dict[str, list[str]] = {}
    for name in flat:
        stem = name.removesuffix(".py")
        if "_" in stem:
            prefixes.setdefault(stem.split("_")[0], []).append(stem)
    assert {k: v for k, v in prefixes.items() if len(v) > 2} == {}


def test_no_error_is_swallowed_by_a_bare_pass() -> None:
    """An ``except`` (or any block) whose whole body is ``pass`` hides what went wrong: log
    the error (at debug if it is harmless) or say in a docstring why nothing is done."""
    found = []
    for path in sorted((ROOT / "newsletter").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Pass):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert found == []
