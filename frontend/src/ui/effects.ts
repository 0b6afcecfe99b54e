// How an intervention's effects read: probabilities, changes in log-probability as signed
// colours, a changed top-1 token, and a failed request as one sentence.
import { ApiError, type PositionEffect, type TokenProb } from "../api/client";
import { NEGATIVE, POSITIVE } from "../graph/style";

/** |Δ log p| (nats) at which a change is drawn at full strength: a factor of e² ≈ 7.4. */
export const DELTA_FULL = 2;
/** |Δ log p| below which a change is not coloured at all (noise of float arithmetic). */
export const DELTA_QUIET = 1e-3;

/** What the Δ columns of the intervention tables mean. */
export const DELTA_LEGEND =
  "Δ: intervened minus CI-masked (SPD) log-probability, in nats · next: of the token that follows · top: of the target model's top token · blue: raised, vermillion: lowered.";

/** A probability as a short percentage: 52%, 3.4%, 0.12%, <0.01%. */
export function percent(prob: number): string {
  const p = prob * 100;
  if (p >= 99.95) return "100%";
  if (p >= 10) return `${p.toFixed(0)}%`;
  if (p >= 1) return `${p.toFixed(1)}%`;
  if (p >= 0.01) return `${p.toFixed(2)}%`;
  return "<0.01%";
}

/** The background of a change in log-probability: the graph's sign colours (blue up,
 * vermillion down), stronger with |Δ| up to DELTA_FULL; none for (nearly) no change. */
export function deltaBackground(delta: number | null | undefined): string {
  if (delta === null || delta === undefined || !Number.isFinite(delta) || Math.abs(delta) < DELTA_QUIET) return "";
  const t = Math.min(1, Math.abs(delta) / DELTA_FULL);
  const alpha = 0.08 + 0.47 * Math.sqrt(t);
  return `rgba(${delta < 0 ? NEGATIVE : POSITIVE}, ${alpha.toFixed(3)})`;
}

/** A change in log-probability to two decimals with its sign (a true minus); "0.00" when it
 * rounds to nothing, "–" when there is none. */
export function deltaText(delta: number | null | undefined): string {
  if (delta === null || delta === undefined || Number.isNaN(delta)) return "–";
  if (Math.abs(delta) < 0.005) return "0.00";
  return `${delta < 0 ? "−" : "+"}${Math.abs(delta).toFixed(2)}`;
}

/** Whether the intervened model's top token differs from the CI-masked model's. */
export function top1Changed(effect: Pick<PositionEffect, "spd" | "intervened">): boolean {
  const before = effect.spd[0];
  const after = effect.intervened[0];
  return before !== undefined && after !== undefined && before.token_id !== after.token_id;
}

/** Token ids in `list`, for marking which of another list's tokens are new there. */
export function tokenIds(list: readonly TokenProb[]): Set<number> {
  return new Set(list.map((t) => t.token_id));
}

/** A failed request as one sentence a person can act on (`what`: what was being done). */
export function problemLine(error: unknown, what: string): string {
  if (!(error instanceof ApiError)) return `${what} failed: ${error instanceof Error ? error.message : String(error)}`;
  const detail = error.message.replace(/\.$/, "");
  switch (error.status) {
    case 0:
      return `${what} failed: ${detail}.`;
    case 409:
      return `${what} needs a model: ${detail}.`;
    case 503: {
      const wait = error.retryAfter !== null ? ` (try again in ${error.retryAfter} s)` : "";
      return `${what} failed, the server is busy${wait}: ${detail}.`;
    }
    default:
      return `${what} failed: ${detail}.`;
  }
}
