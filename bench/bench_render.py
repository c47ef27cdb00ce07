"""Render throughput: ContentLibrary.render against a bare cached Jinja render (the ceiling).

    .venv/bin/python bench/bench_render.py [--count 10000] [--item tips/meet-your-ql]

Both loops render the same compiled templates for the same 10,000 distinct subscribers.
The ceiling does only the Jinja calls (subject, HTML part, text part) with no footer checks
and no RenderedEmail; the ratio is the overhead our rendering adds on top of Jinja itself.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from newsletter.content.library import ContentLibrary
from newsletter.content.model import Links, SubscriberContext

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--item", default="tips/meet-your-ql")
    args = parser.parse_args()

    started = time.perf_counter()
    library = ContentLibrary.load(
        ROOT / "content",
        ROOT / "templates" / "emails",
        postal_address="12 Harbour Road, Bristol BS1 4XX, UK",
        sender_name="Backease",
        base_url="https://shop.example",
    )
    load_seconds = time.perf_counter() - started
    people = [
        (
            SubscriberContext(email=f"reader{n}@example.com", first_name=f"Reader{n}"),
            Links(unsubscribe=f"https://shop.example/unsubscribe/token-{n:08d}"),
        )
        for n in range(args.count)
    ]

    compiled = library._compiled_item(args.item)  # the same cached templates render() uses
    footer = library.footer
    static: dict[str, Any] = {
        "item": compiled.item,
        "sender_name": footer.sender_name,
        "postal_address": footer.postal_address,
        "base_url": footer.base_url,
        "site": footer.site,
        "preheader": compiled.item.preheader,
    }

    def ceiling() -> int:
        size = 0
        for subscriber, links in people:
            context = {**static, "subscriber": subscriber, "links": links}
            context["subject"] = compiled.subject.render(context)
            size += len(compiled.html.render(context)) + len(compiled.text.render(context))
        return size

    def ours() -> int:
        size = 0
        for subscriber, links in people:
            email = library.render(args.item, subscriber, links)
            size += len(email.html) + len(email.text)
        return size

    ceiling()  # warm up both paths once
    ours()
    results = {}
    for name, run in (("bare Jinja (ceiling)", ceiling), ("ContentLibrary.render", ours)):
        best = float("inf")
        for _ in range(3):
            begin = time.perf_counter()
            run()
            best = min(best, time.perf_counter() - begin)
        results[name] = args.count / best
    print(f"library load (parse, Markdown, CSS inlining, compile): {load_seconds * 1000:.0f} ms")
    print(f"item: {args.item}, {args.count:,} distinct subscribers, best of 3 runs")
    for name, rate in results.items():
        print(f"{name:<24} {rate:>10,.0f} emails/s")
    ratio = results["ContentLibrary.render"] / results["bare Jinja (ceiling)"]
    print(f"ratio render/ceiling: {ratio:.2f}")


if __name__ == "__main__":
    main()
