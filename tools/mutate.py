"""A small mutation tester: does any test notice when the code under test changes?

Usage::

    .venv/bin/python tools/mutate.py newsletter/tokens.py [--tests tests/test_tokens.py ...]
    make mutate MODULE=newsletter/tokens.py

Each mutant changes one thing in the module (a flipped comparison, ``and``/``or`` swapped,
a removed ``not``, a changed number or boolean, a deleted statement, ``return None``, an
arithmetic operator swapped), is written over a copy of the project in a temporary folder,
and the module's tests run against it (``pytest -x``). A mutant is *killed* when the tests
fail, *survives* when they pass. The score is killed / all. Every survivor is printed with
its line, so it can be pinned by a test or argued equivalent.

The project itself is never modified: the copy lives under a temporary directory.
"""

from __future__ import annotations

import argparse
import ast
import copy
import os
import shutil
import sys
import tempfile
import time
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The tests that pin each core module (its own file first, then its close users).
TESTS: dict[str, list[str]] = {
    "newsletter/tokens.py": ["tests/test_tokens.py"],
    "newsletter/addresses.py": ["tests/test_addresses.py"],
    "newsletter/backoff.py": ["tests/test_backoff.py"],
    "newsletter/events/policy.py": [
        "tests/test_events_policy.py",
        "tests/test_events_suppression.py",
    ],
    "newsletter/drip/timing.py": ["tests/test_drip_timing.py"],
    "newsletter/drip/planning.py": ["tests/test_drip_planning.py"],
    "newsletter/delivery/personalization.py": [
        "tests/test_personalization.py",
        "tests/test_personalization_edges.py",
    ],
    "newsletter/content/batch.py": ["tests/test_batch_render.py"],
    "newsletter/delivery/mime.py": ["tests/test_mime_bytes.py", "tests/test_mime.py"],
    "newsletter/web/form_input.py": ["tests/test_form_input.py"],
    "newsletter/web/rate_limit.py": ["tests/test_rate_limit.py"],
    "newsletter/ledger.py": ["tests/test_ledger.py", "tests/test_ledger_claims.py"],
    "newsletter/campaigns/schedule.py": ["tests/test_campaign_schedule.py"],
    "newsletter/campaigns/rules.py": ["tests/test_campaign_rules.py"],
    "newsletter/compose.py": ["tests/test_compose.py"],
    "newsletter/content/model.py": ["tests/test_content_model.py"],
    "newsletter/delivery/checks.py": ["tests/test_one_bad_message.py"],
    "newsletter/zones.py": ["tests/test_zones.py"],
    # The simulation over months (tests/test_sunset.py, 30 s) is left out: too slow per mutant.
    "newsletter/sunset.py": [
        "tests/test_sunset_rules.py",
        "tests/test_sunset.py::test_refuses_without_engagement_data_and_says_why",
        "tests/test_sunset.py::test_dry_run_lists_who_would_be_asked_and_changes_nothing",
        "tests/test_sunset.py::test_plan_refuses_with_the_outbox_and_no_tracking",
    ],
    "newsletter/engagement.py": ["tests/test_engagement_store.py", "tests/test_engagement.py"],
    "newsletter/one_line.py": [
        "tests/test_one_line.py",
        "tests/test_hostile_input.py::test_unstorable_reason",
        "tests/test_hostile_input.py::test_clean_tag",
    ],
    "newsletter/json_input.py": [
        "tests/test_hostile_input.py::test_load_json",
        "tests/test_hostile_input.py::test_nesting_exceeds",
        "tests/test_hostile_input.py::test_load_json_returns_the_document_with_its_numbers",
    ],
    "newsletter/client_ip.py": [
        "tests/test_trusted_proxies.py::test_client_ip",
        "tests/test_trusted_proxies.py::test_client_ip_without_trusted_proxies_is_the_peer",
        "tests/test_trusted_proxies.py::test_parse_networks",
        "tests/test_trusted_proxies.py::test_uvicorn_is_told_not_to_read_the_header_itself",
    ],
    "newsletter/webhooks/signing.py": ["tests/test_webhook_core.py"],
    "newsletter/webhooks/retries.py": [
        "tests/test_webhook_core.py",
        "tests/test_webhooks_retries.py",
    ],
    "newsletter/bounces/status.py": ["tests/test_bounces_status.py"],
    "newsletter/bounces/verp.py": ["tests/test_bounces_core.py"],
    "newsletter/bounces/reports.py": [
        "tests/test_bounces_reports.py",
        "tests/test_bounces_imap.py::test_parse_real_shaped_reports",
        "tests/test_bounces_imap.py::"
        "test_the_delivery_comes_from_the_returned_headers_without_a_bounce_address",
        "tests/test_bounces_imap.py::test_unusable_messages_are_report_errors",
        "tests/test_bounces_imap.py::test_a_report_about_someone_elses_mail_is_a_report_error",
    ],
    "newsletter/sources/verify.py": [
        "tests/test_sources_config.py",
        "tests/test_sources_presets.py",
    ],
    "newsletter/sources/fields.py": [
        "tests/test_sources_config.py",
        "tests/test_sources_presets.py",
    ],
    "newsletter/sources/config.py": [
        "tests/test_sources_config.py",
        "tests/test_sources_presets.py",
    ],
    "newsletter/sources/decide.py": [
        "tests/test_sources_config.py",
        "tests/test_sources_presets.py",
    ],
    "newsletter/sources/presets.py": ["tests/test_sources_presets.py"],
    "newsletter/sources/safe_json.py": [
        "tests/test_sources_config.py",
        "tests/test_sources_presets.py",
    ],
    "newsletter/webhooks/catalog.py": ["tests/test_webhook_core.py"],
    "newsletter/webhooks/targets.py": ["tests/test_webhook_core.py"],
    "newsletter/webhooks/payloads.py": ["tests/test_webhook_payloads.py"],
    "newsletter/tracking/classify.py": ["tests/test_tracking_core.py"],
    "newsletter/tracking/links.py": ["tests/test_tracking_core.py"],
    "newsletter/tracking/tokens.py": ["tests/test_tracking_core.py"],
    "newsletter/events/parsing.py": ["tests/test_events_parsing.py"],
    "newsletter/events/redaction.py": ["tests/test_events_redaction.py"],
    "newsletter/attention/cap.py": ["tests/test_attention_core.py"],
    "newsletter/attention/priority.py": ["tests/test_attention_core.py"],
    "newsletter/attention/decide.py": [
        "tests/test_attention_core.py",
        "tests/test_attention_forecast.py",
    ],
    "newsletter/attention/forecast.py": [
        "tests/test_attention_forecast.py",
        "tests/test_attention_core.py",
    ],
    "newsletter/attention/topics.py": [
        "tests/test_attention_core.py",
        "tests/test_attention_policy.py",
    ],
    "newsletter/attention/policy.py": [
        "tests/test_attention_policy.py",
        "tests/test_attention_core.py",
    ],
    "newsletter/attention/campaign_rules.py": ["tests/test_attention_policy.py"],
}

