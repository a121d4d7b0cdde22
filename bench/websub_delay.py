#!/usr/bin/env python3
"""Delay from a publish to its WebSub notification, end to end on loopback.

    python3 bench/websub_delay.py [--bin target/debug/livefeed] [--publishes 50] [--subscribers 1]
                                  [--pause-ms 0]

Starts `livefeed serve` on a temporary copy of data/ (127.0.0.1, a free port, publishing on,
callbacks allowed on 127.0.0.0/8), one or more subscribers (Python's http.server, which answer
the challenge and take notifications), subscribes them to feeds/all.atom with a secret, then
publishes one entry at a time and times each from sending the publish to the last subscriber
receiving a notification that carries its title. Prints min / median / p90 / max in ms and the
server's own histogram (livefeed_websub_delivery_delay_seconds). Asserts nothing about time.
Standard library only; stops the server it started by its PID.
"""

import argparse
import http.server
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKEN = "bench-token-0123456789abcdef"
LIVE = "disputes-over-syria-summit-plan"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Subscriber(http.server.ThreadingHTTPServer):
    def __init__(self):
        self.arrived = {}  # title -> arrival time
        self.cond = threading.Condition()
        super().__init__(("127.0.0.1", 0), Handler)

    @property
    def callback(self):
        return f"http://127.0.0.1:{self.server_address[1]}/cb"


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        body = q.get("hub.challenge", [""])[0].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        now = time.monotonic()
        self.send_response(204)
        self.end_headers()
        with self.server.cond:
            for title in re.findall(rb"bench-(\d+)", body):
                self.server.arrived.setdefault(title.decode(), now)
            self.server.cond.notify_all()


def request(method, url, body=None, headers=None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=30) as res:
        return res.status, res.read()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "debug", "livefeed"))
    ap.add_argument("--publishes", type=int, default=50)
    ap.add_argument("--subscribers", type=int, default=1)
    ap.add_argument("--pause-ms", type=int, default=0, help="pause between publishes")
    args = ap.parse_args()

    scratch = tempfile.mkdtemp(prefix="websub-delay-")
    data = os.path.join(scratch, "data")
    os.mkdir(data)
    for name in os.listdir(os.path.join(ROOT, "data")):
        if name.endswith(".txt") or name == "stories.toml":
            shutil.copy(os.path.join(ROOT, "data", name), data)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, LIVEFEED_TOKEN=TOKEN, RUST_LOG="warn")
    server = subprocess.Popen(
        [args.bin, "serve", "--data", data, "--listen", f"127.0.0.1:{port}",
         "--websub-allow-network", "127.0.0.0/8", "--access-log", "off"],
        env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    subs = []
    try:
        for _ in range(100):
            try:
                request("GET", f"{base}/readyz")
                break
            except OSError:
                time.sleep(0.05)
        for _ in range(args.subscribers):
            sub = Subscriber()
            threading.Thread(target=sub.serve_forever, daemon=True).start()
            subs.append(sub)
            form = urllib.parse.urlencode({
                "hub.mode": "subscribe", "hub.topic": f"{base}/feeds/all.atom",
                "hub.callback": sub.callback, "hub.secret": "bench",
            }).encode()
            status, _ = request("POST", f"{base}/websub", form,
                                {"Content-Type": "application/x-www-form-urlencoded"})
            assert status == 202, status
        # Wait until every subscription is active.
        while True:
            _, text = request("GET", f"{base}/metrics")
            m = re.search(rb"^livefeed_websub_subscriptions (\d+)", text, re.M)
            if m and int(m.group(1)) == args.subscribers:
                break
            time.sleep(0.02)

        delays = []
        for i in range(args.publishes):
            title = f"bench-{i}"
            start = time.monotonic()
            status, _ = request(
                "POST", f"{base}/stories/{LIVE}/entries",
                json.dumps({"title": title, "body": "Text."}).encode(),
                {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
            assert status == 201, status
            last = start
            for sub in subs:
                with sub.cond:
                    if not sub.cond.wait_for(lambda: str(i) in sub.arrived, timeout=30):
                        sys.exit(f"no notification for {title} within 30 s")
                    last = max(last, sub.arrived[str(i)])
            delays.append((last - start) * 1000)
            time.sleep(args.pause_ms / 1000)
        delays.sort()
        p90 = delays[min(len(delays) - 1, int(len(delays) * 0.9))]
        print(f"publishes {len(delays)}, subscribers {args.subscribers}, binary {args.bin}")
        print(f"publish -> notification (ms): min {delays[0]:.1f}  median "
              f"{statistics.median(delays):.1f}  p90 {p90:.1f}  max {delays[-1]:.1f}")
        _, text = request("GET", f"{base}/metrics")
        for line in text.decode().splitlines():
            if line.startswith("livefeed_websub_delivery_delay_seconds_") and "bucket" not in line:
                print("server:", line)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        for sub in subs:
            sub.shutdown()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
