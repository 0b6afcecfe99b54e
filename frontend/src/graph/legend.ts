// What the picture's colours, widths and shades mean: one list, shown on the page and in exports.
import { NEGATIVE, NODE_LEVELS, POSITIVE, nodeColor } from "./style";

export interface LegendItem {
  kind: "edge" | "node";
  colour: string;
  text: string;
}

export const LEGEND: readonly LegendItem[] = [
  { kind: "edge", colour: `rgb(${POSITIVE})`, text: "positive: source raises target" },
  { kind: "edge", colour: `rgb(${NEGATIVE})`, text: "negative: source lowers target" },
  { kind: "edge", colour: "#9ca3af", text: "opacity, width ∝ √|value|" },
  { kind: "node", colour: nodeColor(NODE_LEVELS - 1, false), text: "component, shade = CI here (0 light … 1 dark)" },
  { kind: "node", colour: nodeColor(NODE_LEVELS - 3, false), text: "input token" },
  { kind: "node", colour: nodeColor(NODE_LEVELS - 2, true), text: "prediction, shade = probability" },
];