_COMPARE_SWAP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
}
_BINOP_SWAP: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Mult,
    ast.Pow: ast.Mult,
}


@dataclass(frozen=True)
class Mutant:
    index: int
    line: int
    description: str


def _is_docstring(node: ast.stmt) -> bool:
    return (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Constant)
        and isinstance(node.value.value, str)
    )


class _Mutator(ast.NodeTransformer):
    """Walks the tree; applies mutation number ``target`` (or only counts when None)."""

    def __init__(self, target: int | None) -> None:
        self.target = target
        self.count = 0
        self.found: list[Mutant] = []
        self._skip_depth = 0

    def _site(self, node: ast.AST, description: str) -> bool:
        index = self.count
        self.count += 1
        self.found.append(Mutant(index, getattr(node, "lineno", 0), description))
        return index == self.target

    # annotations and imports are not behaviour
    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        if node.value is not None:
            node.value = self.visit(node.value)
        return node

    def visit_arg(self, node: ast.arg) -> ast.AST:
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.returns = node.returns  # annotations untouched
        node.body = self._visit_body(node.body)
        node.args = self.visit(node.args)
        node.decorator_list = [self.visit(d) for d in node.decorator_list]
        return node

    def visit_ClassDef(self, node: ast.ClassDef) -> ast.AST:
        node.body = self._visit_body(node.body)
        return node

    def visit_If(self, node: ast.If) -> ast.AST:
        if ast.unparse(node.test) == "TYPE_CHECKING":
            return node
        node.test = self.visit(node.test)
        node.body = self._visit_body(node.body)
        node.orelse = self._visit_body(node.orelse) if node.orelse else []
        return node

    def visit_Module(self, node: ast.Module) -> ast.AST:
        node.body = self._visit_body(node.body)
        return node

    def _visit_body(self, body: list[ast.stmt]) -> list[ast.stmt]:
        out: list[ast.stmt] = []
        for stmt in body:
            deletable = not (
                _is_docstring(stmt)
                or isinstance(
                    stmt,
                    ast.Import
                    | ast.ImportFrom
                    | ast.FunctionDef
                    | ast.AsyncFunctionDef
                    | ast.ClassDef
                    | ast.Pass
                    | ast.AnnAssign,
                )
                or (isinstance(stmt, ast.Assign) and stmt.col_offset == 0)  # module constants
            )
            if deletable and self._site(stmt, f"delete `{ast.unparse(stmt).splitlines()[0]}`"):
                out.append(ast.copy_location(ast.Pass(), stmt))
                continue
            if _is_docstring(stmt):
                out.append(stmt)
                continue
            if (
                isinstance(stmt, ast.Assign)
                and stmt.col_offset == 0
                and isinstance(stmt.value, ast.Constant)
                and isinstance(stmt.value.value, str)
            ):  # a module constant such as a salt or a header name
                if self._site(stmt, f"`{ast.unparse(stmt)}`: string changed"):
                    changed = ast.Assign(
                        targets=stmt.targets, value=ast.Constant(stmt.value.value + "~")
                    )
                    out.append(ast.copy_location(changed, stmt))
                else:
                    out.append(stmt)
                continue
            out.append(self.visit(stmt))
        return out or [ast.Pass()]

    def visit_Return(self, node: ast.Return) -> ast.AST:
        if node.value is not None and not (
            isinstance(node.value, ast.Constant) and node.value.value is None
        ):
            if self._site(node, f"`{ast.unparse(node)}` -> `return None`"):
                return ast.copy_location(ast.Return(value=None), node)
            node.value = self.visit(node.value)
        return node

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        node.left = self.visit(node.left)
        node.comparators = [self.visit(c) for c in node.comparators]
        for i, op in enumerate(node.ops):
            swap = _COMPARE_SWAP.get(type(op))
            if swap is not None and self._site(
                node, f"`{ast.unparse(node)}`: {type(op).__name__} -> {swap.__name__}"
            ):
                node = copy.deepcopy(node)
                node.ops[i] = swap()
                return node
        return node

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        node.values = [self.visit(v) for v in node.values]
        other = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        if self._site(node, f"`{ast.unparse(node)}`: and/or swapped"):
            return ast.copy_location(ast.BoolOp(op=other, values=node.values), node)
        return node

    def visit_UnaryOp(self, node: ast.UnaryOp) -> ast.AST:
        node.operand = self.visit(node.operand)
        if isinstance(node.op, ast.Not) and self._site(node, f"`{ast.unparse(node)}`: not removed"):
            return node.operand
        return node

    def visit_BinOp(self, node: ast.BinOp) -> ast.AST:
        node.left = self.visit(node.left)
        node.right = self.visit(node.right)
        swap = _BINOP_SWAP.get(type(node.op))
        if swap is not None and self._site(
            node, f"`{ast.unparse(node)}`: {type(node.op).__name__} -> {swap.__name__}"
        ):
            return ast.copy_location(ast.BinOp(left=node.left, op=swap(), right=node.right), node)
        return node

    def visit_Constant(self, node: ast.Constant) -> ast.AST:
        value = node.value
        if isinstance(value, bool):
            if self._site(node, f"`{value}` -> `{not value}`"):
                return ast.copy_location(ast.Constant(not value), node)
        elif isinstance(value, int | float) and self._site(node, f"`{value}` -> `{value + 1}`"):
            return ast.copy_location(ast.Constant(value + 1), node)
        return node


