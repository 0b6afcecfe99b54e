// The pinned components: their cards (where they fire in the shown graph, their statistics), and
// what the address bar asked for that could not be used.
import type { ComponentStore } from "../components";
import { SIZES } from "../limits";
import { componentCard, type HereInfo } from "../ui/card";
import { h, replace } from "../ui/dom";

export class PinsPanel {
  readonly element: HTMLElement;
  private readonly list: HTMLElement;
  private readonly count: HTMLElement;
  private readonly clear: HTMLButtonElement;
  private readonly problems: HTMLElement;

  constructor(
    private readonly components: ComponentStore,
    private readonly actions: { unpin(key: string): void; toggleExcluded(key: string): void; findPrompts(key: string): void },
    clearAll: () => void,
  ) {
    this.list = h("div", { class: "pinned-list", testid: "pinned-list" });
    this.count = h("span", { class: "count" });
    this.clear = h("button", { testid: "clear-pins", class: "link", onclick: clearAll }, "Clear all");
    this.problems = h("div", { class: "status error", testid: "url-problems" });
    this.problems.hidden = true;
    this.element = h("section", { class: "panel pinned" }, h("h2", {}, "Pinned ", this.count, this.clear), this.problems, this.list);
  }

  /** Sentences about address-bar parameters that were ignored (shown until dismissed). */
  setProblems(problems: string[]): void {
    this.problems.hidden = problems.length === 0;
    replace(
      this.problems,
      h("div", {}, "Ignored in the address: ", problems.join("; "), "."),
      h("button", { class: "link", onclick: () => (this.problems.hidden = true) }, "Dismiss"),
    );
  }

  render(keys: readonly string[], excluded: readonly string[], here: (key: string) => HereInfo | null): void {
    this.count.textContent = keys.length ? `(${keys.length})` : "";
    this.clear.hidden = keys.length === 0;
    if (!keys.length) {
      replace(
        this.list,
        h("div", { class: "status" }, "Shift-click a node, use its card, or type a key under Components to pin a component; pins stay when you switch prompts."),
      );
      return;
    }
    replace(
      this.list,
      ...keys.map((key) => {
        const info = here(key);
        const out = excluded.includes(key);
        return h(
          "div",
          { class: out ? "pinned-item excluded" : "pinned-item", testid: "pinned-item", attrs: { "data-key": key, "data-excluded": String(out) } },
          h("button", { class: "unpin", testid: "unpin", title: "unpin", onclick: () => this.actions.unpin(key) }, "✕"),
          ...componentCard(key, info, this.components.get(key), SIZES.pinExamples),
          info && info.positions.length === 0 ? h("div", { class: "muted" }, "not in the shown graph") : null,
          h(
            "div",
            { class: "actions" },
            h(
              "button",
              {
                testid: "exclude-pin",
                title: out ? "Searches ask for prompts where this fires" : "Searches ask for prompts where this does NOT fire",
                onclick: () => this.actions.toggleExcluded(key),
              },
              out ? "Require" : "Exclude",
            ),
            h("button", { testid: "find-prompts", title: "Prompts where this component fires", onclick: () => this.actions.findPrompts(key) }, "Prompts where it fires"),
            out ? h("span", { class: "excluded-note" }, "excluded from searches") : null,
          ),
        );
      }),
    );
  }
}
