// Every bound the page enforces, in one table: URL parsing, the controls' min/max/step and the
// requests read these, so a value the URL accepts is always one the controls can show.

export interface NumberLimit {
  min: number;
  max: number;
  default: number;
  step: number;
  integer: boolean;
}

const limit = (min: number, max: number, fallback: number, step: number, integer = false): NumberLimit => ({
  min,
  max,
  default: fallback,
  step,
  integer,
});

export const LIMITS = {
  /** Strongest edges kept on the server (the API's own bound is 100,000). */
  topK: limit(1, 100_000, 1000, 100, true),
  /** Minimum |attribution| kept on the server. */
  minAbs: limit(0, 1e9, 0, 0.001),
  /** Nodes with CI below this are hidden (client side). */
  ciThreshold: limit(0, 1, 0, 0.01),
  /** Components whose dataset mean CI is above this are hidden (client side). */
  maxMeanCi: limit(0, 1, 1, 0.01),
  /** Components firing in more than this share of the stored prompts are hidden. */
  maxShare: limit(0, 1, 1, 0.05),
  /** Hops a trace follows from its node. */
  traceHops: limit(1, 8, 3, 1, true),
  /** Strongest edges a trace follows out of each node it reaches. */
  traceFanout: limit(1, 50, 5, 1, true),
} as const;

export type LimitName = keyof typeof LIMITS;

/** `value` clamped into the limit (rounded when integer); NaN and ±Infinity give the default. */
export function clampTo(name: LimitName, value: number): number {
  const bound = LIMITS[name];
  if (!Number.isFinite(value)) return bound.default;
  const clamped = Math.min(bound.max, Math.max(bound.min, value));
  return bound.integer ? Math.round(clamped) : clamped;
}

/** Page sizes and list lengths (not user-settable). */
export const SIZES = {
  promptPage: 50,
  searchPage: 20,
  componentPage: 50,
  /** Co-firing partners listed in a component's card. */
  cofiring: 8,
  /** Corpus attribution partners listed in a component's card, per direction. */
  corpusPartners: 8,
  /** Prompts listed before the one a URL asks for, when it is beyond the first page. */
  promptsBefore: 10,
  /** Activation-context examples in the hover card, in a pinned item, in an export. */
  cardExamples: 6,
  pinExamples: 4,
  exportExamples: 3,
  /** Component keys per request when an export fetches their details. */
  exportKeysPerRequest: 400,
  /** Strongest incoming and outgoing edges listed in a node card. */
  nodeEdges: 8,
  hoverNodeEdges: 4,
  /** Top tokens per position and model in an intervention's table (at first). */
  interventionTopK: 3,
  /** Most prompts of a search that one intervention over the search runs on. */
  interventionSearch: 100,
} as const;