def mutants_of(source: str) -> list[Mutant]:
    counter = _Mutator(None)
    counter.visit(ast.parse(source))
    return counter.found


def mutated_source(source: str, index: int) -> str:
    tree = ast.parse(source)
    mutator = _Mutator(index)
    tree = mutator.visit(tree)
    ast.fix_missing_locations(tree)
    return ast.unparse(tree)


def _copy_project(destination: Path) -> None:
    ignore = shutil.ignore_patterns(
        ".venv",
        ".git",
        "var",
        "__pycache__",
        ".mypy_cache",
        ".ruff_cache",
        ".pytest_cache",
        ".hypothesis",
        "node_modules",
    )
    shutil.copytree(ROOT, destination, ignore=ignore, dirs_exist_ok=True)


_PRELOAD = (
    "pytest",
    "hypothesis",
    "sqlalchemy",
    "sqlalchemy.orm",
    "fastapi",
    "starlette.testclient",
    "httpx",
    "jinja2",
    "pydantic",
    "pydantic_settings",
    "itsdangerous",
    "email_validator",
    "yaml",
    "frontmatter",
    "markdown_it",
    "css_inline",
    "inscriptis",
    "click",
    "click.testing",
    "rich",
    "alembic",
    "sendgrid",
    "psycopg",
    "apscheduler",
    "limits",
)


