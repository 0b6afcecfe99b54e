// Component details (statistics and activation context), fetched once per component and cached.
import type { Api, ComponentDetail } from "./api/client";

export type DetailState =
  | { status: "loading" }
  | { status: "ready"; detail: ComponentDetail }
  | { status: "error"; message: string }
  | { status: "unavailable"; reason: string };

export class ComponentStore {
  private readonly states = new Map<string, DetailState>();
  private readonly listeners = new Set<(key: string) => void>();
  private api: Api | null = null;
  private knownLayers: ReadonlySet<string> = new Set();

  /** Fetch from `api` for keys in `layers` (null api: only what was seeded, as in File mode). */
  configure(api: Api | null, layers: Iterable<string>): void {
    this.api = api;
    this.knownLayers = new Set(layers);
    for (const [key, state] of this.states) if (state.status !== "ready") this.states.delete(key);
  }

  seed(details: Record<string, ComponentDetail>): void {
    for (const [key, detail] of Object.entries(details)) this.states.set(key, { status: "ready", detail });
  }

  onChange(listener: (key: string) => void): void {
    this.listeners.add(listener);
  }

  /** What is known now; starts a fetch the first time a fetchable key is asked for. */
  get(key: string): DetailState {
    const known = this.states.get(key);
    if (known) return known;
    const layer = key.slice(0, key.lastIndexOf(":"));
    if (!this.api) return { status: "unavailable", reason: "not in this file (File mode has no server)" };
    if (!this.knownLayers.has(layer)) return { status: "unavailable", reason: "not a decomposed layer" };
    const loading: DetailState = { status: "loading" };
    this.states.set(key, loading);
    this.api.component(key).then(
      (detail) => this.settle(key, { status: "ready", detail }),
      (error: unknown) => this.settle(key, { status: "error", message: (error as Error).message }),
    );
    return loading;
  }

  ready(): Record<string, ComponentDetail> {
    const out: Record<string, ComponentDetail> = {};
    for (const [key, state] of this.states) if (state.status === "ready") out[key] = state.detail;
    return out;
  }

  private settle(key: string, state: DetailState): void {
    this.states.set(key, state);
    for (const listener of this.listeners) listener(key);
  }
}
