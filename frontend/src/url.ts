// The view's state in the address bar: `?prompt=ID&pinned=KEY,KEY&node=KEY@POS&focus=POS&trace=up`
// `&edge=SOURCE,TARGET` (+ non-default controls); `?text=...` instead of `prompt` names a prompt
// of one's own, whose graph the server computes. Reading reports what it had to drop, so the page
// can say so.
import type { Normalize } from "./api/client";
import type { FilterOptions } from "./graph/filter";
import { LIMITS, clampTo, type LimitName } from "./limits";

export type TraceDirection = "up" | "down";

/** A node of the graph named so that it survives a reload: component key and position. */
export interface NodeRef {
  key: string;
  pos: number;
}

/** An edge between two components at any positions (source in the earlier layer), as the
 * corpus edge search asks for it. */
export interface EdgeRef {
  source: string;
  target: string;
}

export function sameEdge(a: EdgeRef | null, b: EdgeRef | null): boolean {
  return a === b || (a !== null && b !== null && a.source === b.source && a.target === b.target);
}

export interface Trace {
  direction: TraceDirection;
  hops: number;
}

export interface ViewState {
  /** The stored prompt shown (null with `text`, or before one is chosen). */
  prompt: number | null;
  /** A prompt of one's own, computed by the server's model (null: a stored prompt). */
  text: string | null;
  pinned: string[];
  /** Pins marked "must not fire": searches exclude them (a subset of `pinned`). */
  excluded: string[];
  filters: FilterOptions;
  normalize: Normalize;
  /** The selected node (its card is docked in the side panel); a trace starts from it. */
  selected: NodeRef | null;
  /** Show only what the selected node reaches upstream or downstream. */
  trace: Trace | null;
  /** A token position to focus: everything else is dimmed. */
  focus: number | null;
  /** The edge whose prompts the search panel lists (null: no edge search). */
  edgeSearch: EdgeRef | null;
}

export interface ParsedUrl {
  state: ViewState;
  /** Sentences about parameters that were malformed and ignored. */
  problems: string[];
}

const NORMALIZE: readonly Normalize[] = ["none", "l1_target", "l2_target"];
const KEY = /^[^\s,:@]+:\d+$/;

export function isComponentKey(key: string): boolean {
  return KEY.test(key);
}

function nodeRef(raw: string): NodeRef | null {
  const at = raw.lastIndexOf("@");
  const pos = Number(raw.slice(at + 1));
  const key = raw.slice(0, at);
  return at > 0 && Number.isInteger(pos) && pos >= 0 && isComponentKey(key) ? { key, pos } : null;
}

