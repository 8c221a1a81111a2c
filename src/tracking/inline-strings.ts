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

  /** set() for a string given as bytes (one char a byte, latin1). */
  setBytes(s: number, b: Uint8Array, off: number, len: number): void {
    if (this.lens[s] === SPILLED) this.spilled.delete(s);
    if (len <= this.stride) {
      // A loop, not rows.set(b.subarray(...)): a subarray is an object per call, and these are short.
      const at = s * this.stride;
      for (let i = 0; i < len; i++) this.rows[at + i] = b[off + i] as number;
      this.lens[s] = len;
      return;
    }
    this.lens[s] = SPILLED;
    this.spilled.set(s, Buffer.from(b.buffer, b.byteOffset + off, len).toString('latin1'));
  }

  isNull(s: number): boolean {
    return this.lens[s] === NULL;
  }

  /** Whether slot s holds exactly `value` (null never equals). */
  equals(s: number, value: string): boolean {
    const n = this.lens[s] as number;
    if (n === NULL) return false;
    if (n === SPILLED) return this.spilled.get(s) === value;
    if (n !== value.length) return false;
    const at = s * this.stride;
    for (let i = 0; i < n; i++) if (this.rows[at + i] !== value.charCodeAt(i)) return false;
    return true;
  }

  /** equals() for a string given as bytes. */
  equalsBytes(s: number, b: Uint8Array, off: number, len: number): boolean {
    const n = this.lens[s] as number;
    if (n === NULL) return false;
    if (n === SPILLED) {
      const v = this.spilled.get(s) as string;
      if (v.length !== len) return false;
      for (let i = 0; i < len; i++) if (v.charCodeAt(i) !== b[off + i]) return false;
      return true;
    }
    if (n !== len) return false;
    const at = s * this.stride;
    for (let i = 0; i < len; i++) if (this.rows[at + i] !== b[off + i]) return false;
    return true;
  }

  /** Order of two non-null slots' strings as strings compare (-1, 0, 1), without making strings when inline. */
  compare(a: number, b: number): number {
    const la = this.lens[a] as number;
    const lb = this.lens[b] as number;
    if (la < 0 || lb < 0) {
      const x = this.get(a) as string;
      const y = this.get(b) as string;
      return x < y ? -1 : x > y ? 1 : 0;
    }
    const pa = a * this.stride;
    const pb = b * this.stride;
    const n = la < lb ? la : lb;
    for (let i = 0; i < n; i++) {
      const d = (this.rows[pa + i] as number) - (this.rows[pb + i] as number);
      if (d !== 0) return d < 0 ? -1 : 1;
    }
    return la < lb ? -1 : la > lb ? 1 : 0;
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
