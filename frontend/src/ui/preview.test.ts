import { describe, expect, it } from "vitest";
import { signedText, valueDigits } from "./dom";
import { EDGE_COLOURS, edgeMarks, previewWindow } from "./preview";

describe("result previews", () => {
  it("show a few tokens around the marked positions, at least a minimum width", () => {
    expect(previewWindow([10], 100)).toEqual({ start: 4, end: 28 });
    expect(previewWindow([10, 40], 100)).toEqual({ start: 4, end: 47 });
    expect(previewWindow([2], 100)).toEqual({ start: 0, end: 24 });
    expect(previewWindow([30], 32)).toEqual({ start: 24, end: 32 });
    expect(previewWindow([], 5)).toEqual({ start: 0, end: 5 });
  });

  it("mark an edge's source and target in their colours, split when they share a token", () => {
    const apart = edgeMarks(3, 7, "a:1", "b:2");
    expect([...apart.keys()]).toEqual([3, 7]);
    expect(apart.get(3)).toMatchObject({ background: EDGE_COLOURS.source, data: { role: "source", pos: "3" } });
    expect(apart.get(7)).toMatchObject({ background: EDGE_COLOURS.target, data: { role: "target", pos: "7" } });
    const same = edgeMarks(5, 5, "a:1", "b:2");
    expect(same.size).toBe(1);
    expect(same.get(5)!.data.role).toBe("both");
    expect(same.get(5)!.background).toContain(EDGE_COLOURS.source);
    expect(same.get(5)!.background).toContain(EDGE_COLOURS.target);
  });
});

describe("signed values", () => {
  it("keep about four significant digits", () => {
    expect([0.1234, 12.345, 352.01, 4321.9].map(valueDigits)).toEqual([3, 2, 1, 0]);
    expect(signedText(-352.0155, valueDigits(-352.0155))).toBe("−352.0");
    expect(signedText(0.5, 3)).toBe("+0.500");
  });
});
