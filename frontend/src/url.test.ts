import { describe, expect, it } from "vitest";
import { DEFAULT_FILTERS } from "./graph/filter";
import { LIMITS } from "./limits";
import { readUrl, writeUrl, type ViewState } from "./url";

const BASE: ViewState = { prompt: null, text: null, pinned: [], excluded: [], filters: { ...DEFAULT_FILTERS }, normalize: "none", selected: null, trace: null, focus: null, edgeSearch: null };

describe("URL state", () => {
  it("round-trips prompt, pins, selection, trace, focus and non-default controls", () => {
    const state: ViewState = {
      prompt: 12,
      text: null,
      pinned: ["h.0.mlp.c_fc:3", "h.1.attn.o_proj:7"],
      excluded: ["h.1.attn.o_proj:7"],
      filters: { ...DEFAULT_FILTERS, topK: 500, ciThreshold: 0.2 },
      normalize: "l1_target",
      selected: { key: "h.0.mlp.c_fc:3", pos: 4 },
      trace: { direction: "up", hops: 2 },
      focus: 4,
      edgeSearch: { source: "h.0.mlp.c_fc:3", target: "h.1.attn.q_proj:9" },
    };
    const search = writeUrl(state);
    expect(search).toBe(
      "?prompt=12&pinned=h.0.mlp.c_fc:3,h.1.attn.o_proj:7&excluded=h.1.attn.o_proj:7&node=h.0.mlp.c_fc:3@4&trace=up&hops=2&focus=4&edge=h.0.mlp.c_fc:3,h.1.attn.q_proj:9&top_k=500&ci=0.2&normalize=l1_target",
    );
    expect(readUrl(search)).toEqual({ state, problems: [] });
    expect(writeUrl(BASE)).toBe("");
  });

  it("reports what it ignores", () => {
    const { state, problems } = readUrl("?prompt=abc&pinned=,nokey,,a:1&excluded=b:2&top_k=-5&normalize=max&trace=up&focus=x");
    expect(state.excluded).toEqual([]);
    expect(problems.join(" | ")).toMatch(/excluded "b:2" is not among the pins/);
    expect(state.prompt).toBeNull();
    expect(state.pinned).toEqual(["a:1"]);
    expect(state.filters.topK).toBe(LIMITS.topK.min);
    expect(state.normalize).toBe("none");
    expect(state.trace).toBeNull();
    expect(state.focus).toBeNull();
    expect(problems.join(" | ")).toMatch(/prompt=abc/);
    expect(problems.join(" | ")).toMatch(/pin "nokey"/);
    expect(problems.join(" | ")).toMatch(/normalize=max/);
    expect(problems.join(" | ")).toMatch(/trace needs a node/);
    expect(problems.join(" | ")).toMatch(/focus=x/);
  });

  it("clamps controls to the limits the controls use", () => {
    const { state } = readUrl("?top_k=1e9&ci=7&hops=99&node=a:1@0&trace=down");
    expect(state.filters.topK).toBe(LIMITS.topK.max);
    expect(state.filters.ciThreshold).toBe(LIMITS.ciThreshold.max);
    expect(state.trace).toEqual({ direction: "down", hops: LIMITS.traceHops.max });
  });

  it("reads an edge search as SOURCE,TARGET and refuses anything else", () => {
    expect(readUrl("?edge=a.b:1,c.d:2").state.edgeSearch).toEqual({ source: "a.b:1", target: "c.d:2" });
    expect(readUrl("?edge=a.b%3A1%2Cc.d%3A2").state.edgeSearch).toEqual({ source: "a.b:1", target: "c.d:2" });
    for (const bad of ["a.b:1", "a.b:1,c.d:2,e:3", "a.b:1,a.b:1", "a.b:1,nokey", ""]) {
      const { state, problems } = readUrl(`?edge=${bad}`);
      expect(state.edgeSearch).toBeNull();
      expect(problems.join(" | ")).toMatch(/is not SOURCE,TARGET/);
    }
  });

  it("carries a prompt of one's own as text, which wins over a prompt id", () => {
    const state: ViewState = { ...BASE, text: "Once upon a time, 50% & more?\nYes", pinned: ["a.b:1"] };
    const search = writeUrl(state);
    expect(search.startsWith("?text=Once%20upon%20a%20time%2C%2050%25%20%26%20more%3F%0AYes&pinned=")).toBe(true);
    expect(readUrl(search)).toEqual({ state, problems: [] });
    const both = readUrl("?prompt=3&text=hi");
    expect(both.state.prompt).toBeNull();
    expect(both.state.text).toBe("hi");
    expect(both.problems.join(" | ")).toMatch(/the text is shown/);
    expect(readUrl("?text=%20%20").state.text).toBeNull();
  });
});
