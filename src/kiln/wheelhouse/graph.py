"""The build graph: which node's build needs which other node's wheel.

A node's ``build_deps`` are the in-tree nodes its build environment installs
(``--build-deps source``). Only a node built from source has them: a wheel taken
from an index (``--binary``, a seed) needs nothing built first. That is also how
a cycle is broken: :meth:`Graph.break_cycles` takes one node of each cycle from
the index (:attr:`Provenance.SEED`) and says which, so the report names it.

The functions below work on a plain mapping (node id -> the ids it needs), which
is what the scheduler is given too.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Iterable, Iterator, Mapping

from kiln.wheelhouse.model import Node, NodeKind, Provenance

Deps = Mapping[str, Collection[str]]


class Graph:
    """The nodes of one run, by id, in the order they were added."""

    def __init__(self, nodes: Iterable[Node] = ()) -> None:
        self.nodes: dict[str, Node] = {}
        for node in nodes:
            self.add(node)

    def add(self, node: Node) -> None:
        if node.id in self.nodes:
            raise ValueError(f"{node.id} is in the graph already")
        self.nodes[node.id] = node

    def __contains__(self, node_id: object) -> bool:
        return node_id in self.nodes

    def __getitem__(self, node_id: str) -> Node:
        return self.nodes[node_id]

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes.values())

    def __len__(self) -> int:
        return len(self.nodes)

    def edges(self) -> dict[str, tuple[str, ...]]:
        """Every node with the nodes its build needs; none for a node not built from source."""
        edges: dict[str, tuple[str, ...]] = {}
        for node_id, node in self.nodes.items():
            unknown = [dep for dep in node.build_deps if dep not in self.nodes]
            if unknown:
                raise ValueError(f"{node_id} needs {unknown[0]}, which is not in the graph")
            built = node.provenance is Provenance.SOURCE
            edges[node_id] = tuple(dict.fromkeys(node.build_deps)) if built else ()
        return edges

    def to_build(self) -> dict[str, tuple[str, ...]]:
        """What the scheduler is given: the nodes built from source, each with those of
        its build dependencies that are built from source too (the others' wheels come
        from an index, and are there already)."""
        edges = self.edges()
        source = {n for n, node in self.nodes.items() if node.provenance is Provenance.SOURCE}
        return {n: tuple(d for d in edges[n] if d in source) for n in edges if n in source}

    def topological(self) -> list[str]:
        """Every node, each after the nodes its build needs; ValueError on a cycle."""
        return topological(self.edges())

    def cycles(self) -> list[list[str]]:
        """One cycle of each group of nodes that need each other (see :func:`cycles`)."""
        return cycles(self.edges())

    def dependents(self, node_id: str) -> set[str]:
        """The nodes whose build needs ``node_id``, directly or not."""
        return dependents(self.edges(), node_id)

    def break_cycles(self) -> list[tuple[str, list[str]]]:
        """Take one node of each cycle from the index (Provenance.SEED) until none is
        left; return each seed with the cycle it broke (the seed first, each node
        needing the next and the last needing the seed)."""
        seeds: list[tuple[str, list[str]]] = []
        while True:
            edges = self.edges()
            components = cyclic_components(edges)
            if not components:
                return seeds
            for component in components:
                seed = self._choose_seed(component, edges)
                seeds.append((seed, cycle_through(seed, component, edges)))
                self.nodes[seed].provenance = Provenance.SEED

    def _choose_seed(self, component: list[str], edges: Deps) -> str:
        """The node whose wheel is best taken from the index: one with a wheel the
        lock or index named, a build requirement rather than a package of the tree
        (which the user asked to have built from source), the one most of the
        others need; else the first added."""
        members = set(component)
        needed_by = {n: sum(n in edges[m] for m in members) for n in component}
        order = {n: i for i, n in enumerate(self.nodes)}

        def rank(node_id: str) -> tuple[bool, bool, int, int]:
            node = self.nodes[node_id]
            return (
                not node.pin.wheels,
                node.kind is not NodeKind.BUILD,
                -needed_by[node_id],
                order[node_id],
            )

        return min(component, key=rank)


def topological(deps: Deps) -> list[str]:
    """The ids of ``deps``, each after those it needs (ids not in ``deps`` are taken
    as there already), keeping the given order where it is free; ValueError naming
    a cycle when there is one."""
    remaining = {n: sum(d in deps for d in set(ds)) for n, ds in deps.items()}
    users = reverse(deps)
    ready = deque(n for n, count in remaining.items() if count == 0)
    order: list[str] = []
    while ready:
        node_id = ready.popleft()
        order.append(node_id)
        for user in users[node_id]:
            remaining[user] -= 1
            if remaining[user] == 0:
                ready.append(user)
    if len(order) < len(remaining):
        [cycle, *_] = cycles(deps)
        raise ValueError(f"build dependency cycle: {describe_cycle(cycle)}")
    return order


def reverse(deps: Deps) -> dict[str, list[str]]:
    """Each id of ``deps`` with the ids that need it, in the given order."""
    users: dict[str, list[str]] = {n: [] for n in deps}
    for node_id, needs in deps.items():
        for dep in dict.fromkeys(needs):
            if dep in users:
                users[dep].append(node_id)
    return users


def dependents(deps: Deps, node_id: str) -> set[str]:
    """The ids whose build needs ``node_id``, directly or through others."""
    users = reverse(deps)
    found: set[str] = set()
    todo = [node_id]
    while todo:
        for user in users.get(todo.pop(), ()):
            if user not in found:
                found.add(user)
                todo.append(user)
    found.discard(node_id)
    return found


def cyclic_components(deps: Deps) -> list[list[str]]:
    """The groups of ids that need each other (strongly connected components of more
    than one id, or of one that needs itself), members in the given order (Tarjan's
    algorithm, without recursion: a tree can be deep)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    for root in deps:
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter([d for d in deps[root] if d in deps]))]
        while work:
            node_id, pending = work[-1]
            dep = next(pending, None)
            if dep is not None:
                if dep not in index:
                    index[dep] = low[dep] = len(index)
                    stack.append(dep)
                    on_stack.add(dep)
                    work.append((dep, iter([d for d in deps[dep] if d in deps])))
                elif dep in on_stack:
                    low[node_id] = min(low[node_id], index[dep])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node_id])
            if low[node_id] == index[node_id]:
                component: set[str] = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node_id:
                        break
                if len(component) > 1 or node_id in deps[node_id]:
                    found.append(component)
    order = {n: i for i, n in enumerate(deps)}
    groups = [sorted(c, key=order.__getitem__) for c in found]
    return sorted(groups, key=lambda group: order[group[0]])


def cycle_through(start: str, component: Collection[str], deps: Deps) -> list[str]:
    """A shortest cycle from ``start`` back to itself within ``component``: ``start``
    first, each id needing the next, the last needing ``start``."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node_id = queue.popleft()
        for dep in deps[node_id]:
            if dep == start:
                path = [node_id]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return path[::-1]
            if dep in component and dep not in came_from:
                came_from[dep] = node_id
                queue.append(dep)
    raise ValueError(f"{start} is on no cycle")


def cycles(deps: Deps) -> list[list[str]]:
    """One cycle of each group of ids that need each other, from its first id."""
    return [cycle_through(c[0], c, deps) for c in cyclic_components(deps)]


def describe_cycle(cycle: list[str]) -> str:
    """``a -> b -> a``: the cycle as a person reads it."""
    return " -> ".join([*cycle, cycle[0]])
