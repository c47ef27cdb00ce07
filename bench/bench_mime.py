"""Per-message cost of building RFC 5322 bytes (outbox and SMTP) against writing the file.

    .venv/bin/python bench/bench_mime.py [--count 2000] [--item tips/meet-your-ql]

Renders and composes ``--count`` real emails (shipped content, distinct names, some
non-ASCII), then measures CPU time per message of:

- ``build_mime(m).as_bytes()`` -- the ``email.policy`` builder (before issue 19);
- ``build_bytes(m)`` -- the bytes the outbox writes and SMTP sends;
- ``mime_problem(m)`` -- the per-message safety check run before each chunk;
- the ceiling: writing those bytes to a file (temporary name, rename), as the outbox does.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from newsletter.compose import Sender, compose, unsubscribe_url
from newsletter.content.library import ContentLibrary
from newsletter.content.model import Links, SubscriberContext
from newsletter.delivery.base import OutgoingEmail
from newsletter.delivery.mime import build_bytes, build_mime, mime_problem

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)
NAMES = ("Reader{n}", "O'Brien {n}", "Jürgen {n}", "Zoë & <Ann> {n}")


def emails(count: int, item: str) -> list[OutgoingEmail]:
    library = ContentLibrary.load(
        ROOT / "content",
        ROOT / "templates" / "emails",
        postal_address="12 Harbour Road, Bristol BS1 4XX, UK",
        sender_name="Backease",
        base_url="https://news.example",
    )
    sender = Sender("tips@shop.example", "Backease", None, "https://news.example")
    out = []
    for n in range(count):
        who = SubscriberContext(
            email=f"reader{n}@example.org", first_name=NAMES[n % len(NAMES)].format(n=n)
        )
        links = Links(
            unsubscribe=unsubscribe_url("https://news.example", f"tok{n}.sig", delivery_id=n + 1)
        )
        rendered = library.render(item, who, links)
        out.append(
            compose(
                rendered,
                delivery_id=n + 1,
                attempt=0,
                recipient=who,
                links=links,
                sender=sender,
                nonce=f"{n:016x}",
                now=NOW,
                categories=("drip",),
            )
        )
    return out


def cpu(work: object) -> float:
    started = time.process_time()
    work()  # type: ignore[operator]
    return time.process_time() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--item", default="tips/meet-your-ql")
    args = parser.parse_args(argv)
    messages = emails(args.count, args.item)
    datas: list[bytes] = []
    reference = cpu(lambda: [build_mime(m).as_bytes() for m in messages])
    build = cpu(lambda: datas.extend(build_bytes(m).data for m in messages))
    check = cpu(lambda: [mime_problem(m) for m in messages])
    with tempfile.TemporaryDirectory(prefix="bench-mime-") as folder:

        def write() -> None:
            for n, data in enumerate(datas):
                target = Path(folder) / f"{n:012d}.eml"
                temporary = target.with_suffix(".tmp")
                temporary.write_bytes(data)
                os.replace(temporary, target)

        written = cpu(write)
    per = 1000 / args.count
    print(f"{args.count} emails of {args.item}, load {os.getloadavg()[0]:.2f}")
    print(f"build_mime + as_bytes: {reference * per:7.3f} ms CPU per message (email.policy)")
    print(f"build_bytes:           {build * per:7.3f} ms CPU per message (what is sent)")
    print(f"mime_problem check:    {check * per:7.3f} ms CPU per message")
    print(f"ceiling, file write:   {written * per:7.3f} ms CPU per message")
    print(f"ratio build / write:   {build / max(written, 1e-9):7.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
