// A search result's prompt, cut to the tokens around its marked positions.
import { h, showToken } from "./dom";

/** How a marked token looks: its background, its title and data attributes (for tests). */
export interface Mark {
  background: string;
  title: string;
  data: Record<string, string>;
}

/** Colours of the two ends of a searched edge in result previews. */
export const EDGE_COLOURS = { source: "#fde68a", target: "#bbf7d0" } as const;

/** The token range [start, end) shown around `positions`: from `before` tokens ahead of the first
 * to `after` tokens past the last, and at least `width` tokens where the prompt has them. */
export function previewWindow(positions: readonly number[], length: number, before = 6, after = 6, width = 24): { start: number; end: number } {
  const first = positions.length ? Math.min(...positions) : 0;
  const last = positions.length ? Math.max(...positions) : 0;
  const start = Math.max(0, Math.min(first, length) - before);
  return { start, end: Math.min(length, Math.max(start + width, last + after + 1)) };
}

/** The marks of an edge's two ends; one token holding both is split between the two colours. */
export function edgeMarks(sourcePos: number, targetPos: number, source: string, target: string): Map<number, Mark> {
  const marks = new Map<number, Mark>();
  const { source: from, target: to } = EDGE_COLOURS;
  if (sourcePos === targetPos) {
    marks.set(sourcePos, {
      background: `linear-gradient(90deg, ${from} 50%, ${to} 50%)`,
      title: `source ${source} and target ${target} [${sourcePos}]`,
      data: { role: "both", pos: String(sourcePos) },
    });
    return marks;
  }
  marks.set(sourcePos, { background: from, title: `source ${source} [${sourcePos}]`, data: { role: "source", pos: String(sourcePos) } });
  marks.set(targetPos, { background: to, title: `target ${target} [${targetPos}]`, data: { role: "target", pos: String(targetPos) } });
  return marks;
}

/** The tokens around the marked positions, each marked one highlighted. */
export function tokenPreview(tokens: readonly string[], marks: ReadonlyMap<number, Mark>): HTMLElement {
  const { start, end } = previewWindow([...marks.keys()], tokens.length);
  return h(
    "div",
    { class: "preview tokens" },
    start > 0 ? "…" : null,
    ...tokens.slice(start, end).map((token, k) => {
      const mark = marks.get(start + k);
      if (!mark) return showToken(token);
      const attrs = Object.fromEntries(Object.entries(mark.data).map(([name, value]) => [`data-${name}`, value]));
      return h("mark", { attrs, style: { background: mark.background }, title: mark.title }, showToken(token));
    }),
    end < tokens.length ? "…" : null,
  );
}
