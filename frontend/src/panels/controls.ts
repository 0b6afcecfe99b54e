// The controls above the graph: server-side pruning, client-side filters (bounds from LIMITS),
// the edge count, and the view and export buttons.
import type { Normalize } from "../api/client";
import type { FilterOptions } from "../graph/filter";
import { LIMITS, clampTo, type LimitName } from "../limits";
import type { ViewStore } from "../state";
import { h } from "../ui/dom";

export interface ControlActions {
  fit(): void;
  exportJson(): void;
  exportSvg(): void;
  exportPng(): void;
}

const FILTERS: { name: LimitName & keyof FilterOptions; testid: string; label: string; title: string }[] = [
  { name: "topK", testid: "top-k", label: "top-K", title: "Keep the K strongest edges (server-side)" },
  { name: "minAbs", testid: "min-abs", label: "min |attr|", title: "Drop edges with |attribution| below this (server-side)" },
  { name: "ciThreshold", testid: "ci-threshold", label: "CI ≥", title: "Hide nodes whose CI here is below this" },
  { name: "maxMeanCi", testid: "max-mean-ci", label: "mean CI ≤", title: "Hide components whose dataset mean CI is above this" },
  { name: "maxShare", testid: "max-share", label: "in ≤ share", title: "Hide components that fire in more than this share of the stored prompts (0.5 = half)" },
];

export class Controls {
  readonly element: HTMLElement;
  private readonly inputs = new Map<keyof FilterOptions, HTMLInputElement>();
  readonly normalize: HTMLSelectElement;
  private readonly edgeCount: HTMLElement;

  constructor(
    private readonly store: ViewStore,
    actions: ControlActions,
  ) {
    const labels: HTMLElement[] = [];
    for (const filter of FILTERS) {
      const bound = LIMITS[filter.name];
      const input = h("input", {
        testid: filter.testid,
        title: filter.title,
        attrs: { type: "number", min: String(bound.min), max: String(bound.max), step: String(bound.step) },
      });
      input.addEventListener("change", () => this.onChange());
      this.inputs.set(filter.name, input);
      labels.push(h("label", {}, `${filter.label} `, input));
    }
    this.normalize = h(
      "select",
      { testid: "normalize", title: "Divide each edge by the norm of its target's incoming edges (server-side)" },
      h("option", { attrs: { value: "none" } }, "none"),
      h("option", { attrs: { value: "l1_target" } }, "L1 per target"),
      h("option", { attrs: { value: "l2_target" } }, "L2 per target"),
    );
    this.normalize.addEventListener("change", () => this.onChange());
    labels.splice(2, 0, h("label", {}, "normalize ", this.normalize));
    this.edgeCount = h("span", { class: "edge-count", testid: "edge-count" });
    this.element = h(
      "div",
      { class: "controls" },
      ...labels,
      this.edgeCount,
      h("span", { class: "spacer" }),
      h("button", { testid: "reset-view", title: "Fit the whole graph (or double-click it)", onclick: () => actions.fit() }, "Fit"),
      h("span", { class: "exports" }, "Export ",
        h("button", { testid: "export-json", title: "The graph with its component details, for File mode", onclick: () => actions.exportJson() }, "JSON"),
        h("button", { testid: "export-svg", onclick: () => actions.exportSvg() }, "SVG"),
        h("button", { testid: "export-png", title: "PNG at twice the size", onclick: () => actions.exportPng() }, "PNG"),
      ),
    );
    this.sync();
  }

  /** Show the store's values in the inputs. */
  sync(): void {
    const { filters, normalize } = this.store.get();
    for (const [name, input] of this.inputs) input.value = String(filters[name]);
    this.normalize.value = normalize;
  }

  setFileMode(file: boolean): void {
    this.normalize.disabled = file;
  }

  setEdgeCount(shown: number | null, total: number, traced: boolean): void {
    this.edgeCount.dataset.shown = shown === null ? "" : String(shown);
    this.edgeCount.textContent =
      shown === null ? "" : `Showing ${shown.toLocaleString()} of ${total.toLocaleString()} edges${traced ? " (trace)" : ""}`;
  }

  private onChange(): void {
    const before = this.store.get().filters;
    const filters = { ...before };
    for (const [name, input] of this.inputs) {
      filters[name] = input.value === "" ? before[name] : clampTo(name as LimitName, Number(input.value));
      if (input.value !== "" && !Number.isFinite(Number(input.value))) filters[name] = before[name];
    }
    this.store.set({ filters, normalize: this.normalize.value as Normalize });
    this.sync();
  }
}
