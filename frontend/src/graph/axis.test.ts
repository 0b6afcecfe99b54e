import { describe, expect, it } from "vitest";
import { planAxis } from "./axis";

describe("axis labels", () => {
  it("stay horizontal when every label fits its column", () => {
    const plan = planAxis([20, 30], 40, 150);
    expect(plan.angle).toBe(0);
    expect(plan.every).toBe(1);
  });

  it("turn 45° in medium columns and 90° in narrow ones, with room for the longest", () => {
    const medium = planAxis([60, 30], 22, 150);
    expect(medium.angle).toBe(45);
    expect(medium.room).toBeGreaterThanOrEqual(60);
    const narrow = planAxis([60, 30], 15, 150);
    expect(narrow.angle).toBe(90);
    expect(narrow.room).toBeGreaterThanOrEqual(60);
    expect(narrow.every).toBe(1);
  });

  it("share labels between columns narrower than a line, and cap the gutter", () => {
    const plan = planAxis([400], 5, 120);
    expect(plan.gutter).toBe(120);
    expect(plan.room).toBeLessThan(400);
    expect(plan.every).toBeGreaterThan(1);
  });
});
