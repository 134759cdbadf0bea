#!/usr/bin/env python3
"""Structure check for src/: no module imports a module that imports it back, and no source
file is over the line limit.

Every Rust file is a module. A path in a `use` declaration or in code (`crate::a::b`,
`super::x`, `self::y`) is resolved to the file of the deepest module it names; that is an edge
from the file that wrote it. An item re-exported by a parent (`pub use child::X`) and reached
through the parent counts as an edge to the parent, so a child that takes its parent's items
while the parent takes the child's is a cycle, as it reads. Inline test modules are part of
their file. Two layering rules hold between the crate's top-level modules too: no two import
each other (so `core` cannot reach back into the detect layer's signals, nor `hashing` into
`video` and back), and only the command modules in COMMANDS read the command line's settings
(`config`). Exit status 1 on any cycle, layering break or oversized file.
"""
import os
import re
import sys

LIMIT = int(os.environ.get("DFSERVE_MAX_FILE_LINES", "500"))
# The modules that run a command and so may read its settings (`config`).
COMMANDS = {"config", "server", "score", "bench", "<bin>"}
# What a module must not import: the inference core knows nothing of the detect layer's signals
# (hash matching, hashing, provenance) nor of anything above it.
FORBIDDEN = {"core": {"detect", "hashing", "hashlists", "provenance", "decisions", "api", "server"}}


def module_files(src):
    mods = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), src)
            parts = rel[:-3].split(os.sep)
            if parts[-1] in ("mod", "lib", "main"):
                parts = parts[:-1]
            if rel == "main.rs":
                parts = ["<bin>"]
            mods[tuple(parts)] = rel
    return mods


def expand(tree):
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e']."""
    tree = tree.strip()
    i = tree.find("{")
    if i < 0:
        return [tree]
    head, body = tree[:i], tree[i + 1 : tree.rindex("}")]
    parts, depth, cur = [], 0, ""
    for ch in body:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    parts.append(cur)
    return [p for part in parts if part.strip() for p in expand(head + part.strip())]


def paths_in(text):
    text = re.sub(r"//[^\n]*", "", text)
    # Child modules declared here (`mod x;`) are reached by bare paths (`x::item`).
    children = set(re.findall(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", text, re.M))
    out = []
    for m in re.finditer(r"\buse\s+([^;]+);", text):
        out += expand(re.sub(r"\s+", "", m.group(1)))
    text = re.sub(r"\buse\s+[^;]+;", "", text)
    out += re.findall(r"\b(?:crate|super|self)(?:::\w+)+", text)
    out += re.findall(r"(?<![:\w])(?:" + "|".join(children) + r")(?:::\w+)+", text) if children else []
    return ["self::" + p if p.split("::")[0] in children else p for p in out]


def resolve(path, here, mods, is_dir_module):
    segs = [s for s in path.replace(" ", "").split("::") if s]
    segs = [s.split(" as ")[0] for s in segs]
    if not segs:
        return None
    base = list(here) if is_dir_module else list(here[:-1]) if here else []
    if segs[0] == "crate":
        cur, segs = [], segs[1:]
    elif segs[0] == "self":
        cur, segs = list(here), segs[1:]
    elif segs[0] == "super":
        cur = list(here[:-1])
        segs = segs[1:]
        while segs and segs[0] == "super":
            cur, segs = cur[:-1], segs[1:]
    else:
        return None  # an external crate or a name in scope
    del base
    best = tuple(cur)
    for s in segs:
        if tuple(cur + [s]) in mods:
            cur.append(s)
            best = tuple(cur)
        else:
            break
    return best


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    src = os.path.join(root, "src")
    mods = module_files(src)
    edges = {m: set() for m in mods}
    problems = []
    for mod, rel in mods.items():
        text = open(os.path.join(src, rel), encoding="utf-8").read()
        lines = text.count("\n")
        if lines > LIMIT:
            problems.append(f"{rel}: {lines} lines, over {LIMIT}")
        # `super` inside an inline test module means this file itself.
        body = text.split("#[cfg(test)]")[0]
        tests = text[len(body):]
        is_dir = os.path.basename(rel) in ("mod.rs", "lib.rs")
        for p in paths_in(body) + [q for q in paths_in(tests) if not q.startswith("super")]:
            target = resolve(p, mod if mod != ("<bin>",) else (), mods, is_dir)
            if target is not None and target != mod and target in mods and target != ():
                edges[mod].add(target)
    for a in edges:
        for b in edges[a]:
            if a in edges.get(b, ()):
                if a < b:
                    problems.append(f"cycle: {mods[a]} <-> {mods[b]}")
    # Longer cycles.
    state = {}

    def visit(n, stack):
        state[n] = 1
        stack.append(n)
        for m in sorted(edges[n]):
            if state.get(m) == 1:
                cyc = stack[stack.index(m):] + [m]
                if len(cyc) > 3:
                    problems.append("cycle: " + " -> ".join(mods[c] for c in cyc))
            elif m not in state:
                visit(m, stack)
        stack.pop()
        state[n] = 2

    for n in sorted(edges):
        if n not in state:
            visit(n, [])
    # Between top-level modules (the crate root itself aside).
    top = {}
    for a, targets in edges.items():
        for b in targets:
            if a and b and a[0] != b[0]:
                top.setdefault(a[0], set()).add(b[0])
    for a in sorted(top):
        for b in sorted(top[a]):
            if a < b and a in top.get(b, ()):
                problems.append(f"layer cycle: module {a} <-> module {b}")
        for b in sorted(top[a] & FORBIDDEN.get(a, set())):
            problems.append(f"layering: module {a} imports module {b}")
        if "config" in top[a] and a not in COMMANDS:
            problems.append(f"layering: module {a} reads the command line's settings (config); pass it values")
    for p in problems:
        print(p)
    print(f"check_modules: {len(mods)} files, {sum(len(e) for e in edges.values())} imports, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
