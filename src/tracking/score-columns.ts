/**
 * A column of per-slot scores (a decision's named numbers: { counter: 8812, available: 4, pick: 0 }) kept
 * in typed arrays: up to INLINE_SCORES (key code, value) pairs per slot, the key names in a small shared
 * table. Held as one object per trace, 100k traces were 100k old-generation objects for the collector;
 * here they are none. Scores with more keys, or past MAX_KEYS distinct key names, are kept as objects
 * beside the columns (rare: every built-in policy gives at most 5 keys from a fixed set).
 */
import { StringTable } from './code-columns.js';

export const INLINE_SCORES = 6;
const MAX_KEYS = 1024;
const NULL = -1;
const SPILLED = -2;

export class ScoreColumns {
  private keys: Int32Array = new Int32Array(0);
  private values: Float64Array = new Float64Array(0);
  private counts: Int8Array = new Int8Array(0);
  private readonly spilled = new Map<number, Record<string, number>>();
  private readonly keyNames = new StringTable(MAX_KEYS);

  /** Room for slots [0, capacity); existing slots keep their scores. New slots hold null. */
  grow(capacity: number): void {
    if (capacity <= this.counts.length) return;
    const keys = new Int32Array(capacity * INLINE_SCORES);
    keys.set(this.keys);
    this.keys = keys;
    const values = new Float64Array(capacity * INLINE_SCORES);
    values.set(this.values);
    this.values = values;
    const counts = new Int8Array(capacity).fill(NULL);
    counts.set(this.counts);
    this.counts = counts;
  }

  set(s: number, scores: Readonly<Record<string, number>> | null): void {
    if (this.counts[s] === SPILLED) this.spilled.delete(s);
    if (scores === null) {
      this.counts[s] = NULL;
      return;
    }
    const at = s * INLINE_SCORES;
    let n = 0;
    for (const k in scores) {
      const code = n < INLINE_SCORES ? this.keyNames.codeOf(k) : -1;
      if (code < 0) {
        this.counts[s] = SPILLED;
        this.spilled.set(s, { ...scores });
        return;
      }
      this.keys[at + n] = code;
      this.values[at + n] = scores[k] as number;
      n++;
    }
    this.counts[s] = n;
  }

  /** Slot s's scores as a fresh object (answers and the log), or null. */
  get(s: number): Record<string, number> | null {
    const n = this.counts[s] as number;
    if (n === NULL) return null;
    if (n === SPILLED) return { ...(this.spilled.get(s) as Record<string, number>) };
    const out: Record<string, number> = {};
    const at = s * INLINE_SCORES;
    for (let i = 0; i < n; i++) out[this.keyNames.stringOf(this.keys[at + i] as number)] = this.values[at + i] as number;
    return out;
  }

  /** Scores kept as objects (more keys than fit, or key names past the table's bound). */
  get spilledCount(): number {
    return this.spilled.size;
  }
}
