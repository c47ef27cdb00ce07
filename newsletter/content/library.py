"""The content library: items, sequences and rendering, loaded once and then read-only.

>>> library = ContentLibrary.load(Path("content"), Path("templates/emails"),
...     postal_address="1 Main St", sender_name="Shop", base_url="https://shop.example")
>>> library.render("tips/meet-your-ql", subscriber, links)

Every item is compiled at load (Markdown, CSS inlining, Jinja), so ``render`` is a few cached
Jinja calls per recipient.
"""

from __future__ import annotations

import difflib
import hashlib
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.content.batch import RenderPlan, make_plan, opaque_item, probe_inputs
from newsletter.content.items import MAX_SUBJECT_LENGTH
from newsletter.content.loading import scan_content
from newsletter.content.model import (
    NO_EVENT,
    ContentItem,
    EventContext,
    Links,
    RenderedEmail,
    Sequence,
    SubscriberContext,
)
from newsletter.content.rendering import CompiledItem, Footer, compile_item, render_item
from newsletter.content.templates import (
    ITEM_PREFIX,
    EmailLoader,
    check_templates,
    make_environment,
    template_names,
)
from newsletter.errors import ContentError, ItemNotFound

if TYPE_CHECKING:
    from newsletter.settings import Settings

SAMPLE_SUBSCRIBER = SubscriberContext(email="alex@example.com", first_name="Alex")
_SAMPLE_ADDRESS = "1 Sample Street, Sample Town"


class SequenceNotFound(ContentError, LookupError):
    """No sequence has this name."""