def _preload() -> None:
    """Import the third-party libraries once; each mutant's run forks from this process."""
    import importlib

    for name in _PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:  # an optional library: the child imports what it needs
            continue


def _is_project(name: str) -> bool:
    return name == "newsletter" or name.startswith(("newsletter.", "tests"))


def _preload_project(workdir: Path, tests: list[str]) -> None:
    """``MUTATE_FAST=1``: import the copy's test files (and so the project) once, here."""
    import importlib

    os.chdir(workdir)
    sys.path.insert(0, str(workdir))
    for name in ["tests.conftest"] + [t.split("::")[0][:-3].replace("/", ".") for t in tests]:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: S112 - the child imports it again and reports the error
            continue


def _stale(target: str) -> set[str]:
    """The project modules a mutant of ``target`` makes stale: it, and every module that
    holds one of its functions, classes or instances (or of a stale module's), transitively.
    A module that took only a constant from it keeps the old value (a survivor, never a
    false kill)."""
    loaded = {n: m for n, m in list(sys.modules.items()) if m is not None and _is_project(n)}
    stale = {target}
    changed = True
    while changed:
        changed = False
        for name, module in loaded.items():
            if name in stale:
                continue
            for value in list(vars(module).values()):
                if isinstance(value, types.ModuleType):
                    owner = value.__name__
                    if owner.startswith(name + "."):  # a package's own submodule
                        continue
                else:
                    found = getattr(value, "__module__", None)
                    owner = found if isinstance(found, str) else type(value).__module__
                if owner in stale:
                    stale.add(name)
                    changed = True
                    break
    return stale


