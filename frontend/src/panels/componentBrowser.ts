// The component browser: components that fire in stored prompts, by layer, sorted by how often
// or how strongly; a key typed in is checked against the database and pinned.
import { ApiError, type Api, type Component } from "../api/client";
import { SIZES } from "../limits";
import { format, h, replace } from "../ui/dom";
import { isComponentKey } from "../url";

export type ComponentSort = "prompt_count" | "mean_ci" | "max_ci";

export interface BrowserActions {
  pin(key: string): void;
  findPrompts(key: string): void;
}

export class ComponentBrowser {
  readonly element: HTMLElement;
  private readonly keyInput: HTMLInputElement;
  private readonly keyStatus: HTMLElement;
  private readonly layer: HTMLSelectElement;
  private readonly sort: HTMLSelectElement;
  private readonly list: HTMLElement;
  private readonly status: HTMLElement;
  private readonly more: HTMLButtonElement;
  private items: Component[] = [];
  private next: string | null = null;
  private request = 0;

  constructor(
    private readonly api: Api,
    private readonly actions: BrowserActions,
  ) {
    this.keyInput = h("input", { testid: "component-key", title: "A component key, layer:index", attrs: { type: "text", placeholder: "h.0.mlp.c_fc:12", spellcheck: "false" } });
    this.keyInput.addEventListener("keydown", (event) => {
      if (event.key === "Enter") void this.pinTyped();
    });
    this.keyStatus = h("div", { class: "status", testid: "component-key-status" });
    this.layer = h("select", { testid: "component-layer", title: "Only this layer" }, h("option", { attrs: { value: "" } }, "all layers"));
    this.sort = h(
      "select",
      { testid: "component-sort", title: "Order of the list" },
      h("option", { attrs: { value: "prompt_count" } }, "most prompts"),
      h("option", { attrs: { value: "mean_ci" } }, "highest mean CI"),
      h("option", { attrs: { value: "max_ci" } }, "highest max CI"),
    );
    for (const select of [this.layer, this.sort]) select.addEventListener("change", () => void this.load(null));
    this.list = h("ol", { class: "list components", testid: "component-list" });
    this.status = h("div", { class: "status", testid: "component-status" });
    this.more = h("button", { class: "more", onclick: () => void this.load(this.next) }, "More components");
    this.more.hidden = true;
    this.element = h(
      "section",
      { class: "panel component-browser" },
      h("h2", {}, "Components"),
      h("div", { class: "row key-row" }, this.keyInput, h("button", { testid: "pin-key", onclick: () => void this.pinTyped() }, "Pin")),
      this.keyStatus,
      h("div", { class: "row" }, this.layer, " ", this.sort),
      this.status,
      this.list,
      this.more,
    );
  }

  setLayers(layers: readonly string[]): void {
    replace(this.layer, h("option", { attrs: { value: "" } }, "all layers"), ...layers.map((name) => h("option", { attrs: { value: name } }, name)));
  }

  async load(cursor: string | null): Promise<void> {
    const request = ++this.request;
    this.status.textContent = "Loading components…";
    this.status.className = "status loading";
    try {
      const page = await this.api.components({
        layer: this.layer.value || undefined,
        sort: this.sort.value as ComponentSort,
        limit: SIZES.componentPage,
        cursor,
      });
      if (request !== this.request) return;
      if (cursor === null) this.items = [];
      this.items.push(...page.items);
      this.next = page.next_cursor;
      this.status.className = "status";
      this.status.textContent = `${page.count.toLocaleString()} component${page.count === 1 ? "" : "s"} fire in stored prompts`;
    } catch (error) {
      if (request !== this.request) return;
      this.status.className = "status error";
      this.status.textContent = `Could not load components: ${(error as Error).message}`;
      return;
    }
    this.render();
  }

  private render(): void {
    replace(
      this.list,
      ...this.items.map((item) =>
        h(
          "li",
          { class: "item component-item", testid: "component-item", attrs: { "data-key": item.key } },
          h("code", { class: "key" }, item.key),
          h(
            "small",
            {},
            `${item.prompt_count.toLocaleString()} prompts · mean CI ${format(item.mean_ci)} · max CI ${format(item.max_max_ci)}`,
          ),
          h(
            "span",
            { class: "actions" },
            h("button", { testid: "component-pin", title: "Pin this component", onclick: () => this.actions.pin(item.key) }, "Pin"),
            h("button", { testid: "component-prompts", title: "Prompts where this component fires", onclick: () => this.actions.findPrompts(item.key) }, "Prompts"),
          ),
        ),
      ),
    );
    this.more.hidden = this.next === null;
  }

  /** Pin the typed key if it is well formed and names a component of this database. */
  private async pinTyped(): Promise<void> {
    const key = this.keyInput.value.trim();
    const say = (text: string, error: boolean) => {
      this.keyStatus.textContent = text;
      this.keyStatus.className = error ? "status error" : "status";
    };
    if (!isComponentKey(key)) {
      say(`"${key}" is not a component key: expected layer:index, e.g. h.0.mlp.c_fc:12`, true);
      return;
    }
    try {
      await this.api.component(key);
    } catch (error) {
      say(error instanceof ApiError && error.status === 404 ? `${key} is not a component of this database` : (error as Error).message, true);
      return;
    }
    this.actions.pin(key);
    this.keyInput.value = "";
    say(`pinned ${key}`, false);
  }
}