class ContentLibrary:
    """Read-only after ``load``; safe to share between threads."""

    def __init__(
        self,
        compiled: dict[str, CompiledItem],
        sequences: dict[str, Sequence],
        problems: list[ContentError],
        footer: Footer,
        loader: EmailLoader,
    ) -> None:
        self._compiled = compiled
        self._sequences = sequences
        self._problems = problems
        self._footer = footer
        self._loader = loader
        self._opaque: dict[str, bool] = {}

    @classmethod
    def load(
        cls,
        content_dir: Path,
        templates_dir: Path,
        *,
        postal_address: str,
        sender_name: str,
        base_url: str,
        strict: bool = True,
    ) -> ContentLibrary:
        """Load and compile everything. With *strict* (the default) the first problem is
        raised; ``strict=False`` keeps the good items and lets ``check()`` list the rest."""
        scanned = scan_content(content_dir, template_names(templates_dir))
        environment, loader = make_environment(templates_dir)
        problems = [*scanned.problems, *check_templates(templates_dir)]
        compiled: dict[str, CompiledItem] = {}
        for item_id, (item, lines) in sorted(scanned.items.items()):
            try:
                compiled[item_id] = compile_item(item, lines, environment, loader)
            except ContentError as exc:
                if not any(str(exc) == str(known) for known in problems):
                    problems.append(exc)
        address = ", ".join(line.strip() for line in postal_address.splitlines() if line.strip())
        footer = Footer(sender_name, address, base_url)
        library = cls(compiled, scanned.sequences, problems, footer, loader)
        if strict and problems:
            first = problems[0]
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            raise ContentError(
                f"{first.message}{more}; run `newsletter content check` to list every problem",
                first.path,
                first.line,
            )
        return library

    # ---- reading ------------------------------------------------------------------

    def items(self) -> list[ContentItem]:
        """Every item, sorted by id."""
        return [compiled.item for compiled in self._compiled.values()]

    def item(self, item_id: str) -> ContentItem:
        return self._compiled_item(item_id).item

    def sequences(self) -> list[Sequence]:
        return [self._sequences[name] for name in sorted(self._sequences)]

    def sequence(self, name: str) -> Sequence:
        try:
            return self._sequences[name]
        except KeyError:
            known = ", ".join(sorted(self._sequences)) or "none"
            raise SequenceNotFound(
                f"no sequence named {name!r} (known: {known}); sequences live in "
                "content/sequences/<name>.yaml"
            ) from None

    @property
    def footer(self) -> Footer:
        return self._footer

    # ---- rendering ----------------------------------------------------------------

    def render(
        self,
        item_id: str,
        subscriber: SubscriberContext,
        links: Links,
        event: EventContext = NO_EVENT,
    ) -> RenderedEmail:
        """Render *item_id* for one subscriber; ``RenderError`` if it is not fit to send."""
        return render_item(
            self._compiled_item(item_id), subscriber, links, self._footer, self._loader, event
        )

    def plan(
        self,
        item_id: str,
        subscriber: SubscriberContext,
        links: Links,
        event: EventContext = NO_EVENT,
    ) -> RenderPlan | None:
        """A plan rendering *item_id* for every recipient whose ``batch.group_key`` equals
        that of *subscriber* and *links*, or ``None`` when the item cannot be planned
        (``newsletter.content.batch``). Raises what ``render`` raises."""
        compiled = self._compiled_item(item_id)
        if item_id not in self._opaque:
            item = compiled.item
            environment = compiled.html.environment
            templates = [f"{ITEM_PREFIX}{item.id}.{part}" for part in ("html", "txt")]
            self._opaque[item_id] = opaque_item(
                environment, item.subject, item.preheader, templates
            )
        if not self._opaque[item_id]:
            return None
        probe_subscriber, probe_links, names = probe_inputs(subscriber, links)
        probe = render_item(
            compiled, probe_subscriber, probe_links, self._footer, self._loader, event
        )
        return make_plan(probe, names)

    def sample_links(self) -> Links:
        """Links as a preview shows them (the tokens are placeholders, not real ones)."""
        base = self._footer.base_url
        return Links(
            unsubscribe=f"{base}/unsubscribe/preview-token",
            web_version=None,
            confirm=f"{base}/confirm/preview-token",
            keep=f"{base}/keep/preview-token",
            preferences=f"{base}/preferences/preview-token",
        )

    # ---- checking -----------------------------------------------------------------

    def check(self) -> list[ContentError]:
        """Every problem: files that failed to load, long subjects, items that fail to
        render for a sample subscriber, and a missing postal address (reported once)."""
        problems = list(self._problems)
        footer = self._footer
        if not footer.postal_address:
            problems.append(
                ContentError(
                    "NEWSLETTER_POSTAL_ADDRESS is not set: every marketing email must show "
                    "your postal address; set it (e.g. in .env) and run again"
                )
            )
            footer = Footer(footer.sender_name, _SAMPLE_ADDRESS, footer.base_url)
        for compiled in self._compiled.values():
            problems.extend(self._check_item(compiled, footer))
        return problems

    def _check_item(self, compiled: CompiledItem, footer: Footer) -> list[ContentError]:
        item = compiled.item
        problems: list[ContentError] = []
        # Declared custom fields and event properties get sample values; anything else
        # an item reads must use ``| default(...)`` or the check fails (StrictUndefined).
        samples = {name: f"sample {name}" for name in item.attributes}
        event = EventContext(
            name="sample", id="sample", properties={n: f"sample {n}" for n in item.event_properties}
        )
        try:
            email = render_item(
                compiled,
                SubscriberContext(
                    email=SAMPLE_SUBSCRIBER.email,
                    first_name=SAMPLE_SUBSCRIBER.first_name,
                    attributes=samples,
                ),
                self.sample_links(),
                footer,
                self._loader,
                event,
            )
            nameless = render_item(
                compiled,
                SubscriberContext(email="sam@example.com", attributes=samples),
                self.sample_links(),
                footer,
                self._loader,
                event,
            )
        except ContentError as exc:
            return [exc]
        longest = max(len(email.subject), len(nameless.subject))
        if longest > MAX_SUBJECT_LENGTH:
            problems.append(
                ContentError(
                    f"subject is {longest} characters when rendered; keep it under "
                    f"{MAX_SUBJECT_LENGTH} so inboxes show all of it",
                    item.path,
                    compiled.lines.subject,
                )
            )
        return problems

    def _compiled_item(self, item_id: str) -> CompiledItem:
        compiled = self._compiled.get(item_id)
        if compiled is None:
            close = difflib.get_close_matches(item_id, list(self._compiled), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "; run `newsletter content list`"
            raise ItemNotFound(f"no content item {item_id!r}{hint}")
        return compiled


def load_library(settings: Settings, *, strict: bool = True) -> ContentLibrary:
    """The library for *settings* (content and templates folders, footer values).

    A library is a pure function of the bytes under both folders and the footer values,
    and read-only once loaded, so one process loads each state of the files once: the
    key holds a digest of every file's path and bytes (an edited file is a new key). A
    library is kept only when the files read the same after loading as before it (an
    edit during the load is not filed under the old bytes).
    """
    footer = (settings.postal_address, settings.from_name, settings.base_url, strict)
    before = _digest(settings.content_dir, settings.templates_dir)
    with _LOADED_LOCK:
        library = _LOADED.get((before, *footer))
        if library is not None:
            _LOADED.move_to_end((before, *footer))
            return library
    library = ContentLibrary.load(
        settings.content_dir,
        settings.templates_dir,
        postal_address=settings.postal_address,
        sender_name=settings.from_name,
        base_url=settings.base_url,
        strict=strict,
    )
    if _digest(settings.content_dir, settings.templates_dir) == before:
        with _LOADED_LOCK:
            _LOADED[(before, *footer)] = library
            while len(_LOADED) > _LOADED_KEEP:
                _LOADED.popitem(last=False)
    return library


_LOADED: OrderedDict[tuple[object, ...], ContentLibrary] = OrderedDict()
_LOADED_LOCK = threading.Lock()
_LOADED_KEEP = 4


def _digest(*folders: Path) -> str:
    """SHA-256 over the resolved folder names and every file's relative path and bytes,
    following links to folders as the loader does (each real folder read once)."""
    digest = hashlib.sha256()
    for folder in folders:
        root = folder.resolve()
        digest.update(f"\0folder {root}\0".encode())
        visited: set[Path] = set()
        for path in _files(root, visited):
            digest.update(f"\0{path.relative_to(root)}\0".encode())
            try:
                digest.update(path.read_bytes())
            except OSError as exc:  # the load itself reports an unreadable file
                digest.update(f"\0unreadable {exc}\0".encode())
    return digest.hexdigest()


def _files(folder: Path, visited: set[Path]) -> list[Path]:
    """Every file below *folder* in name order, through links to folders too."""
    try:
        real = folder.resolve()
        if real in visited or not folder.is_dir():
            return []
        visited.add(real)
        entries = sorted(folder.iterdir())
    except OSError:
        return []
    found: list[Path] = []
    for entry in entries:
        if entry.is_dir():
            found.extend(_files(entry, visited))
        elif entry.is_file():
            found.append(entry)
    return found
