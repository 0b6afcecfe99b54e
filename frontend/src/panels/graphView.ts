// The graph area: the canvas, its status line, the hover cards (node and edge) and the legend.
// Cards are filled by the app (which knows the data) and placed here, after their content is
// in, so that they never leave the window.
import { LEGEND } from "../graph/legend";
import { GraphRenderer, type Highlight, type RendererEvents, type Scene } from "../graph/renderer";
import { h, replace } from "../ui/dom";

export type Status = "idle" | "loading" | "error" | "ready";

export type GraphViewEvents = RendererEvents;

const CARD_GAP = 16;
const EDGE = 4;

export class GraphView {
  readonly element: HTMLElement;
  readonly renderer: GraphRenderer;
  readonly canvas: HTMLCanvasElement;
  private readonly status: HTMLElement;
  readonly nodeCard: HTMLElement;
  readonly edgeCard: HTMLElement;
  readonly legend: HTMLElement;
  private pointer: { x: number; y: number } | null = null;

  constructor(events: GraphViewEvents) {
    this.canvas = h("canvas", { testid: "graph-canvas", class: "graph-canvas" });
    this.status = h("div", { class: "graph-status", testid: "graph-status" });
    this.nodeCard = h("div", { class: "card floating", testid: "node-card" });
    this.edgeCard = h("div", { class: "card floating edge", testid: "edge-card" });
    this.nodeCard.hidden = this.edgeCard.hidden = true;
    this.legend = legendElement();
    this.element = h("div", { class: "graph-wrap" }, this.canvas, this.status, this.nodeCard, this.edgeCard);
    this.renderer = new GraphRenderer(this.canvas, {
      hover: (node, edge, event) => {
        this.pointer = { x: event.clientX, y: event.clientY };
        events.hover(node, edge, event);
      },
      click: (node, event) => events.click(node, event),
      clickEdge: (edge, event) => events.clickEdge(edge, event),
      column: (pos) => events.column(pos),
    });
  }

  show(scene: Scene | null, keepView: boolean): void {
    this.renderer.setScene(scene, keepView);
  }

  highlight(highlight: Highlight): void {
    this.renderer.setHighlight(highlight);
  }

  setStatus(text: string, state: Status, action?: { label: string; run: () => void }): void {
    this.status.dataset.state = state;
    replace(this.status, text, action ? h("button", { class: "link", onclick: action.run }, ` ${action.label}`) : null);
    this.status.hidden = text === "";
  }

  /** Show `card` (the node or the edge card) with `content`, the other one hidden, placed
   * beside the pointer; null hides both. */
  showCard(card: HTMLElement | null, content: (HTMLElement | null)[] = []): void {
    for (const each of [this.nodeCard, this.edgeCard]) {
      if (each !== card) each.hidden = true;
    }
    if (!card) return;
    replace(card, ...content);
    card.hidden = false;
    this.place(card);
  }

  /** Keep a shown card beside the pointer and inside the graph area. */
  place(card: HTMLElement): void {
    if (card.hidden || !this.pointer) return;
    const wrap = this.element.getBoundingClientRect();
    card.style.maxHeight = `${Math.max(80, wrap.height - 2 * EDGE)}px`;
    const width = card.offsetWidth;
    const height = card.offsetHeight;
    const px = this.pointer.x - wrap.left;
    const py = this.pointer.y - wrap.top;
    let x = px + CARD_GAP;
    if (x + width > wrap.width - EDGE) x = px - width - CARD_GAP;
    x = Math.max(EDGE, Math.min(x, wrap.width - width - EDGE));
    let y = py + CARD_GAP;
    if (y + height > wrap.height - EDGE) y = wrap.height - height - EDGE;
    y = Math.max(EDGE, y);
    card.style.transform = `translate(${Math.round(x)}px, ${Math.round(y)}px)`;
  }
}

function legendElement(): HTMLElement {
  const items = LEGEND.map((item) =>
    h(
      "li",
      {},
      h("span", { class: `swatch ${item.kind}`, style: { background: item.colour } }),
      h("span", {}, item.text),
    ),
  );
  return h("ul", { class: "legend", testid: "legend" }, ...items);
}
