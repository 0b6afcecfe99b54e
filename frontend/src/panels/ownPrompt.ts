// "Your own prompt": text typed here is sent to the server's model, whose graph is then shown
// like a stored prompt's; disabled, with the reason, when the server holds no model.
import type { ModelInfo } from "../api/client";
import { h } from "../ui/dom";

export type OwnPromptStatus = "idle" | "loading" | "error" | "ready";

export class OwnPrompt {
  readonly element: HTMLElement;
  private readonly input: HTMLTextAreaElement;
  private readonly button: HTMLButtonElement;
  private readonly status: HTMLElement;
  private model: ModelInfo | null = null;

  constructor(submit: (text: string) => void) {
    this.input = h("textarea", {
      testid: "own-prompt-input",
      attrs: { rows: "3", spellcheck: "false", "aria-label": "your own prompt" },
    });
    this.button = h("button", { testid: "own-prompt-submit" }, "Compute graph");
    const send = () => {
      const text = this.input.value;
      if (text.trim()) submit(text);
    };
    this.button.addEventListener("click", send);
    this.input.addEventListener("keydown", (event) => {
      // Enter computes (as a search box would); Shift+Enter writes a newline into the prompt
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        send();
      }
    });
    this.input.addEventListener("input", () => this.syncButton());
    this.status = h("div", { class: "status", testid: "own-prompt-status" });
    this.element = h(
      "section",
      { class: "panel own-prompt", testid: "own-prompt" },
      h("h2", {}, "Your own prompt"),
      this.input,
      h("div", { class: "row" }, this.button),
      this.status,
    );
    this.setModel(null, "Asking the server for its model…");
  }

  /** The server's model (null: none, and `why` says so); the box works only with one. */
  setModel(model: ModelInfo | null, why = ""): void {
    this.model = model;
    this.input.disabled = model === null;
    this.element.classList.toggle("disabled", model === null);
    const context = model?.n_ctx ? `up to ${model.n_ctx} tokens` : "any length";
    this.input.placeholder = model ? `Type a prompt (${context}); Enter computes its graph` : "";
    if (model) this.input.maxLength = model.max_text_chars;
    this.syncButton();
    if (model === null) this.setStatus(why, "idle");
    else if (this.status.dataset.state !== "error") this.setStatus("", "idle");
  }

  /** Show `text` in the box (the address bar's prompt), unless it is being edited. */
  setText(text: string): void {
    if (document.activeElement !== this.input) this.input.value = text;
    this.syncButton();
  }

  setStatus(text: string, state: OwnPromptStatus): void {
    this.status.textContent = text;
    this.status.className = `status ${state === "idle" || state === "ready" ? "" : state}`.trim();
    this.status.dataset.state = state;
    this.status.hidden = text === "";
  }

  private syncButton(): void {
    this.button.disabled = this.model === null || this.input.value.trim() === "";
  }
}
