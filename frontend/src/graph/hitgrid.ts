// A uniform grid over node squares, so finding the node under the pointer reads a few cells
// instead of every node (or every edge).

export class HitGrid {
  private readonly cols: number;
  private readonly rows: number;
  private readonly start: Int32Array;
  private readonly items: Int32Array;

  /** `nodes`: indices into x/y (top-left corners of squares of side `size`). */
  constructor(
    private readonly x: Float32Array,
    private readonly y: Float32Array,
    private readonly size: number,
    nodes: Int32Array,
    width: number,
    height: number,
    private readonly cell: number = 32,
  ) {
    this.cols = Math.max(1, Math.ceil(width / cell));
    this.rows = Math.max(1, Math.ceil(height / cell));
    const counts = new Int32Array(this.cols * this.rows + 1);
    const cellOf = new Int32Array(nodes.length);
    nodes.forEach((i, k) => {
      const c = this.cellIndex(x[i]! + size / 2, y[i]! + size / 2);
      cellOf[k] = c;
      counts[c + 1]! += 1;
    });
    for (let c = 1; c < counts.length; c++) counts[c]! += counts[c - 1]!;
    this.start = counts;
    this.items = new Int32Array(nodes.length);
    const fill = counts.slice(0, -1);
    nodes.forEach((i, k) => {
      this.items[fill[cellOf[k]!]!++] = i;
    });
  }

  private cellIndex(px: number, py: number): number {
    const cx = Math.min(this.cols - 1, Math.max(0, Math.floor(px / this.cell)));
    const cy = Math.min(this.rows - 1, Math.max(0, Math.floor(py / this.cell)));
    return cy * this.cols + cx;
  }

  /** The node whose square, grown by `slack` on each side, contains (px, py) and whose centre
   * is nearest; -1 when none. */
  find(px: number, py: number, slack: number): number {
    const reach = this.size + slack;
    const x0 = Math.max(0, Math.floor((px - reach) / this.cell));
    const x1 = Math.min(this.cols - 1, Math.floor((px + reach) / this.cell));
    const y0 = Math.max(0, Math.floor((py - reach) / this.cell));
    const y1 = Math.min(this.rows - 1, Math.floor((py + reach) / this.cell));
    let best = -1;
    let bestDistance = Infinity;
    for (let cy = y0; cy <= y1; cy++) {
      for (let cx = x0; cx <= x1; cx++) {
        const c = cy * this.cols + cx;
        for (let k = this.start[c]!; k < this.start[c + 1]!; k++) {
          const i = this.items[k]!;
          const left = this.x[i]!;
          const top = this.y[i]!;
          if (px < left - slack || px > left + this.size + slack || py < top - slack || py > top + this.size + slack) {
            continue;
          }
          const distance = Math.hypot(px - left - this.size / 2, py - top - this.size / 2);
          if (distance < bestDistance) {
            bestDistance = distance;
            best = i;
          }
        }
      }
    }
    return best;
  }
}
