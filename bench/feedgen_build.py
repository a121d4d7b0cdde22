#!/usr/bin/env python3
"""The static-build peer for bench/run: Python's feedgen writing RSS 2.0 and Atom 1.0 for the
same items `livefeed build` renders.

    feedgen_build.py ITEMS.jsonl OUT_DIR

ITEMS.jsonl is `livefeed items` output (one JSON object per item, newest first); the feed-level
fields mirror what livefeed writes for the synthetic story (`loadgen synth`). Writes
OUT_DIR/big.rss and OUT_DIR/big.atom. Timed as a whole process by `loadgen exec`.
"""

import json
import os
import sys

from feedgen.feed import FeedGenerator


def main(items_path: str, out_dir: str) -> None:
    with open(items_path, encoding="utf-8") as f:
        items = [json.loads(line) for line in f if line.strip()]
    fg = FeedGenerator()
    fg.id("tag:www.itv.com,2013-04-30:big")
    fg.title("A very long live page")
    fg.subtitle("The standfirst of a very long live page.")
    fg.description("The standfirst of a very long live page.")
    fg.author({"name": "Bench"})
    fg.link(href="https://www.itv.com/news/big/", rel="alternate")
    fg.link(href="https://example.org/feeds/big.atom", rel="self")
    fg.language("en-gb")
    if items:
        fg.updated(max(item["updated"] for item in items))
    for item in items:
        # Appended in the order given (newest first), as livefeed writes them.
        fe = fg.add_entry(order="append")
        fe.id(item["id"])
        fe.guid(item["id"], permalink=False)
        fe.title(item["title"])
        fe.link(href=item["url"])
        fe.published(item["published"])
        fe.updated(item["updated"])
        for name in item["authors"]:
            fe.author({"name": name})
        fe.summary(item["summary"])
        fe.content(item["content_html"], type="html")
    os.makedirs(out_dir, exist_ok=True)
    fg.rss_file(os.path.join(out_dir, "big.rss"))
    fg.atom_file(os.path.join(out_dir, "big.atom"))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
