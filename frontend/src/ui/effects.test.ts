import { describe, expect, it } from "vitest";
import { ApiError, splitLines } from "../api/client";
import { deltaBackground, deltaText, percent, problemLine, top1Changed } from "./effects";

const tok = (token_id: number, prob = 0.5) => ({ token: `t${token_id}`, token_id, prob });

describe("intervention effects", () => {
  it("writes probabilities as short percentages", () => {
    expect([0.999999, 0.523, 0.034, 0.0012, 0.00001].map(percent)).toEqual(["100%", "52%", "3.4%", "0.12%", "<0.01%"]);
  });

  it("colours changes by sign and size, none for no change", () => {
    expect(deltaBackground(0)).toBe("");
    expect(deltaBackground(null)).toBe("");
    expect(deltaBackground(-1)).toMatch(/^rgba\(213, 94, 0,/);
    expect(deltaBackground(1)).toMatch(/^rgba\(0, 114, 178,/);
    const alpha = (value: number) => Number(/([\d.]+)\)$/.exec(deltaBackground(value))![1]);
    expect(alpha(-0.1)).toBeLessThan(alpha(-1));
    expect(alpha(-2)).toBe(alpha(-20));
    expect(deltaText(-0.5)).toBe("−0.50");
    expect(deltaText(12.345)).toBe("+12.35");
    expect(deltaText(-0.0007)).toBe("0.00");
    expect(deltaText(null)).toBe("–");
  });

  it("knows when the top-1 token changed", () => {
    expect(top1Changed({ spd: [tok(1), tok(2)], intervened: [tok(1), tok(3)] })).toBe(false);
    expect(top1Changed({ spd: [tok(1)], intervened: [tok(2)] })).toBe(true);
  });

  it("says what went wrong in one sentence", () => {
    expect(problemLine(new ApiError(409, "no_model", "this server holds no model"), "Computing the graph")).toBe(
      "Computing the graph needs a model: this server holds no model.",
    );
    expect(problemLine(new ApiError(503, "model_busy", "the model is busy", 2), "X")).toBe("X failed, the server is busy (try again in 2 s): the model is busy.");
    expect(problemLine(new ApiError(422, "invalid", "token id 9 is outside"), "X")).toBe("X failed: token id 9 is outside.");
  });

  it("splits a stream into lines, keeping the unfinished tail", () => {
    const lines: string[] = [];
    const rest = splitLines('{"a":1}\n\n{"b":2}\n{"c"', (line) => lines.push(line));
    expect(lines).toEqual(['{"a":1}', '{"b":2}']);
    expect(rest).toBe('{"c"');
  });
});
