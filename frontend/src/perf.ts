// Timings of the view's own work (first render, hover), kept for the benchmark and for anyone
// curious in the console (`locattr.timings()`); bounded so a long session does not grow it.

const KEEP = 500;
const timings = new Map<string, number[]>();

export function record(name: string, ms: number): void {
  let list = timings.get(name);
  if (!list) {
    list = [];
    timings.set(name, list);
  }
  list.push(ms);
  if (list.length > KEEP) list.splice(0, list.length - KEEP);
}

export function snapshot(): Record<string, number[]> {
  return Object.fromEntries([...timings].map(([name, list]) => [name, [...list]]));
}

export function clear(): void {
  timings.clear();
}

/** When set, drawing code reads back one pixel before it records a timing, so the timing
 * includes the rasterisation the browser would otherwise defer to the next frame. */
export const timingOptions = { flush: false };
