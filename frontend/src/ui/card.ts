// A component's card: where it fires in this prompt, its dataset statistics and its activation
// context (top examples with the firing token marked, input tokens, predicted tokens).
import type { ComponentDetail } from "../api/client";
import type { DetailState } from "../components";
import { format, h, showToken } from "./dom";

export interface HereInfo {
  /** CI at each position where this component is in the shown graph. */
  positions: { pos: number; ci: number; token: string }[];
  /** The hovered position, if a node (not just a pin) is under the pointer. */
  current: number | null;
  meanCi: number | undefined;
}

interface Example {
  tokens: string[];
  ci: number[];
  active: number;
}

type Context = Record<string, unknown>;

function list<T>(context: Context, name: string, guard: (v: unknown) => v is T): T[] {
  const value = context[name];
  return Array.isArray(value) ? value.filter(guard) : [];
}
const isString = (v: unknown): v is string => typeof v === "string";
const isNumber = (v: unknown): v is number => typeof v === "number";
const isStrings = (v: unknown): v is string[] => Array.isArray(v) && v.every(isString);
const isNumbers = (v: unknown): v is number[] => Array.isArray(v) && v.every(isNumber);

/** Examples from the stored context: the original's columns (`example_tokens`, `example_ci`,
 * `example_active_pos`) or a list of `{tokens, ci, active_pos}` records. */
export function contextExamples(context: Context): Example[] {
  const tokens = list(context, "example_tokens", isStrings);
  if (tokens.length) {
    const ci = list(context, "example_ci", isNumbers);
    const active = list(context, "example_active_pos", isNumber);
    return tokens.map((t, i) => ({ tokens: t, ci: ci[i] ?? [], active: active[i] ?? -1 }));
  }
  const records = Array.isArray(context.examples) ? context.examples : [];
  return records.flatMap((record: unknown): Example[] => {
    if (typeof record !== "object" || record === null) return [];
    const r = record as Record<string, unknown>;
    if (!isStrings(r.tokens)) return [];
    const ci = isNumbers(r.ci) ? r.ci : [];
    const active = isNumber(r.active_pos) ? r.active_pos : ci.length ? ci.indexOf(Math.max(...ci)) : -1;
    return [{ tokens: r.tokens, ci, active }];
  });
}

function example(ex: Example): HTMLElement {
  return h(
    "div",
    { class: "example", testid: "context-example" },
    ...ex.tokens.map((token, i) => {
      const span = h("span", { class: i === ex.active ? "tok firing" : "tok" }, showToken(token));
      const ci = ex.ci[i] ?? 0;
      if (ci > 0) span.style.background = `rgba(124, 58, 237, ${Math.min(1, 5 * ci) * 0.45})`;
      if (i === ex.active) span.title = `fires here (CI ${format(ci)})`;
      return span;
    }),
  );
}

function tokenTable(title: string, tokens: string[], values: number[], valueName: string, limit: number): HTMLElement | null {
  if (!tokens.length) return null;
  return h(
    "div",
    { class: "token-table" },
    h("div", { class: "label" }, title),
    h(
      "div",
      { class: "chips" },
      ...tokens.slice(0, limit).map((token, i) =>
        h("span", { class: "chip", title: `${valueName} ${format(values[i])}` }, showToken(token), h("small", {}, format(values[i], 2))),
      ),
    ),
  );
}

function contextSection(context: Context, examples: number): HTMLElement {
  const found = contextExamples(context);
  return h(
    "div",
    { class: "context" },
    h("div", { class: "label" }, `Top examples (${found.length})`),
    found.length ? h("div", { class: "examples" }, ...found.slice(0, examples).map(example)) : h("div", { class: "muted" }, "none stored"),
    tokenTable("Input tokens · P(fire | token)", list(context, "pr_tokens", isString), list(context, "pr_precisions", isNumber), "precision", 10),
    tokenTable("Predicted tokens · share of firings", list(context, "predicted_tokens", isString), list(context, "predicted_probs", isNumber), "share", 10),
  );
}

function stats(detail: ComponentDetail, meanCi: number | undefined): HTMLElement {
  const rows: [string, string][] = [
    ["mean CI", format(detail.mean_ci ?? meanCi)],
    ["prompts", String(detail.prompt_count)],
    ["mean max CI", format(detail.mean_max_ci)],
    ["max CI", format(detail.max_max_ci)],
  ];
  return h("dl", { class: "stats" }, ...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

export function componentCard(key: string, here: HereInfo | null, state: DetailState, examples: number): HTMLElement[] {
  const at = key.lastIndexOf(":");
  const parts: HTMLElement[] = [
    h("div", { class: "card-title" }, h("strong", {}, key.slice(0, at)), h("span", { class: "index" }, ` #${key.slice(at + 1)}`)),
  ];
  if (here && here.positions.length) {
    const current = here.positions.find((p) => p.pos === here.current);
    parts.push(
      h(
        "div",
        { class: "here" },
        current ? h("span", {}, `CI here ${format(current.ci)} at `, h("code", {}, showToken(current.token)), ` [${current.pos}]`) : null,
        h("span", { class: "muted" }, ` fires at ${here.positions.map((p) => p.pos).join(", ")}`),
      ),
    );
  }
  switch (state.status) {
    case "loading":
      parts.push(h("div", { class: "muted loading" }, "loading statistics…"));
      break;
    case "error":
      parts.push(h("div", { class: "error" }, state.message));
      break;
    case "unavailable":
      if (here?.meanCi !== undefined) parts.push(h("div", {}, `mean CI ${format(here.meanCi)}`));
      parts.push(h("div", { class: "muted" }, `no statistics: ${state.reason}`));
      break;
    case "ready":
      parts.push(stats(state.detail, here?.meanCi));
      parts.push(
        state.detail.activation_context
          ? contextSection(state.detail.activation_context, examples)
          : h("div", { class: "muted" }, "no activation context stored for this component"),
      );
      break;
  }
  return parts;
}
