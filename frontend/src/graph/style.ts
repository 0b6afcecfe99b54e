// How values become colours, widths and opacities (shared by the drawing and its tests).
//
// Software canvas rendering (no GPU) draws lines up to one device pixel wide as hairlines,
// about twenty times faster than wider strokes. So every edge is a hairline whose opacity
// grows with |value|, except the strongest few (THICK_EDGES at most), which also get wider.

// Blue and vermillion (Okabe-Ito): where hairlines of both signs overlap they blend to a
// neutral grey, not to a third hue that could be read as a sign.
export const POSITIVE = "0, 114, 178"; // blue
export const NEGATIVE = "213, 94, 0"; // vermillion
export const EDGE_LEVELS = 8;
/** Levels from this one up are drawn wider than a hairline (for the strongest edges). */
export const THICK_FROM = 6;
/** At most this many edges are drawn wide; the rest of their levels stay hairlines. */
export const THICK_EDGES = 1000;

const SLOTS = EDGE_LEVELS + (EDGE_LEVELS - THICK_FROM); // levels, then the capped thick levels
export const EDGE_BATCHES = 2 * SLOTS;

/** Magnitude level 0..EDGE_LEVELS-1 of an edge: sqrt-scaled so weak edges stay visible. */
export function edgeLevel(value: number, maxAbs: number): number {
  if (!(maxAbs > 0)) return 0;
  const t = Math.sqrt(Math.min(1, Math.abs(value) / maxAbs));
  return Math.min(EDGE_LEVELS - 1, Math.floor(t * EDGE_LEVELS));
}

/** Batch of an edge (sign x level, with thick levels capped to hairlines beyond the budget):
 * drawing one path per batch keeps 50,000 edges fast. `rank`: 0 for the strongest edge. */
export function edgeBatch(value: number, maxAbs: number, rank: number): number {
  const level = edgeLevel(value, maxAbs);
  const slot = level >= THICK_FROM && rank >= THICK_EDGES ? EDGE_LEVELS + level - THICK_FROM : level;
  return (value < 0 ? SLOTS : 0) + slot;
}

/** Colour, opacity and width in CSS px (at any zoom) of a batch. */
export function batchStyle(batch: number): { color: string; alpha: number; width: number } {
  const slot = batch % SLOTS;
  const capped = slot >= EDGE_LEVELS;
  const level = capped ? slot - EDGE_LEVELS + THICK_FROM : slot;
  const t = (level + 1) / EDGE_LEVELS;
  return {
    color: batch >= SLOTS ? NEGATIVE : POSITIVE,
    alpha: 0.12 + 0.78 * t * t,
    width: level >= THICK_FROM && !capped ? 1 + 2 * (level - THICK_FROM + 1) / (EDGE_LEVELS - THICK_FROM) : HAIRLINE,
  };
}

export const HAIRLINE = 0.95;

/** Batches in drawing order, both signs at each step: hairline levels from weak to strong, the
 * capped strong levels, then the wide strongest edges on top. */
export const BATCH_ORDER: readonly number[] = [
  ...Array.from({ length: THICK_FROM }, (_, level) => level),
  ...Array.from({ length: EDGE_LEVELS - THICK_FROM }, (_, k) => EDGE_LEVELS + k),
  ...Array.from({ length: EDGE_LEVELS - THICK_FROM }, (_, k) => THICK_FROM + k),
].flatMap((slot) => [slot, SLOTS + slot]);

export const NODE_LEVELS = 8;

/** Shade level of a node by its CI (or output probability) in [0, 1]. */
export function nodeLevel(ci: number): number {
  return Math.max(0, Math.min(NODE_LEVELS - 1, Math.floor(Math.sqrt(Math.max(0, ci)) * NODE_LEVELS)));
}

/** A white casing drawn under the wide strokes, so crossing strong edges stay apart. */
export const CASING = "rgba(255, 255, 255, 0.9)";

/** Grey from light (low CI) to near-black (CI 1); output nodes in green. */
export function nodeColor(level: number, output: boolean): string {
  const t = (level + 1) / NODE_LEVELS;
  if (output) return `rgb(${Math.round(200 - 170 * t)}, ${Math.round(230 - 100 * t)}, ${Math.round(200 - 150 * t)})`;
  const grey = Math.round(215 - 190 * t);
  return `rgb(${grey}, ${grey}, ${Math.round(grey + 10 * (1 - t))})`;
}
