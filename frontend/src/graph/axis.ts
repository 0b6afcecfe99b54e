// Token labels along an axis: horizontal when they fit their columns, else turned 45° or 90°
// so that each reads in full; the gutter grows to hold them (up to a cap).

export type Angle = 0 | 45 | 90;

export interface AxisPlan {
  angle: Angle;
  /** Gutter height in CSS px. */
  gutter: number;
  /** Longest label length (px along the text) that fits the gutter. */
  room: number;
  /** Draw every `every`-th label (columns narrower than a line of text share labels). */
  every: number;
}

export const LABEL_FONT_PX = 11.5;
const NUMBER_ROW = 14; // room for the position numbers under a horizontal axis
const SIN45 = Math.SQRT1_2;

/** The angle and gutter for labels of widths `widths` (px) in columns at least `column` px
 * wide, with the gutter at most `cap` px high. */
export function planAxis(widths: readonly number[], column: number, cap: number): AxisPlan {
  const longest = widths.reduce((a, b) => Math.max(a, b), 0);
  const line = LABEL_FONT_PX + 1.5;
  if (longest <= column - 4) return { angle: 0, gutter: line + NUMBER_ROW + 6, room: column - 4, every: 1 };
  if (column >= line * 1.5) {
    const gutter = Math.min(cap, Math.ceil((longest + line) * SIN45) + 10);
    return { angle: 45, gutter, room: (gutter - 10) / SIN45 - line, every: 1 };
  }
  const gutter = Math.min(cap, Math.ceil(longest) + 10);
  return { angle: 90, gutter, room: gutter - 10, every: Math.max(1, Math.ceil(line / Math.max(1, column))) };
}
