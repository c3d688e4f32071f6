#!/usr/bin/env python3
"""A cost estimator for overlay-network: each link's cost from the measured TCP connect
time to the controller of the AS at its other end.

The daemon runs it once per gossip round (cost_estimator_path) with its configured links on
stdin, {"node": ID, "asn": ASN, "links": [{"number", "link_capacity", "cost"}]}, and uses the
links it prints (the same JSON array shape). For each link, it looks up a live controller of
that AS in the daemon's member list (GET /v1/members on the control API), connects to its
gossip address a few times, and sets the cost to the best connect time in units of
--ms-per-cost (at least 1). A link whose AS has no controller, or whose controller does not
answer in time, keeps its configured cost.

    "cost_estimator_path": "/usr/local/lib/overlay-network/connect-time.py --rpc 127.0.0.1:11450"

Standard library only. Keep --tries x --timeout x links well under half the gossip period:
the daemon kills a run that takes longer and keeps the links in use.
"""

import argparse
import json
import math
import socket
import sys
import time
import urllib.request


def members(rpc, token):
    """The live, reachable controllers the daemon knows, by AS: {asn: "host:port"}."""
    request = urllib.request.Request(f"http://{rpc}/v1/members")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=2) as answer:
        listed = json.load(answer)["members"]
    return {
        m["asn"]: m["addr"]
        for m in listed
        if m.get("state") == "alive" and m.get("reachable", True)
    }


def connect_ms(addr, tries, timeout):
    """The best of `tries` TCP connect times to `addr` in milliseconds, or None."""
    host, _, port = addr.rpartition(":")
    best = None
    for _ in range(tries):
        started = time.perf_counter()
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
                pass
        except OSError:
            continue
        elapsed = (time.perf_counter() - started) * 1000
        best = elapsed if best is None else min(best, elapsed)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rpc", required=True, help="the daemon's control API address")
    parser.add_argument("--token-file", help="bearer token file, when rpc_token is set")
    parser.add_argument("--ms-per-cost", type=float, default=1.0)
    parser.add_argument("--tries", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=0.2, help="seconds per connect")
    args = parser.parse_args()

    given = json.load(sys.stdin)
    token = open(args.token_file).read().strip() if args.token_file else None
    controllers = members(args.rpc, token)
    links = []
    for link in given["links"]:
        addr = controllers.get(link["number"])
        ms = connect_ms(addr, args.tries, args.timeout) if addr else None
        if ms is not None:
            link = dict(link, cost=max(1, math.ceil(ms / args.ms_per_cost)))
        links.append(link)
    json.dump(links, sys.stdout)
    print()


if __name__ == "__main__":
    main()
