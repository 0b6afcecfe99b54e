import { describe, expect, it } from "vitest";
import { toGraphData } from "./data";
import { DEFAULT_FILTERS, filterGraph } from "./filter";
import { promptGraph } from "./testing";
import { nodeEdges, traceGraph } from "./trace";

// wte@0 (0) -> a (1) -> c (3) -> out (4); b (2) -> c; a -> b weakly
const graph = toGraphData(
  promptGraph(
    ["x", "y"],
    [
      ["wte", 0, 0, 1],
      ["h.0.mlp.c_fc", 0, 1, 0.9],
      ["h.0.mlp.c_fc", 1, 2, 0.5],
      ["h.1.mlp.c_fc", 1, 3, 0.7],
      ["output", 1, 42, 0.6],
    ],
    [
      [0, 1, 2.0],
      [1, 3, -1.5],
      [2, 3, 0.5],
      [3, 4, 1.0],
      [1, 2, 0.1],
    ],
  ),
);

describe("node edges", () => {
  it("lists the strongest incoming and outgoing edges, signed", () => {
    const { incoming, outgoing } = nodeEdges(graph, 3, 8);
    expect(incoming.map((e) => [e.other, e.value])).toEqual([
      [1, -1.5],
      [2, 0.5],
    ]);
    expect(outgoing.map((e) => e.other)).toEqual([4]);
    expect(nodeEdges(graph, 3, 1).incoming).toHaveLength(1);
  });
});

describe("trace", () => {
  const visible = filterGraph(graph, DEFAULT_FILTERS);

  it("upstream follows edges towards the inputs", () => {
    const up = traceGraph(graph, visible, 3, "up", 8, 5);
    expect(Array.from(up.nodes)).toEqual([0, 1, 2, 3]);
    expect(up.edges.length).toBe(4);
  });

  it("downstream follows edges towards the outputs, hops bound the depth", () => {
    expect(Array.from(traceGraph(graph, visible, 0, "down", 8, 5).nodes)).toEqual([0, 1, 2, 3, 4]);
    expect(Array.from(traceGraph(graph, visible, 0, "down", 1, 5).nodes)).toEqual([0, 1]);
  });

  it("fan-out keeps only the strongest edges of each node", () => {
    const narrow = traceGraph(graph, visible, 1, "down", 1, 1);
    expect(Array.from(narrow.nodes)).toEqual([1, 3]);
    expect(narrow.maxAbs).toBe(1.5);
  });
});
