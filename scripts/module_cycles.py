#!/usr/bin/env python3
"""Import circles between the crate's top-level modules (src/X.rs or src/X/).

Builds the graph of `crate::X` references (through lib.rs's root re-exports such as
`crate::Error`), ignoring comments, doc links and `#[cfg(test)] mod tests`, prints each
module's dependencies and exits 1 if any strongly connected component has two or more
modules. Run: python3 scripts/module_cycles.py [src]."""
import re, os, sys, itertools
src = sys.argv[1] if len(sys.argv) > 1 else "src"
mods = {}
for name in os.listdir(src):
    p = os.path.join(src, name)
    if name.endswith(".rs") and name not in ("lib.rs", "main.rs"):
        mods[name[:-3]] = [p]
    elif os.path.isdir(p):
        mods[name] = [os.path.join(dp, f) for dp, _, fs in os.walk(p) for f in fs if f.endswith(".rs")]
# lib.rs aliases: `pub use stream as engine;`
alias = {"engine": "stream"}
# Root re-exports in lib.rs (`use crate::{Error, Header}` depends on their home modules).
for line in open(os.path.join(src, "lib.rs")):
    line = line.strip()
    if line.startswith("pub use ") and " as " not in line and not line.startswith("pub use crate::"):
        path = line[len("pub use "):].rstrip(";")
        home = path.split("::")[0]
        tail = path.split("::{", 1)[1].rstrip("}") if "::{" in path else path.rsplit("::", 1)[1]
        for n in tail.split(","):
            alias[n.strip()] = home
edges = {m: set() for m in mods}
pat = re.compile(r"\bcrate::([A-Za-z_][A-Za-z0-9_]*)")
group = re.compile(r"\buse\s+crate::\{([^;]*)\}", re.S)
for m, files in mods.items():
    for f in files:
        text = open(f).read()
        text = re.split(r"#\[cfg\(test\)\]\s*mod tests", text)[0]
        text = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("//"))
        names = set(pat.findall(text))
        for g in group.findall(text):
            names |= set(re.findall(r"(?:^|[,{\s])([A-Za-z_][A-Za-z0-9_]*)\s*(?:::|,|\}|$)", g))
        for n in names:
            n = alias.get(n, n)
            if n in mods and n != m:
                edges[m].add(n)
# Tarjan
index, low, stack, on, sccs, i = {}, {}, [], set(), [], [0]
def strong(v):
    index[v] = low[v] = i[0]; i[0] += 1; stack.append(v); on.add(v)
    for w in edges[v]:
        if w not in index:
            strong(w); low[v] = min(low[v], low[w])
        elif w in on:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        c = []
        while True:
            w = stack.pop(); on.discard(w); c.append(w)
            if w == v: break
        sccs.append(c)
for v in sorted(mods):
    if v not in index: strong(v)
for m in sorted(edges):
    print(f"{m:10} -> {', '.join(sorted(edges[m]))}")
cyc = [c for c in sccs if len(c) > 1]
print("cycles:", cyc if cyc else "none")
sys.exit(1 if cyc else 0)
