#!/usr/bin/env python3
"""Checks that the code reads as a tree (ARCHITECTURE.md):

* no module of a crate uses a module that uses it back (directly or through others): a
  module's `crate::…` paths, outside comments and its tests, are its edges;
* no file of `src/cmd/` uses another command's file (`crate::cmd::…`).

Exits 1 and names the circles it finds.  Run by scripts/test.sh; `cargo tree` checks the crates.
"""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRATES = ["schemas", "partitioner", "producer", "aws", "auth", "lake", "ingest", "query", "sample-data", "."]


def code_of(path):
    """The file's code without comments, string literals and its `#[cfg(test)]` module."""
    text = open(path, encoding="utf-8").read()
    cut = re.search(r"#\[cfg\(test\)\]\s*mod tests", text)
    if cut:
        text = text[: cut.start()]
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    return text


def modules(src):
    """Top-level module name → its files (a module with a folder counts its files together)."""
    out = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), src)
            parts = rel[:-3].split(os.sep)
            if parts[0] in ("lib", "main") or parts[0] == "bin":
                continue
            out.setdefault(parts[0], []).append(os.path.join(dirpath, f))
    return out


def group_items(text, start):
    """The first path segment of each item of the `{…}` group opening at `start`."""
    depth, item, items = 0, "", []
    for ch in text[start:]:
        if ch == "{":
            depth += 1
            if depth == 1:
                continue
        elif ch == "}":
            depth -= 1
            if depth == 0:
                items.append(item)
                break
        if depth == 1 and ch == ",":
            items.append(item)
            item = ""
        elif depth >= 1:
            item += ch
    return [i.strip().split("::")[0].strip() for i in items if i.strip()]


def used_names(code):
    """Every first segment after `crate::`, in paths and in `use crate::{…}` groups."""
    names = []
    for m in re.finditer(r"\bcrate::", code):
        rest = code[m.end():]
        if rest.startswith("{"):
            names.extend(group_items(code, m.end()))
        else:
            n = re.match(r"[A-Za-z_][A-Za-z0-9_]*", rest)
            if n:
                names.append(n.group(0))
    return names


def reexports(src):
    """Names the crate root re-exports (`pub use module::{A, b}`) → the module defining them."""
    out = {}
    for root in ("lib.rs", "main.rs"):
        path = os.path.join(src, root)
        if not os.path.exists(path):
            continue
        code = code_of(path)
        for m in re.finditer(r"pub use ([a-z_][a-z0-9_]*)::", code):
            module, rest = m.group(1), code[m.end():]
            if rest.startswith("{"):
                for item in group_items(code, m.end()):
                    out[item.split(" as ")[-1].strip()] = module
            else:
                n = re.match(r"[A-Za-z_][A-Za-z0-9_]*", rest)
                if n:
                    out[n.group(0)] = module
    return out


def edges(src, mods):
    names = reexports(src)
    graph = {m: set() for m in mods}
    for m, files in mods.items():
        for f in files:
            for used in used_names(code_of(f)):
                used = names.get(used, used)
                if used in mods and used != m:
                    graph[m].add(used)
    return graph


def circles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def main():
    failed = False
    for crate in CRATES:
        src = os.path.join(ROOT, crate, "src")
        graph = edges(src, modules(src))
        for comp in circles(graph):
            failed = True
            path = " ↔ ".join(comp)
            print(f"{crate}/src: modules that use each other: {path}")
    cmd = os.path.join(ROOT, "src", "cmd")
    for f in sorted(os.listdir(cmd)):
        if f.endswith(".rs") and f != "mod.rs":
            for used in re.findall(r"\bcrate::cmd::([a-z_]+)", code_of(os.path.join(cmd, f))):
                failed = True
                print(f"src/cmd/{f} uses another command's file: crate::cmd::{used}")
    if failed:
        sys.exit(1)
    print("ok: every crate's modules form a tree, and no command uses another")


if __name__ == "__main__":
    main()
