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
      timings: typeof snapshot;
      clearTimings: typeof clear;
      /** Include deferred rasterisation in drawing timings (benchmarks). */
      flushTimings(on: boolean): void;
    };
  }
}
window.locattr = {
  shownNodes: () => app.shownNodes(),
  timings: snapshot,
  clearTimings: clear,
  flushTimings: (on) => {
    timingOptions.flush = on;
  },
};
