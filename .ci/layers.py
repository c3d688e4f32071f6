#!/usr/bin/env python3
"""The module layering of each crate: a module may use (`crate::m`) only modules of lower
layers, so that the crate's modules form no cycle. Test modules (from `#[cfg(test)]` or
`#[cfg(all(test, ...))]` at the start of a line to the end of the file) and comments are
not read. Prints the import graph with --graph; exits 1 naming each import that points up
or across a layer."""

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Lowest layer first. Every source module of the crate (but lib.rs and main.rs) must be listed.
LAYERS = {
    "core": [
        ["wire", "pace"],
        ["scheduler", "paths"],
        ["identity"],
        ["advertising", "cert", "bindings", "dialing", "linkcrypto", "reputation", "verify"],
        ["config", "routing"],
        ["event"],
        ["gossip", "handshake", "discipline"],
        ["broadcast", "swarm"],
        ["node"],
        ["testing"],
    ],
    "transport-mem": [
        ["keys", "misbehave", "pipe", "random", "reference", "trace"],
        ["topology", "lanes"],
        ["sim"],
        ["experiment"],
    ],
    "transport-tcp": [
        ["child", "client", "counters", "events", "keys", "logging", "render", "telemetry", "web"],
        ["driver"],
        ["authority", "chaos", "graph", "metrics"],
        ["config"],
        ["estimator", "handlers"],
        ["operator"],
        ["keyring"],
        ["api", "topology"],
        ["daemon"],
        ["demo"],
        ["cli"],
    ],
}


def uses(path):
    """The crate modules a source file refers to outside its tests and comments."""
    text = path.read_text()
    test = re.search(r"^#\[cfg\((all\()?test\b", text, re.M)
    if test:
        text = text[: test.start()]
    text = re.sub(r"//[^\n]*", "", text)
    found = set(re.findall(r"crate::([a-z_][a-z0-9_]*)", text))
    for group in re.findall(r"crate::\{([^}]*)\}", text, re.S):
        for item in group.split(","):
            head = item.strip().split("::")[0].strip()
            if head:
                found.add(head)
    return found


def check(crate, layers, graph):
    src = ROOT / crate / "src"
    level = {m: i for i, layer in enumerate(layers) for m in layer}
    errors = []
    files = {p.stem: [p] for p in src.glob("*.rs") if p.stem not in ("lib", "main")}
    # A module in a folder (`m/mod.rs` and its submodules) is read as one.
    files.update({d.name: sorted(d.rglob("*.rs")) for d in src.iterdir() if (d / "mod.rs").is_file()})
    modules = sorted(files)
    for m in modules:
        if m not in level:
            errors.append(f"{crate}/src/{m}: not in any layer of .ci/layers.py")
    for m in modules:
        found = set().union(*(uses(f) for f in files[m]))
        deps = sorted(d for d in found if d != m and d in level)
        if graph:
            print(f"{crate}: {m} (layer {level.get(m)}) -> {', '.join(deps)}")
        for d in deps:
            if m in level and level[d] >= level[m]:
                where = "up" if level[d] > level[m] else "across"
                errors.append(
                    f"{crate}/src/{m} uses crate::{d}: points {where} a layer "
                    f"({m} is in layer {level[m]}, {d} in layer {level[d]})"
                )
    return errors


def main():
    graph = "--graph" in sys.argv
    errors = [e for crate, layers in LAYERS.items() for e in check(crate, layers, graph)]
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        sys.exit(1)
    print(f"layers: {len(LAYERS)} crates, no import points up or across a layer")


if __name__ == "__main__":
    main()
