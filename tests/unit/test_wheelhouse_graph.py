"""Tests for kiln.wheelhouse.graph: order, cycles and their seeds, dependents."""

from __future__ import annotations

import pytest

from kiln.wheelhouse.graph import Graph, cycles, describe_cycle, topological
from kiln.wheelhouse.model import FileRef, Node, NodeKind, Pin, Provenance

PY = "cp311-test"


def node(
    name: str,
    *needs: str,
    kind: NodeKind = NodeKind.RUNTIME,
    provenance: Provenance = Provenance.SOURCE,
    wheel: bool = False,
) -> Node:
    wheels = (FileRef(f"file:///w/{name}-1.0-py3-none-any.whl", f"{name}-1.0-py3-none-any.whl"),)
    return Node(
        Pin(name, "1.0", wheels=wheels if wheel else ()),
        PY,
        kind=kind,
        provenance=provenance,
        build_deps=tuple(nid(n) for n in needs),
    )


def nid(name: str) -> str:
    return f"{name}==1.0@{PY}"


def names(ids: list[str]) -> list[str]:
    return [i.split("==")[0] for i in ids]


def test_topological_puts_every_build_dependency_before_its_users() -> None:
    # app needs lib and tool; lib needs tool; tool needs base; other stands alone.
    graph = Graph(
        [
            node("app", "lib", "tool"),
            node("lib", "tool"),
            node("other"),
            node("tool", "base"),
            node("base"),
        ]
    )
    order = names(graph.topological())
    assert sorted(order) == ["app", "base", "lib", "other", "tool"]
    for user, dep in [("app", "lib"), ("app", "tool"), ("lib", "tool"), ("tool", "base")]:
        assert order.index(dep) < order.index(user), order


def test_topological_refuses_a_cycle_and_names_it() -> None:
    graph = Graph([node("a", "b"), node("b", "c"), node("c", "a"), node("d")])
    with pytest.raises(ValueError, match=r"cycle: a==1\.0@cp311-test -> b==1\.0@cp311-test"):
        graph.topological()


def test_cycles_names_each_group_of_nodes_that_need_each_other() -> None:
    graph = Graph(
        [
            node("a", "b"),
            node("b", "a"),
            node("selfish", "selfish"),
            node("user", "a"),  # needs a cycle, is on none
            node("x", "y"),
            node("y", "z"),
            node("z", "x"),
        ]
    )
    assert [names(c) for c in graph.cycles()] == [["a", "b"], ["selfish"], ["x", "y", "z"]]


def test_describe_cycle_closes_the_loop() -> None:
    assert describe_cycle(["a", "b"]) == "a -> b -> a"


def test_break_cycles_seeds_one_node_per_cycle_and_says_which() -> None:
    graph = Graph(
        [
            node("app", "flit-core"),
            node("flit-core", "flit-core", kind=NodeKind.BUILD),
            node("setuptools-scm", "setuptools", kind=NodeKind.BUILD),
            node("setuptools", "setuptools-scm", kind=NodeKind.BUILD, wheel=True),
        ]
    )
    seeds = graph.break_cycles()

    assert [(seed.split("==")[0], names(cycle)) for seed, cycle in seeds] == [
        ("flit-core", ["flit-core"]),
        # The one with a wheel the lock named, the cycle starting from it.
        ("setuptools", ["setuptools", "setuptools-scm"]),
    ]
    assert {n.pin.name for n in graph if n.provenance is Provenance.SEED} == {
        "flit-core",
        "setuptools",
    }
    assert graph.cycles() == []
    # The seeds come from an index: nothing waits to build them, and they wait for nothing.
    assert graph.to_build() == {nid("app"): (), nid("setuptools-scm"): ()}


def test_break_cycles_seeds_a_build_requirement_rather_than_a_package_of_the_tree() -> None:
    graph = Graph([node("app", "helper"), node("helper", "app", kind=NodeKind.BUILD)])
    [(seed, cycle)] = graph.break_cycles()
    assert seed == nid("helper")
    assert cycle == [nid("helper"), nid("app")]
    assert graph[nid("app")].provenance is Provenance.SOURCE


def test_break_cycles_keeps_seeding_until_no_cycle_is_left() -> None:
    # One group with two cycles through different nodes: a <-> b and b <-> c; b is
    # needed by both others, so one seed (b) breaks both.
    graph = Graph([node("a", "b"), node("b", "a", "c"), node("c", "b")])
    seeds = graph.break_cycles()
    assert [s for s, _ in seeds] == [nid("b")]
    # A group whose first seed leaves a smaller cycle behind gets a second one.
    graph = Graph([node("p", "q"), node("q", "p", "r"), node("r", "q", "s"), node("s", "r")])
    seeds = graph.break_cycles()
    assert len(seeds) == 2
    assert graph.cycles() == []
    for seed, cycle in seeds:
        assert cycle[0] == seed


def test_dependents_are_every_node_that_needs_one_directly_or_not() -> None:
    graph = Graph(
        [node("base"), node("tool", "base"), node("lib", "tool"), node("app", "lib"), node("x")]
    )
    assert graph.dependents(nid("base")) == {nid("tool"), nid("lib"), nid("app")}
    assert graph.dependents(nid("app")) == set()


def test_to_build_leaves_out_the_wheels_taken_from_an_index() -> None:
    graph = Graph(
        [
            node("app", "cmake", "lib"),
            node("cmake", "scikit-build", provenance=Provenance.BINARY),
            node("scikit-build"),
            node("lib"),
            node("skipped", "lib", provenance=Provenance.SKIP),
        ]
    )
    assert graph.to_build() == {nid("app"): (nid("lib"),), nid("scikit-build"): (), nid("lib"): ()}


def test_an_unknown_build_dependency_or_a_second_node_with_one_id_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"app==1\.0@cp311-test needs ghost==1\.0@cp311-test"):
        Graph([node("app", "ghost")]).topological()
    with pytest.raises(ValueError, match="in the graph already"):
        Graph([node("app"), node("app")])


def test_the_functions_take_ids_outside_the_mapping_as_there_already() -> None:
    assert topological({"b": ["a", "outside"], "a": []}) == ["a", "b"]
    assert cycles({"a": ["a", "outside"]}) == [["a"]]
