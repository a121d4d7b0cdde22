#!/usr/bin/env python3
"""Reads every generated feed with Python's feedparser, the way a real feed reader would.

usage: conformance.py [DIR]      (default: feeds, the committed output of `livefeed build`)

DIR is the output of `livefeed build` (its feeds are in DIR/feeds/) or a directory of feeds.
For every story (and `all`) the feeds directory must hold `{slug}.rss`, `{slug}.atom` and
`{slug}.json`. The JSON Feed is the reference; for the RSS and Atom feeds of the same story:
  - feedparser reports no error (bozo == 0);
  - the feed's self link points at the file itself, under `/feeds/` as the server and the
    build lay them out;
  - the entries are the JSON Feed's items, in the same order, with the same id, the same
    title and the same published instant (Atom: the same updated instant too).
RFC 5005 archives (`{slug}/archive/{k}.{ext}` beside the feeds) are read the same way, each
against its own JSON Feed, and the chains are walked: from every current feed the
`prev-archive` links (JSON Feed: `next_url`) reach every archive document of its format once,
each archive links `current` back to the current feed (RSS and Atom), and no entry id occurs
twice along a chain.
Prints one line per feed and exits 1 on any failure.
"""

import calendar
import datetime
import json
import pathlib
import sys

import feedparser


def instant(struct_time):
    """feedparser's UTC struct_time as seconds since the epoch."""
    return None if struct_time is None else calendar.timegm(struct_time)


def iso_instant(text):
    return int(datetime.datetime.fromisoformat(text).timestamp())


def load_reference(path, name):
    """The JSON Feed's items as (id, title, published, updated) tuples, plus its problems and
    its `next_url`. `name` is the path under /feeds/."""
    problems = []
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return [], [f"not JSON: {e}"], None
    if doc.get("version") != "https://jsonfeed.org/version/1.1":
        problems.append(f"version is {doc.get('version')!r}, not JSON Feed 1.1")
    if not str(doc.get("feed_url", "")).endswith("/feeds/" + name):
        problems.append(f"feed_url {doc.get('feed_url')!r} does not point at {name}")
    items = []
    for n, item in enumerate(doc.get("items", []), 1):
        try:
            items.append(
                (
                    item["id"],
                    item["title"],
                    iso_instant(item["date_published"]),
                    iso_instant(item["date_modified"]),
                )
            )
        except (KeyError, ValueError) as e:
            problems.append(f"item {n}: missing or bad {e}")
    return items, problems, doc.get("next_url")


def history_links(parsed):
    """The RFC 5005 links of a parsed RSS or Atom feed, by rel."""
    return {
        l.get("rel"): l.get("href", "")
        for l in parsed.feed.get("links", [])
        if l.get("rel") in ("prev-archive", "next-archive", "current")
    }


def check_feed(path, name, reference):
    """Problems feedparser finds in one RSS or Atom feed, compared with the reference items
    (None when the JSON Feed is missing: then only feedparser's own verdict counts)."""
    parsed = feedparser.parse(str(path))
    problems = []
    archive = "/archive/" in name
    if parsed.bozo:
        problems.append(f"bozo: {parsed.get('bozo_exception')!r}")
    expected_version = "rss20" if path.suffix == ".rss" else "atom10"
    if parsed.get("version") != expected_version:
        problems.append(f"read as {parsed.get('version')!r}, not {expected_version}")
    selfs = [l.get("href", "") for l in parsed.feed.get("links", []) if l.get("rel") == "self"]
    if len(selfs) != 1 or not selfs[0].endswith("/feeds/" + name):
        problems.append(f"self link {selfs!r} does not point at {name}")
    links = history_links(parsed)
    if archive:
        current = name.split("/archive/")[0] + path.suffix
        if not links.get("current", "").endswith("/feeds/" + current):
            problems.append(f"current link {links.get('current')!r} does not point at {current}")
        marked = b"<fh:archive" in path.read_bytes()
        if not marked:
            problems.append("no fh:archive element")

    entries = parsed.entries
    if reference is None:
        return len(entries), problems, links
    if len(entries) != len(reference):
        problems.append(f"{len(entries)} entries, the JSON Feed has {len(reference)}")
    for n, (entry, (id_, title, published, updated)) in enumerate(zip(entries, reference), 1):
        where = f"entry {n}"
        if entry.get("id") != id_:
            problems.append(f"{where}: id {entry.get('id')!r}, JSON Feed has {id_!r}")
        if entry.get("title") != title:
            problems.append(f"{where}: title {entry.get('title')!r}, JSON Feed has {title!r}")
        got = instant(entry.get("published_parsed"))
        if got != published:
            problems.append(f"{where}: published {entry.get('published')!r} is not the JSON Feed's")
        if path.suffix == ".atom" and instant(entry.get("updated_parsed")) != updated:
            problems.append(f"{where}: updated {entry.get('updated')!r} is not the JSON Feed's")
    return len(entries), problems, links


