import { describe, expect, it } from "vitest";
import { DEFAULT_FILTERS } from "./graph/filter";
import { readUrl, writeUrl } from "./url";

describe("URL state", () => {
  it("round-trips prompt, pins and non-default controls", () => {
    const state = {
      prompt: 12,
      pinned: ["h.0.mlp.c_fc:3", "h.1.attn.o_proj:7"],
      filters: { ...DEFAULT_FILTERS, topK: 500, ciThreshold: 0.2 },
      normalize: "l1_target" as const,
    };
    const search = writeUrl(state);
    expect(search).toBe("?prompt=12&pinned=h.0.mlp.c_fc:3,h.1.attn.o_proj:7&top_k=500&ci=0.2&normalize=l1_target");
    expect(readUrl(search)).toEqual(state);
  });

  it("ignores junk", () => {
    const state = readUrl("?prompt=abc&pinned=,nokey,,a:1&top_k=-5&normalize=max");
    expect(state.prompt).toBeNull();
    expect(state.pinned).toEqual(["a:1"]);
    expect(state.filters.topK).toBe(1);
    expect(state.normalize).toBe("none");
  });
});
