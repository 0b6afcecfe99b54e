// The view's state in the address bar: `?prompt=ID&pinned=KEY,KEY` (+ non-default controls).
import type { Normalize } from "./api/client";
import { DEFAULT_FILTERS, type FilterOptions } from "./graph/filter";

export interface ViewState {
  prompt: number | null;
  pinned: string[];
  filters: FilterOptions;
  normalize: Normalize;
}

const NORMALIZE: readonly Normalize[] = ["none", "l1_target", "l2_target"];

function number(params: URLSearchParams, name: string, fallback: number, low: number, high: number): number {
  const raw = params.get(name);
  const value = raw === null || raw === "" ? Number.NaN : Number(raw);
  return Number.isFinite(value) ? Math.min(high, Math.max(low, value)) : fallback;
}

export function readUrl(search: string): ViewState {
  const params = new URLSearchParams(search);
  const prompt = Number(params.get("prompt"));
  const normalize = params.get("normalize") as Normalize | null;
  return {
    prompt: Number.isInteger(prompt) && prompt > 0 ? prompt : null,
    pinned: [...new Set((params.get("pinned") ?? "").split(",").map((k) => k.trim()).filter((k) => k.includes(":")))],
    filters: {
      topK: Math.round(number(params, "top_k", DEFAULT_FILTERS.topK, 1, 100_000)),
      minAbs: number(params, "min_abs", DEFAULT_FILTERS.minAbs, 0, Infinity),
      ciThreshold: number(params, "ci", DEFAULT_FILTERS.ciThreshold, 0, 1),
      maxMeanCi: number(params, "max_mean_ci", DEFAULT_FILTERS.maxMeanCi, 0, 1),
    },
    normalize: normalize && NORMALIZE.includes(normalize) ? normalize : "none",
  };
}

/** The query string (with "?", or "" when everything is default); commas in keys stay readable. */
export function writeUrl(state: ViewState): string {
  const parts: string[] = [];
  if (state.prompt !== null) parts.push(`prompt=${state.prompt}`);
  if (state.pinned.length) parts.push(`pinned=${state.pinned.map((k) => encodeURIComponent(k).replace(/%3A/gi, ":")).join(",")}`);
  const f = state.filters;
  if (f.topK !== DEFAULT_FILTERS.topK) parts.push(`top_k=${f.topK}`);
  if (f.minAbs !== DEFAULT_FILTERS.minAbs) parts.push(`min_abs=${f.minAbs}`);
  if (f.ciThreshold !== DEFAULT_FILTERS.ciThreshold) parts.push(`ci=${f.ciThreshold}`);
  if (f.maxMeanCi !== DEFAULT_FILTERS.maxMeanCi) parts.push(`max_mean_ci=${f.maxMeanCi}`);
  if (state.normalize !== "none") parts.push(`normalize=${state.normalize}`);
  return parts.length ? `?${parts.join("&")}` : "";
}
