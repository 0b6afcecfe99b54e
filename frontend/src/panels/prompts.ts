// The prompt list: pages of prompts in id order; a prompt asked for by id (the URL) is loaded
// into the list even when it lies beyond the first page, and scrolled to.
import { ApiError, type Api, type PromptSummary } from "../api/client";
import { SIZES } from "../limits";
import { append, h, replace } from "../ui/dom";

export class PromptList {
  readonly element: HTMLElement;
  private readonly list: HTMLElement;
  private readonly status: HTMLElement;
  private readonly more: HTMLButtonElement;
  private readonly earlier: HTMLButtonElement;
  private readonly count: HTMLElement;
  private prompts: PromptSummary[] = [];
  private next: string | null = null;
  private total = 0;
  private active: number | null = null;

  constructor(
    private readonly api: Api,
    private readonly select: (id: number) => void,
  ) {
    this.list = h("ul", { class: "list", testid: "prompt-list" });
    this.status = h("div", { class: "status", testid: "prompt-status" });
    this.more = h("button", { class: "more", testid: "prompts-more", onclick: () => void this.load(this.next) }, "Load more");
    this.earlier = h("button", { class: "more", testid: "prompts-earlier", onclick: () => void this.load(null) }, "↑ From the first prompt");
    this.count = h("span", { class: "count" });
    this.more.hidden = this.earlier.hidden = true;
    this.element = h("section", { class: "panel prompts" }, h("h2", {}, "Prompts ", this.count), this.status, this.earlier, this.list, this.more);
  }

  first(): PromptSummary | undefined {
    return this.prompts[0];
  }

  /** Load a page: the first (`cursor` null), the next (a cursor), or one starting at `start`. */
  async load(cursor: string | null, start?: number): Promise<void> {
    const fresh = cursor === null;
    this.more.hidden = true;
    this.status.textContent = "Loading prompts…";
    this.status.className = "status loading";
    try {
      const page = await this.api.prompts({ limit: SIZES.promptPage, cursor, start });
      if (fresh) this.prompts = [];
      this.prompts.push(...page.items);
      this.next = page.next_cursor;
      this.total = page.count;
      this.earlier.hidden = !(fresh && start !== undefined && start > 1 && page.items[0]?.id !== undefined);
      this.status.textContent = page.count === 0 ? "No prompts in this database." : "";
      this.status.className = "status";
    } catch (error) {
      this.status.className = "status error";
      replace(this.status, `Could not load prompts: ${(error as Error).message} `);
      append(this.status, h("button", { class: "link", onclick: () => void this.load(cursor, start) }, "Retry"));
    }
    this.render();
  }

  /** Make prompt `id` part of the list (loading the page that starts near it when needed),
   * mark it and scroll to it. */
  async reveal(id: number): Promise<void> {
    this.mark(id);
    if (!this.prompts.some((p) => p.id === id)) {
      await this.load(null, Math.max(1, id - SIZES.promptsBefore));
      this.mark(id);
    }
    this.list.querySelector<HTMLElement>(`[data-prompt-id="${id}"]`)?.scrollIntoView({ block: "nearest" });
  }

  mark(id: number | null): void {
    this.active = id;
    for (const item of Array.from(this.list.children) as HTMLElement[]) {
      item.classList.toggle("active", Number(item.dataset.promptId) === id);
    }
  }

  private render(): void {
    this.count.textContent = this.total ? `(${this.total.toLocaleString()})` : "";
    replace(
      this.list,
      ...this.prompts.map((prompt) =>
        h(
          "li",
          {
            testid: "prompt-item",
            class: prompt.id === this.active ? "item active" : "item",
            attrs: { "data-prompt-id": String(prompt.id) },
            title: prompt.preview,
            onclick: () => this.select(prompt.id),
          },
          h("span", { class: "id" }, `#${prompt.id}`),
          h("span", { class: "preview" }, prompt.preview),
          h("small", {}, `${prompt.n_tokens} tokens · ${prompt.n_edges.toLocaleString()} edges`),
        ),
      ),
    );
    this.more.hidden = this.next === null;
  }
}

export function isMissing(error: unknown): boolean {
  return error instanceof ApiError && error.status === 404;
}
