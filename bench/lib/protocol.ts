/**
 * Messages between bench/run.ts and the per-scenario child (bench/lib/child.ts), over the IPC channel.
 */
import type { Figure } from './scenario.js';

export interface ScenarioInfo {
  /** Compiled file, relative to the scenarios folder (e.g. "e2e-proxy.js"). */
  readonly file: string;
  readonly name: string;
  readonly description: string;
  readonly gate: boolean;
  readonly needs: readonly string[];
  /** Set when the module failed to load or does not default-export a Scenario. */
  readonly error?: string;
}

export interface SkippedPart {
  readonly what: string;
  readonly reason: string;
}

export interface ChildContext {
  readonly quick: boolean;
  readonly durationSec: number;
  readonly runs: number;
}

export type ChildMessage =
  | { readonly kind: 'described'; readonly scenarios: readonly ScenarioInfo[] }
  | { readonly kind: 'result'; readonly figures: readonly Figure[]; readonly skipped: readonly SkippedPart[] }
  | { readonly kind: 'skipped'; readonly reason: string; readonly skipped: readonly SkippedPart[] }
  | { readonly kind: 'failed'; readonly error: string; readonly figures: readonly Figure[]; readonly skipped: readonly SkippedPart[] };
