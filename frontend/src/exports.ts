// The three exports: JSON (for File mode, with every component's details), SVG (a standalone
// picture) and PNG (that picture at twice its size).
import type { Api, ComponentDetail, PromptGraph } from "./api/client";
import type { ComponentStore } from "./components";
import { toGraphFile } from "./graph/data";
import type { Scene } from "./graph/renderer";
import { graphSvg } from "./graph/svg";
import { SIZES } from "./limits";
import { h } from "./ui/dom";

/** What the picture exports draw. */
export interface Picture {
  scene: Scene;
  promptId: number;
  tokens: string[];
  run: string;
}

function download(blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob);
  const link = h("a", { attrs: { href: url, download: name } });
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

const fileName = (promptId: number, extension: string) => `locattr-prompt-${promptId}.${extension}`;

/** The graph with the details (statistics, a few context examples) of every component in it,
 * fetched from `api` where the page has not loaded them yet (null: only what is loaded). */
export async function exportJson(
  raw: PromptGraph,
  layerOrder: string[],
  components: ComponentStore,
  api: Api | null,
  nPrompts: number,
): Promise<void> {
  const layers = new Set(layerOrder);
  const keys = [...new Set(raw.nodes.filter((n) => layers.has(n.layer)).map((n) => `${n.layer}:${n.component}`))];
  const ready = components.ready();
  const details: Record<string, ComponentDetail> = {};
  for (const key of keys) if (ready[key]) details[key] = ready[key];
  const missing = keys.filter((key) => !details[key]);
  for (let k = 0; api && k < missing.length; k += SIZES.exportKeysPerRequest) {
    const page = await api.componentDetails(missing.slice(k, k + SIZES.exportKeysPerRequest), SIZES.exportExamples);
    for (const item of page.items) details[item.key] = item;
  }
  const file = toGraphFile(raw, layerOrder, details, nPrompts);
  download(new Blob([JSON.stringify(file)], { type: "application/json" }), fileName(raw.id, "json"));
}

function svgDocument(picture: Picture): string {
  const { scene } = picture;
  const shown = scene.visible.edges.length.toLocaleString();
  const subtitle = `prompt #${picture.promptId} · ${picture.run} · ${shown} of ${scene.graph.nEdgesTotal.toLocaleString()} edges shown · locattr`;
  return graphSvg(scene, picture.tokens.join(""), subtitle);
}

export function exportSvg(picture: Picture): void {
  download(new Blob([svgDocument(picture)], { type: "image/svg+xml" }), fileName(picture.promptId, "svg"));
}

/** The SVG document rasterised at twice its size. */
export async function exportPng(picture: Picture): Promise<void> {
  const url = URL.createObjectURL(new Blob([svgDocument(picture)], { type: "image/svg+xml" }));
  try {
    const image = new Image();
    image.src = url;
    await image.decode();
    const canvas = h("canvas");
    canvas.width = image.naturalWidth * 2;
    canvas.height = image.naturalHeight * 2;
    const ctx = canvas.getContext("2d")!;
    ctx.scale(2, 2);
    ctx.drawImage(image, 0, 0);
    const blob = await new Promise<Blob>((resolve, reject) =>
      canvas.toBlob((b) => (b ? resolve(b) : reject(new Error("the picture is empty"))), "image/png"),
    );
    download(blob, fileName(picture.promptId, "png"));
  } finally {
    URL.revokeObjectURL(url);
  }
}
