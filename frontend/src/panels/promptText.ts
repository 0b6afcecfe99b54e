// The prompt above the graph, token by token: clicking a token focuses its position.
import type { ViewStore } from "../state";
import { h, replace, showToken } from "../ui/dom";

export class PromptText {
  readonly element: HTMLElement;

  constructor(private readonly store: ViewStore) {
    this.element = h("div", { class: "prompt-text", testid: "prompt-text" });
  }

  render(tokens: readonly string[] | null, title: string): void {
    if (!tokens) {
      replace(this.element);
      this.element.hidden = true;
      return;
    }
    this.element.hidden = false;
    const focus = this.store.get().focus;
    replace(
      this.element,
      h("span", { class: "prompt-title" }, title),
      ...tokens.map((token, pos) =>
        h(
          "span",
          {
            class: pos === focus ? "ptok focused" : "ptok",
            attrs: { "data-pos": String(pos) },
            title: `position ${pos}: click to ${pos === focus ? "clear the focus" : "focus"}`,
            onclick: () => this.store.set({ focus: this.store.get().focus === pos ? null : pos }),
          },
          showToken(token),
        ),
      ),
    );
  }
}
