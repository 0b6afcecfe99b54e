import { describe, expect, it } from "vitest";
import { toGraphData } from "./data";
import { DEFAULT_FILTERS, filterGraph } from "./filter";
import { promptGraph } from "./testing";

const graph = toGraphData(
  promptGraph(
    ["a", "b"],
    [
      ["h.0.mlp.c_fc", 0, 1, 0.9], // 0
      ["h.0.mlp.c_fc", 1, 2, 0.05], // 1
      ["h.0.mlp.down_proj", 1, 3, 0.5], // 2
      ["h.1.attn.o_proj", 1, 4, 0.7], // 3
    ],
    [
      [2, 3, 0.8],
      [0, 2, -0.6],
      [1, 2, 0.3],
      [0, 3, 0.1],
    ],
    { "h.0.mlp.c_fc:1": 0.9 },
  ),
);

describe("filterGraph", () => {
  it("keeps everything with the defaults, strongest first", () => {
    const visible = filterGraph(graph, DEFAULT_FILTERS);
    expect(Array.from(visible.edges)).toEqual([0, 1, 2, 3]);
    expect(Array.from(visible.nodes)).toEqual([0, 1, 2, 3]);
    expect(visible.maxAbs).toBeCloseTo(0.8);
  });

  it("top-K keeps the K strongest and drops nodes left without edges", () => {
    const visible = filterGraph(graph, { ...DEFAULT_FILTERS, topK: 2 });
    expect(Array.from(visible.edges)).toEqual([0, 1]);
    expect(Array.from(visible.nodes)).toEqual([0, 2, 3]);
  });

  it("min |attribution| compares magnitudes, so negative edges count", () => {
    const visible = filterGraph(graph, { ...DEFAULT_FILTERS, minAbs: 0.5 });
    expect(Array.from(visible.edges)).toEqual([0, 1]);
  });

  it("the CI threshold hides nodes and every edge touching them", () => {
    const visible = filterGraph(graph, { ...DEFAULT_FILTERS, ciThreshold: 0.1 });
    expect(Array.from(visible.edges)).toEqual([0, 1, 3]);
    expect(Array.from(visible.nodes)).not.toContain(1);
  });

  it("max mean CI hides components that fire everywhere; unknown mean CI passes", () => {
    const visible = filterGraph(graph, { ...DEFAULT_FILTERS, maxMeanCi: 0.5 });
    expect(Array.from(visible.edges)).toEqual([0, 2]);
    expect(Array.from(visible.nodes)).toEqual([1, 2, 3]);
  });

  it("max share hides components firing in too many prompts; unknown counts and inputs pass", () => {
    const raw = promptGraph(
      ["a", "b"],
      [
        ["wte", 0, 0, 1], // 0
        ["h.0.mlp.c_fc", 0, 1, 0.9], // 1: in 90 of 100 prompts
        ["h.0.mlp.c_fc", 1, 2, 0.5], // 2: in 5
        ["h.1.mlp.c_fc", 1, 3, 0.5], // 3: count unknown
      ],
      [
        [0, 1, 0.5],
        [0, 2, 0.4],
        [1, 3, 0.3],
        [2, 3, 0.2],
      ],
    );
    const counted = toGraphData({ ...raw, prompt_counts: { "h.0.mlp.c_fc:1": 90, "h.0.mlp.c_fc:2": 5 } }, 100);
    const visible = filterGraph(counted, { ...DEFAULT_FILTERS, maxShare: 0.5 });
    expect(Array.from(visible.nodes)).toEqual([0, 2, 3]);
    expect(Array.from(visible.edges)).toEqual([1, 3]);
    // without the database's prompt count nothing is hidden
    const unknownTotal = toGraphData({ ...raw, prompt_counts: { "h.0.mlp.c_fc:1": 90 } });
    expect(filterGraph(unknownTotal, { ...DEFAULT_FILTERS, maxShare: 0.5 }).edges).toHaveLength(4);
  });

  it("sorts edges that do not arrive strongest first", () => {
    const shuffled = toGraphData(
      promptGraph(["a"], [["x", 0, 0, 1], ["y", 0, 0, 1]], [[0, 1, 0.1], [0, 1, -0.9], [0, 1, 0.5]]),
    );
    expect(Array.from(filterGraph(shuffled, { ...DEFAULT_FILTERS, topK: 2 }).edges)).toEqual([1, 2]);
  });

  it("an edgeless graph still shows its nodes", () => {
    const lonely = toGraphData(promptGraph(["a"], [["x", 0, 0, 1]], []));
    expect(Array.from(filterGraph(lonely, DEFAULT_FILTERS).nodes)).toEqual([0]);
  });
});
