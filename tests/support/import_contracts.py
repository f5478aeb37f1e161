"""An import-linter contract: no import cycle between any two modules of ours, at any depth.

`acyclic_siblings` (import-linter's own) squashes packages; this one looks at every module,
package `__init__`s and imports inside functions included, so no import hidden in a function
can dodge a cycle (docs/architecture.md, "Dependency rules")."""
from __future__ import annotations

from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck
from importlinter.application import output


class NoCyclesContract(Contract):
    type_name = "no_cycles"

    packages = fields.ListField(subfield=fields.StringField())

    def check(self, graph, verbose: bool) -> ContractCheck:
        roots = list(self.packages)  # type: ignore[arg-type]
        mods = sorted(m for m in graph.modules if m.split(".")[0] in roots)
        adj = {m: sorted(x for x in graph.find_modules_directly_imported_by(m) if x.split(".")[0] in roots)
               for m in mods}
        cycles = _strongly_connected(mods, adj)
        return ContractCheck(kept=not cycles, metadata={"cycles": cycles})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for comp in check.metadata["cycles"]:
            output.print_error(f"import cycle: {' <-> '.join(comp)}", bold=True)
            output.new_line()


def _strongly_connected(nodes: list[str], adj: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; the components of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(adj[start]))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(adj[nxt])))
                elif nxt in on:
                    low[v] = min(low[v], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found
