#!/usr/bin/env python3
"""Lists import cycles between the modules of each crate of the workspace.

A module's imports are the `crate::<module>` paths (and `use crate::{a, b}` groups) in its
files; a folder module counts as one module (its files together). Exit status 1 if any crate
has a cycle. Used by the restructure issue's "no import cycle" check:
    python3 scripts/import_cycles.py
"""
import os, re, sys

# Folders whose sub-folders are modules of their own (one folder per wire protocol).
NAMESPACES = {"protocols"}

CRATES = {"brainmesh": "src", "brainmesh-actors": "actors/src", "brainmesh-ledger": "actors/ledger/src",
          "brainmesh-models": "models/src"}

def modules(root):
    mods = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), root)
            parts = rel.split(os.sep)
            top = parts[0]
            name = top[:-3] if top.endswith(".rs") else top
            if name in NAMESPACES and len(parts) > 2:
                name = f"{name}::{parts[1]}"  # each protocol folder is a module of its own
            if name in ("lib", "main"):
                continue
            mods.setdefault(name, []).append(os.path.join(dirpath, f))
    return mods

def strip_tests(src):
    # Drop `#[cfg(test)] mod tests { ... }` blocks at the end of files (unit tests may import freely).
    i = src.find("#[cfg(test)]\nmod tests")
    return src if i < 0 else src[:i]

def deps(files, names, root):
    out = set()
    for p in files:
        s = strip_tests(open(p, encoding="utf-8").read())
        s = re.sub(r"//[^\n]*", "", s)
        rel = os.path.relpath(p, root).split(os.sep)
        if len(rel) == 1 or rel[-1] == "mod.rs" and len(rel) == 2:
            # In a crate-root module, `super::x` is `crate::x`.
            s = re.sub(r"\bsuper::", "crate::", s)
        elif rel[0] in NAMESPACES and len(rel) >= 3 and (len(rel) == 3 and rel[-1] == "mod.rs"):
            # In protocols/x/mod.rs, `super::y` is `crate::protocols::y`.
            s = re.sub(r"\bsuper::", f"crate::{rel[0]}::", s)
        for m in re.finditer(r"crate::([a-z_0-9]+)(?:::([a-z_0-9]+))?", s):
            name = m.group(1)
            if name in NAMESPACES and m.group(2) and f"{name}::{m.group(2)}" in names:
                name = f"{name}::{m.group(2)}"
            out.add(name)
        for m in re.finditer(r"use crate::\{([^}]*)\}", s, re.S):
            for part in m.group(1).split(","):
                w = part.strip().split("::")[0].strip()
                if w:
                    out.add(w)
    return {d for d in out if d in names}

def cycles(graph):
    # Tarjan's strongly connected components; any component with more than one node is a cycle.
    index, low, stack, on, res, n = {}, {}, [], set(), [], [0]
    def visit(v):
        index[v] = low[v] = n[0]; n[0] += 1; stack.append(v); on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                res.append(sorted(comp))
    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return res

def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    bad = 0
    for crate, path in CRATES.items():
        mods = modules(os.path.join(root, path))
        graph = {m: deps(fs, mods.keys(), os.path.join(root, path)) - {m} for m, fs in mods.items()}
        cyc = cycles(graph)
        print(f"{crate}: {len(mods)} modules, {sum(len(v) for v in graph.values())} import edges, "
              f"{len(cyc)} cycle(s)")
        for c in cyc:
            bad += 1
            print("  cycle:", " <-> ".join(c))
            for m in c:
                print(f"    {m} -> {', '.join(sorted(graph[m] & set(c)))}")
    sys.exit(1 if bad else 0)

if __name__ == "__main__":
    main()
