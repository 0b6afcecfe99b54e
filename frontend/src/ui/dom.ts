// A tiny element builder: h("button", { testid: "x", onclick }, "text").

type Child = Node | string | number | null | undefined | false;

export interface Props {
  class?: string;
  testid?: string;
  title?: string;
  attrs?: Record<string, string>;
  style?: Partial<CSSStyleDeclaration>;
  onclick?: (event: MouseEvent) => void;
  onchange?: (event: Event) => void;
  oninput?: (event: Event) => void;
}

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  if (props.class) element.className = props.class;
  if (props.testid) element.dataset.testid = props.testid;
  if (props.title) element.title = props.title;
  for (const [name, value] of Object.entries(props.attrs ?? {})) element.setAttribute(name, value);
  if (props.style) Object.assign(element.style, props.style);
  if (props.onclick) element.addEventListener("click", props.onclick as EventListener);
  if (props.onchange) element.addEventListener("change", props.onchange);
  if (props.oninput) element.addEventListener("input", props.oninput);
  append(element, ...children);
  return element;
}

export function append(parent: Node, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child);
  }
}

export function replace(parent: Node, ...children: Child[]): void {
  while (parent.firstChild) parent.removeChild(parent.firstChild);
  append(parent, ...children);
}

export function format(value: number | null | undefined, digits = 3): string {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (value !== 0 && Math.abs(value) < 10 ** -digits) return value.toExponential(1);
  return value.toFixed(digits);
}

/** Decimals that show `value` to about four significant digits (at most three decimals). */
export function valueDigits(value: number): number {
  const abs = Math.abs(value);
  return abs >= 1000 ? 0 : abs >= 100 ? 1 : abs >= 10 ? 2 : 3;
}

/** A signed value in the graph's sign colours (blue positive, vermillion negative). */
export function signed(value: number, digits = 3): HTMLElement {
  return h("span", { class: value < 0 ? "value negative" : "value positive" }, signedText(value, digits));
}

/** `value` with its sign always written (a true minus sign for negatives). */
export function signedText(value: number, digits = 3): string {
  return `${value < 0 ? "−" : "+"}${format(Math.abs(value), digits)}`;
}

/** Token text made visible: leading space as a dot, newlines and tabs as arrows. */
export function showToken(token: string): string {
  return token.replace(/\n/g, "↵").replace(/\t/g, "→");
}
