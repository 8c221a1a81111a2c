/**
 * A column of per-slot strings kept as bytes, outside the JavaScript heap.
 *
 * For strings that differ per trace (a policy's reason: "round_robin: counter 8812 mod 4"): held as JS
 * strings, 100k traces are 100k old-generation objects that the collector marks, and sweeps as traces are
 * evicted, on the tracker thread and V8's helper threads. Here an ASCII string of up to `stride` chars is
 * copied into its slot's row of one buffer; longer or non-ASCII ones are kept as strings beside it (rare).
 */
const NULL = -1;
const SPILLED = -2;

export class InlineStrings {
  private rows: Buffer = Buffer.alloc(0);
  private lens: Int32Array = new Int32Array(0);
  private readonly spilled = new Map<number, string>();

  constructor(private readonly stride: number) {}

  /** Room for slots [0, capacity); existing slots keep their strings. New slots hold null. */
  grow(capacity: number): void {
    if (capacity <= this.lens.length) return;
    const rows = Buffer.alloc(capacity * this.stride);
    this.rows.copy(rows);
    this.rows = rows;
    const lens = new Int32Array(capacity).fill(NULL);
    lens.set(this.lens);
    this.lens = lens;
  }

  set(s: number, value: string | null): void {
    if (this.lens[s] === SPILLED) this.spilled.delete(s);
    if (value === null) {
      this.lens[s] = NULL;
      return;
    }
    const n = value.length;
    if (n <= this.stride) {
      const at = s * this.stride;
      let i = 0;
      for (; i < n; i++) {
        const c = value.charCodeAt(i);
        if (c > 127) break;
        this.rows[at + i] = c;
      }
      if (i === n) {
        this.lens[s] = n;
        return;
      }
    }
    this.lens[s] = SPILLED;
    this.spilled.set(s, value);
  }

  get(s: number): string | null {
    const n = this.lens[s] as number;
    if (n === NULL) return null;
    if (n === SPILLED) return this.spilled.get(s) as string;
    const at = s * this.stride;
    return this.rows.toString('latin1', at, at + n);
  }

  /** Strings kept outside the buffer (too long, or not ASCII). */
  get spilledCount(): number {
    return this.spilled.size;
  }
}
