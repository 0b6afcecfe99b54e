import { describe, expect, it } from "vitest";
import { componentEdge, parseGraphFile, toGraphData, toGraphFile } from "./data";
import { promptGraph } from "./testing";

describe("graph files", () => {
  const graph = promptGraph(["a", "b"], [["h.0.mlp.c_fc", 0, 1, 0.5], ["h.1.mlp.c_fc", 1, 2, 0.25]], [[0, 1, -0.5]], {
    "h.0.mlp.c_fc:1": 0.1,
  });

  it("an exported graph opens to the same graph", () => {
    const text = JSON.stringify(toGraphFile(graph, ["h.0.mlp.c_fc", "h.1.mlp.c_fc"], {}));
    const opened = parseGraphFile(text);
    expect(opened.graph).toEqual(graph);
    expect(opened.layerOrder).toEqual(["h.0.mlp.c_fc", "h.1.mlp.c_fc"]);
  });

  it("also opens a raw API response", () => {
    expect(parseGraphFile(JSON.stringify(graph)).graph.edges).toEqual(graph.edges);
  });

  it("says what is wrong with a bad file", () => {
    expect(() => parseGraphFile("{")).toThrow(/invalid JSON/);
    expect(() => parseGraphFile('{"tokens": [], "nodes": [], "edges": [{"source": 0, "target": 1, "value": 1}]}')).toThrow(
      /edges\[0\]/,
    );
    expect(() => parseGraphFile('{"format": "other"}')).toThrow(/format/);
  });

  it("columnar form keeps keys and values", () => {
    const data = toGraphData(graph);
    expect(data.nodeKey).toEqual(["h.0.mlp.c_fc:1", "h.1.mlp.c_fc:2"]);
    expect(Array.from(data.edgeValue)).toEqual([-0.5]);
    expect(data.meanCi.get("h.0.mlp.c_fc:1")).toBe(0.1);
  });

  it("names the components at an edge's ends, and only between components", () => {
    const data = toGraphData(
      promptGraph(
        ["a", "b"],
        [["wte", 0, 5, 1], ["h.0.mlp.c_fc", 0, 1, 0.5], ["h.1.mlp.c_fc", 1, 2, 0.25], ["output", 1, 9, 0.7]],
        [[1, 2, 0.4], [0, 1, 1.5], [2, 3, -0.2]],
      ),
    );
    expect(componentEdge(data, 0)).toEqual({ source: "h.0.mlp.c_fc:1", target: "h.1.mlp.c_fc:2" });
    expect(componentEdge(data, 1)).toBeNull();
    expect(componentEdge(data, 2)).toBeNull();
  });
});
