// One store for the view's state: panels read it, change it through `set`, and hear every
// change; the address bar follows it.
import { writeUrl, type ViewState } from "./url";

export type History = "push" | "replace" | "none";
export type Listener = (state: Readonly<ViewState>, previous: Readonly<ViewState>) => void;

export class ViewStore {
  private listeners: Listener[] = [];

  constructor(private state: ViewState) {}

  get(): Readonly<ViewState> {
    return this.state;
  }

  /** Apply `patch`, record it in the address bar (`push` makes a history entry) and notify. */
  set(patch: Partial<ViewState>, history: History = "replace"): void {
    const previous = this.state;
    this.state = { ...previous, ...patch };
    // a stored prompt and a prompt of one's own are two ways to name the one shown graph
    if (patch.prompt != null) this.state.text = null;
    else if (patch.text != null) this.state.prompt = null;
    if (!this.state.selected) this.state.trace = null;
    if (this.state.excluded.some((key) => !this.state.pinned.includes(key))) {
      this.state.excluded = this.state.excluded.filter((key) => this.state.pinned.includes(key));
    }
    this.writeUrl(history);
    for (const listener of this.listeners) listener(this.state, previous);
  }

  subscribe(listener: Listener): void {
    this.listeners.push(listener);
  }

  private writeUrl(history: History): void {
    if (history === "none" || typeof window === "undefined" || location.protocol === "file:") return;
    const url = `${location.pathname}${writeUrl(this.state)}${location.hash}`;
    if (url === `${location.pathname}${location.search}${location.hash}`) return;
    if (history === "push") window.history.pushState(null, "", url);
    else window.history.replaceState(null, "", url);
  }
}