def feed_name(url):
    """The path under /feeds/ of a feed URL, or None."""
    return url.split("/feeds/", 1)[1] if url and "/feeds/" in url else None


def main(argv):
    directory = pathlib.Path(argv[1] if len(argv) > 1 else "feeds")
    if not directory.is_dir():
        print(f"conformance: {directory} is not a directory", file=sys.stderr)
        return 2
    # The output of `livefeed build`: the site, with its feeds in feeds/.
    if (directory / "feeds").is_dir():
        directory = directory / "feeds"
    slugs = sorted({p.stem for p in directory.iterdir() if p.suffix in (".rss", ".atom", ".json")})
    if "all" not in slugs:
        slugs.append("all")

    failures = 0
    total = 0
    for slug in slugs:
        archive_dir = directory / slug / "archive"
        archives = sorted(archive_dir.iterdir()) if archive_dir.is_dir() else []
        for ext in (".json", ".rss", ".atom"):
            # Every document of this format: the current one, then the archives.
            names = [f"{slug}{ext}"] + [
                f"{slug}/archive/{p.name}" for p in archives if p.suffix == ext
            ]
            ids_along, prev_of = {}, {}
            for name in names:
                path = directory / name
                json_path = path.with_suffix(".json")
                reference, json_problems, next_url = None, [], None
                if json_path.is_file():
                    reference, json_problems, next_url = load_reference(
                        json_path, str(json_path.relative_to(directory))
                    )
                if not path.is_file():
                    problems, count = ["missing (every story needs .rss, .atom and .json)"], 0
                    prev = None
                elif ext == ".json":
                    problems, count = list(json_problems), len(reference or [])
                    prev = feed_name(next_url)
                else:
                    count, problems, links = check_feed(path, name, reference)
                    prev = feed_name(links.get("prev-archive"))
                prev_of[name] = prev
                ids_along[name] = [r[0] for r in reference or []]
                status = "ok  " if not problems else "FAIL"
                print(f"{status} {name:<50} {count:>4} entries")
                for p in problems:
                    print(f"       {p}")
                failures += bool(problems)
                total += 1
            # The chain from the current document reaches every archive once, no id twice.
            chain, seen, name = [], set(), names[0]
            while name is not None and name not in seen:
                seen.add(name)
                chain.append(name)
                name = prev_of.get(name)
            problems = []
            if name is not None:
                problems.append(f"the chain loops at {name}")
            if sorted(chain) != sorted(names):
                problems.append(f"the chain {chain} does not reach every document {names}")
            ids = [i for n in chain for i in ids_along.get(n, [])]
            if len(ids) != len(set(ids)):
                problems.append("an entry occurs twice along the chain")
            if len(names) > 1 or problems:
                status = "ok  " if not problems else "FAIL"
                print(f"{status} {slug}{ext} archive chain: {len(chain)} documents, {len(ids)} entries")
                for p in problems:
                    print(f"       {p}")
                failures += bool(problems)

    if failures:
        print(f"conformance: {failures} of {total} feeds in {directory} failed", file=sys.stderr)
        return 1
    print(f"conformance: all {total} feeds in {directory} read cleanly with feedparser {feedparser.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
