"""A pipeline's steps compiled into a graph of nodes, the way Ductile's compiler does.

Ductile (``internal/router/dsl/compiler.go``) turns the step list into a DAG:

* a ``uses``, ``call`` or ``relay`` step is a **node**, known by its id (given, or numbered
  ``step_<n>`` when the config is read: :func:`chamberlain.config.sections.number_steps`);
* a ``steps:`` step is a sequence: each of its steps follows the one before;
* a ``split:`` step is a set of branches: the step before it leads to the first node
  of every branch, and the step after it follows the last node of every branch;
* in any sequence, each node that ends a step leads to every node that starts the
  next one.

So the step after a split has one predecessor per branch, and it runs once for each
branch that finishes, with that branch's output: Ductile joins nothing, and neither
does the planner. A node with an ``if:`` that does not hold is skipped: its input
goes on to its successors (Ductile's ``core.switch`` false exit leads to the same
places). A ``call`` node runs the called pipeline's first nodes instead of a plugin;
the called pipeline's steps belong to it, and its last step ends the run, as in
Ductile, whose route for a called pipeline's last step goes nowhere. The nodes after
a ``call`` are therefore never reached; :func:`unreachable` names them so start-up
can say so.

Everything here is pure: :func:`compile_graph` only reads the config records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from chamberlain.config import PipelineConfig, StepConfig


@attrs.frozen(kw_only=True)
class Node:
    """One ``uses``, ``call`` or ``relay`` step of a pipeline, and the nodes that
    follow it."""

    id: str
    #: The step as configured (its ``id`` given); ``uses``, ``call`` or ``relay`` is set.
    step: StepConfig
    #: Its YAML path, for messages: ``pipelines[0].steps[1].split[0]``.
    at: str
    successors: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class Graph:
    """One pipeline's nodes, by id, and the ids of the nodes it starts with."""

    pipeline: PipelineConfig
    nodes: Mapping[str, Node]
    entries: tuple[str, ...]
    #: Steps whose id an earlier step took: in no run, but still checked at start-up.
    shadowed: tuple[Node, ...] = ()

    @property
    def calls(self) -> tuple[Node, ...]:
        """The ``call`` nodes, in the order of the config."""
        return tuple(node for node in self.nodes.values() if node.step.call is not None)


@attrs.define
class _Builder:
    where: str
    nodes: dict[str, Node] = attrs.field(factory=dict)
    successors: dict[str, list[str]] = attrs.field(factory=dict)
    shadowed: list[Node] = attrs.field(factory=list)
    problems: list[str] = attrs.field(factory=list)

    def link(self, sources: Sequence[str], targets: Sequence[str]) -> None:
        for source in sources:
            following = self.successors[source]
            following.extend(t for t in targets if t not in following)

    def sequence(self, steps: Sequence[StepConfig], at: str) -> tuple[list[str], list[str]]:
        """The entry and exit nodes of ``steps`` run one after the other."""
        entries: list[str] = []
        exits: list[str] = []
        for index, step in enumerate(steps):
            first, last = self.step(step, f"{at}[{index}]")
            if index == 0:
                entries = first
            self.link(exits, first)
            exits = last
        return entries, exits

    def step(self, step: StepConfig, at: str) -> tuple[list[str], list[str]]:
        if step.uses is not None or step.call is not None or step.relay is not None:
            assert step.id is not None, "numbered when the config was read"
            if step.id in self.nodes:
                also = self.nodes[step.id].at.removeprefix(f"{self.where}.")
                self.problems.append(f"{at}.id: duplicate step id {step.id!r} (also {also})")
                self.shadowed.append(Node(id=step.id, step=step, at=at))
                return [], []
            self.nodes[step.id] = Node(id=step.id, step=step, at=at)
            self.successors[step.id] = []
            return [step.id], [step.id]
        if step.steps:
            return self.sequence(step.steps, f"{at}.steps")
        entries: list[str] = []
        exits: list[str] = []
        for index, branch in enumerate(step.split):
            first, last = self.step(branch, f"{at}.split[{index}]")
            entries.extend(first)
            exits.extend(last)
        return entries, exits


def compile_graph(pipeline: PipelineConfig, where: str) -> tuple[Graph, list[str]]:
    """``pipeline``'s graph, and the problems (duplicate ids) found building it;
    ``where`` is the pipeline's YAML path, for those messages."""
    builder = _Builder(where=where)
    entries, _ = builder.sequence(pipeline.steps, f"{where}.steps")
    nodes = {
        node_id: attrs.evolve(node, successors=tuple(builder.successors[node_id]))
        for node_id, node in builder.nodes.items()
    }
    graph = Graph(
        pipeline=pipeline,
        nodes=nodes,
        entries=tuple(entries),
        shadowed=tuple(builder.shadowed),
    )
    return graph, builder.problems


def unreachable(graph: Graph) -> list[Node]:
    """The nodes no run of ``graph`` reaches: those only a ``call`` node leads to."""
    seen: set[str] = set()
    todo = list(graph.entries)
    while todo:
        node_id = todo.pop()
        if node_id in seen:
            continue
        seen.add(node_id)
        node = graph.nodes[node_id]
        if node.step.call is None:
            todo.extend(node.successors)
    return [node for node_id, node in graph.nodes.items() if node_id not in seen]


def call_problems(graphs: Mapping[str, Graph]) -> list[str]:
    """Calls of pipelines that do not exist, and pipelines that call each other in a
    loop (which Ductile refuses too: ``validatePipelineCalls``)."""
    problems: list[str] = []
    for graph in graphs.values():
        for node in graph.calls:
            if node.step.call not in graphs:
                problems.append(f"{node.at}.call: no pipeline named {node.step.call!r}")
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        state[name] = "open"
        for node in graphs[name].calls:
            called = node.step.call
            assert called is not None
            if called not in graphs:
                continue
            if state.get(called) == "open":
                loop = " -> ".join([*trail[trail.index(called) :], called])
                problems.append(f"{node.at}.call: pipelines call each other in a cycle: {loop}")
            elif called not in state:
                visit(called, [*trail, called])
        state[name] = "done"

    for name in graphs:
        if name not in state:
            visit(name, [name])
    return problems


def route_depths(graphs: Mapping[str, Graph]) -> dict[str, int]:
    """Each pipeline's ``route_max_depth`` when it sets no ``max_depth``: the number of
    nodes on its longest path, a ``call`` counting as the called pipeline's own
    depth, and at least 1 (Ductile's ``assignPipelineMaxRouteDepths``).

    Call cycles and unknown calls count as one node here; start-up refuses them
    (:func:`call_problems`).
    """
    pipelines: dict[str, int] = {}

    def of_pipeline(name: str, visiting: frozenset[str]) -> int:
        if name in pipelines:
            return pipelines[name]
        graph = graphs[name]
        memo: dict[str, int] = {}

        def of_node(node_id: str, path: frozenset[str]) -> int:
            if node_id in memo:
                return memo[node_id]
            node = graph.nodes[node_id]
            called = node.step.call
            own = 1
            if called is not None and called in graphs and called not in visiting:
                own = of_pipeline(called, visiting | {name})
            onward = [
                of_node(n, path | {node_id}) for n in node.successors if n not in path | {node_id}
            ]
            memo[node_id] = own + max(onward, default=0)
            return memo[node_id]

        depth = max((of_node(entry, frozenset()) for entry in graph.entries), default=0)
        pipelines[name] = max(depth, 1)
        return pipelines[name]

    for name in graphs:
        of_pipeline(name, frozenset())
    return pipelines
