import { App } from "./app";
import { clear, snapshot, timingOptions } from "./perf";
import "./style.css";

const root = document.getElementById("app");
if (!root) throw new Error("index.html has no #app element");
const app = new App(root);

// A small handle for tests, benchmarks and the console.
declare global {
  interface Window {
    locattr: {
      shownNodes: App["shownNodes"];
      shownEdges: App["shownEdges"];
      axisLabels: App["axisLabels"];
      timings: typeof snapshot;
      clearTimings: typeof clear;
      /** Include deferred rasterisation in drawing timings (benchmarks). */
      flushTimings(on: boolean): void;
    };
  }
}
window.locattr = {
  shownNodes: () => app.shownNodes(),
  shownEdges: (limit) => app.shownEdges(limit),
  axisLabels: () => app.axisLabels(),
  timings: snapshot,
  clearTimings: clear,
  flushTimings: (on) => {
    timingOptions.flush = on;
  },
};
