"""Import cycles between the library's modules: every `crate::a::b` reference outside test code,
at the granularity of top-level modules and of their submodules (a/b)."""
import pathlib, re, sys
src = pathlib.Path(sys.argv[1])
def module_of(path):
    rel = path.relative_to(src).with_suffix('')
    parts = [p for p in rel.parts if p not in ('mod', 'lib')]
    return parts
edges = {}
for f in src.rglob('*.rs'):
    parts = module_of(f)
    if not parts: continue
    text = f.read_text().split('#[cfg(test)]')[0]
    for depth in (1, 2):
        me = '/'.join(parts[:depth])
        for m in re.finditer(r'crate::([a-z_]+)(?:::([a-z_]+))?', text):
            target = m.group(1) if depth == 1 or not m.group(2) else m.group(1) + '/' + m.group(2)
            if depth == 2 and not (src / m.group(1)).is_dir(): target = m.group(1)
            if target != me and not me.startswith(target + '/') and not target.startswith(me + '/'):
                edges.setdefault(me, set()).add(target)
        # super:: references from a submodule to a sibling
        if depth == 2 and len(parts) >= 2:
            for m in re.finditer(r'super::([a-z_]+)', text):
                sib = parts[0] + '/' + m.group(1)
                if sib != me and (src / parts[0] / (m.group(1) + '.rs')).exists() or (src / parts[0] / m.group(1)).is_dir():
                    if sib != me: edges.setdefault(me, set()).add(sib)
cycles = set()
def dfs(node, stack):
    for nxt in sorted(edges.get(node, ())):
        if nxt in stack:
            cyc = stack[stack.index(nxt):]
            i = cyc.index(min(cyc)); cycles.add(tuple(cyc[i:] + cyc[:i]))
        elif len(stack) < 12:
            dfs(nxt, stack + [nxt])
for n in list(edges): dfs(n, [n])
print(f"{len(edges)} modules with references, {sum(len(v) for v in edges.values())} edges, {len(cycles)} cycles")
for c in sorted(cycles): print(' -> '.join(c + (c[0],)))