def _run_tests(
    workdir: Path, tests: list[str], timeout: float, stale: set[str] | None = None
) -> tuple[bool, float]:
    """True when the tests pass (the mutant survived). Forks so imports are paid once;
    with ``stale`` only those project modules are imported again."""
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: run pytest on the copy, never return
        try:
            os.chdir(workdir)
            # PostgreSQL-only branches need MUTATE_POSTGRES_URL (a database only tests use).
            os.environ["NEWSLETTER_TEST_POSTGRES_URL"] = os.environ.get("MUTATE_POSTGRES_URL", "")
            os.environ.pop("NEWSLETTER_REQUIRE_POSTGRES", None)
            sys.path.insert(0, str(workdir))
            for name in [m for m in sys.modules if _is_project(m)]:
                if stale is None or name in stale:
                    del sys.modules[name]
                    # ``from package import module`` reads the package's attribute first:
                    # drop it too, or the re-imported users would get the stale module
                    parent, _, child = name.rpartition(".")
                    if parent in sys.modules and child in vars(sys.modules[parent]):
                        delattr(sys.modules[parent], child)
            devnull = os.open(os.devnull, os.O_WRONLY)
            if not os.environ.get("MUTATE_DEBUG"):
                os.dup2(devnull, 1)
                os.dup2(devnull, 2)
            import pytest

            code = pytest.main(
                [
                    "-x",
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    "-W",
                    "ignore::pytest.PytestAssertRewriteWarning",
                    *tests,
                ]
            )
            os._exit(int(code))
        except BaseException:
            if os.environ.get("MUTATE_DEBUG"):
                import traceback

                traceback.print_exc()
            os._exit(99)
    deadline = start + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) == 0, time.monotonic() - start
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            return False, time.monotonic() - start
        time.sleep(0.02)


def run(module: str, tests: list[str], *, only: list[int] | None) -> Iterator[tuple[Mutant, bool]]:
    source = (ROOT / module).read_text()
    found = mutants_of(source)
    with tempfile.TemporaryDirectory(prefix="mutate-") as tmp:
        work = Path(tmp)
        _copy_project(work)
        _preload()
        stale = None
        if os.environ.get("MUTATE_FAST"):
            _preload_project(work, tests)
            stale = _stale(module[:-3].replace("/", "."))
        passed, baseline = _run_tests(work, tests, timeout=600, stale=stale)
        if not passed:
            raise SystemExit(f"the tests fail on the unmutated code: {' '.join(tests)}")
        target = work / module
        for mutant in found:
            if only is not None and mutant.index not in only:
                continue
            target.write_text(mutated_source(source, mutant.index))
            survived, took = _run_tests(work, tests, timeout=max(60.0, baseline * 5), stale=stale)
            if os.environ.get("MUTATE_PROGRESS"):  # one line per mutant on stderr
                outcome = "survived" if survived else "killed"
                print(f"#{mutant.index}/{len(found)} {outcome} {took:.1f}s", file=sys.stderr)
            yield mutant, survived
        target.write_text(source)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("module", help="path of the module, e.g. newsletter/tokens.py")
    parser.add_argument("--tests", nargs="*", help="test files (default: the module's own)")
    parser.add_argument("--only", type=int, nargs="*", help="run only these mutant numbers")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = parser.parse_args(argv)
    module = args.module
    if not (ROOT / module).is_file():
        parser.error(f"no such module: {module}")
    if args.list:
        for m in mutants_of((ROOT / module).read_text()):
            print(f"#{m.index} line {m.line}: {m.description}")
        return 0
    tests = args.tests or TESTS.get(module)
    if not tests:
        parser.error(f"no tests known for {module}; give --tests FILE...")
    killed = survived = 0
    for mutant, alive in run(module, tests, only=args.only):
        if alive:
            survived += 1
            print(f"SURVIVED #{mutant.index} line {mutant.line}: {mutant.description}", flush=True)
        else:
            killed += 1
    total = killed + survived
    score = 100.0 * killed / total if total else 100.0
    print(f"{module}: {killed}/{total} mutants killed ({score:.1f}%) by {' '.join(tests)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