export function readUrl(search: string): ParsedUrl {
  const params = new URLSearchParams(search);
  const problems: string[] = [];
  const number = (param: string, name: LimitName): number => {
    const raw = params.get(param);
    if (raw === null || raw === "") return LIMITS[name].default;
    const value = Number(raw);
    if (!Number.isFinite(value)) problems.push(`${param}=${raw} is not a number`);
    return clampTo(name, value);
  };

  const rawPrompt = params.get("prompt");
  const prompt = Number(rawPrompt);
  const promptOk = rawPrompt !== null && /^\d+$/.test(rawPrompt) && prompt > 0;
  if (rawPrompt !== null && !promptOk) problems.push(`prompt=${rawPrompt} is not a prompt id`);

  const rawText = params.get("text");
  const text = rawText !== null && rawText.trim() !== "" ? rawText : null;
  if (rawText !== null && text === null) problems.push("text= is empty");
  if (text !== null && promptOk) problems.push(`prompt=${rawPrompt} and text both given: the text is shown`);

  const pinned: string[] = [];
  for (const raw of (params.get("pinned") ?? "").split(",")) {
    const key = raw.trim();
    if (!key) continue;
    if (!isComponentKey(key)) problems.push(`pin "${key}" is not a component key (layer:index)`);
    else if (!pinned.includes(key)) pinned.push(key);
  }

  const excluded: string[] = [];
  for (const raw of (params.get("excluded") ?? "").split(",")) {
    const key = raw.trim();
    if (!key) continue;
    if (!pinned.includes(key)) problems.push(`excluded "${key}" is not among the pins`);
    else if (!excluded.includes(key)) excluded.push(key);
  }

  const rawNode = params.get("node");
  const selected = rawNode ? nodeRef(rawNode) : null;
  if (rawNode && !selected) problems.push(`node=${rawNode} is not layer:index@position`);

  const rawTrace = params.get("trace");
  let trace: Trace | null = null;
  if (rawTrace === "up" || rawTrace === "down") {
    if (selected) trace = { direction: rawTrace, hops: number("hops", "traceHops") };
    else problems.push("trace needs a node (node=layer:index@position)");
  } else if (rawTrace !== null) {
    problems.push(`trace=${rawTrace} is not up or down`);
  }

  const rawFocus = params.get("focus");
  const focus = rawFocus !== null && /^\d+$/.test(rawFocus) ? Number(rawFocus) : null;
  if (rawFocus !== null && focus === null) problems.push(`focus=${rawFocus} is not a position`);

  const rawEdge = params.get("edge");
  const ends = (rawEdge ?? "").split(",");
  const edgeSearch = ends.length === 2 && ends.every(isComponentKey) && ends[0] !== ends[1] ? { source: ends[0]!, target: ends[1]! } : null;
  if (rawEdge !== null && !edgeSearch) problems.push(`edge=${rawEdge} is not SOURCE,TARGET (two component keys)`);

  const rawNormalize = params.get("normalize");
  const normalize = NORMALIZE.find((n) => n === rawNormalize) ?? "none";
  if (rawNormalize !== null && normalize !== rawNormalize) problems.push(`normalize=${rawNormalize} is unknown`);

  return {
    state: {
      prompt: promptOk && text === null ? prompt : null,
      text,
      pinned,
      excluded,
      filters: {
        topK: number("top_k", "topK"),
        minAbs: number("min_abs", "minAbs"),
        ciThreshold: number("ci", "ciThreshold"),
        maxMeanCi: number("max_mean_ci", "maxMeanCi"),
        maxShare: number("max_share", "maxShare"),
      },
      normalize,
      selected,
      trace,
      focus,
      edgeSearch,
    },
    problems,
  };
}

const readableKey = (key: string): string => encodeURIComponent(key).replace(/%3A/gi, ":");

/** The query string (with "?", or "" when everything is default); keys stay readable. */
export function writeUrl(state: ViewState): string {
  const parts: string[] = [];
  if (state.prompt !== null) parts.push(`prompt=${state.prompt}`);
  if (state.text !== null) parts.push(`text=${encodeURIComponent(state.text)}`);
  if (state.pinned.length) parts.push(`pinned=${state.pinned.map(readableKey).join(",")}`);
  if (state.excluded.length) parts.push(`excluded=${state.excluded.map(readableKey).join(",")}`);
  if (state.selected) parts.push(`node=${readableKey(state.selected.key)}@${state.selected.pos}`);
  if (state.selected && state.trace) {
    parts.push(`trace=${state.trace.direction}`);
    if (state.trace.hops !== LIMITS.traceHops.default) parts.push(`hops=${state.trace.hops}`);
  }
  if (state.focus !== null) parts.push(`focus=${state.focus}`);
  if (state.edgeSearch) parts.push(`edge=${readableKey(state.edgeSearch.source)},${readableKey(state.edgeSearch.target)}`);
  const f = state.filters;
  if (f.topK !== LIMITS.topK.default) parts.push(`top_k=${f.topK}`);
  if (f.minAbs !== LIMITS.minAbs.default) parts.push(`min_abs=${f.minAbs}`);
  if (f.ciThreshold !== LIMITS.ciThreshold.default) parts.push(`ci=${f.ciThreshold}`);
  if (f.maxMeanCi !== LIMITS.maxMeanCi.default) parts.push(`max_mean_ci=${f.maxMeanCi}`);
  if (f.maxShare !== LIMITS.maxShare.default) parts.push(`max_share=${f.maxShare}`);
  if (state.normalize !== "none") parts.push(`normalize=${state.normalize}`);
  return parts.length ? `?${parts.join("&")}` : "";
}
