/**
 * Per-slot strings that repeat (worker URL, policy, route, error code) as small integer codes in typed
 * arrays, the strings once each in a table the columns share; and the rare per-slot text that does not
 * repeat (an error message) in a sparse map.
 *
 * As JS arrays of strings these columns were the tracker thread's costliest writes: 100k-element arrays
 * in the old generation, grown by copying while the store fills and written through the write barrier
 * on every update; a thread profile of the router at ~10k req/s put ~half of the tracker's CPU on the
 * five assignments (docs/tracing.md). Codes are plain stores into memory the collector never scans.
 */
const NULL = -1;
const SPILLED = -2;
/** Distinct strings coded at most by default; past it, values are kept per slot in a map (never with real fleets). */
const MAX_CODES = 16_384;

/** The strings of a set of code columns (or score keys): one code per distinct string, never reused. */
export class StringTable {
  private readonly codes = new Map<string, number>();
  private readonly strings: string[] = [];

  constructor(private readonly maxCodes = MAX_CODES) {}

  /** The code of `s`, making one when new; -1 when the table is full. */
  codeOf(s: string): number {
    const c = this.codes.get(s);
    if (c !== undefined) return c;
    if (this.strings.length >= this.maxCodes) return -1;
    const code = this.strings.length;
    this.strings.push(s);
    this.codes.set(s, code);
    return code;
  }

  stringOf(code: number): string {
    return this.strings[code] as string;
  }

  get size(): number {
    return this.strings.length;
  }
}

/** A column of repeated strings (or null) per slot, coded through a shared StringTable. */
export class CodeColumn {
  private codes: Int32Array = new Int32Array(0);
  private readonly spilled = new Map<number, string>();
  /** The last string written and its code: most writes repeat it (one policy, one route, few workers). */
  private lastString: string | null = null;
  private lastCode = NULL;

  constructor(private readonly table: StringTable) {}

  /** Room for slots [0, capacity); existing slots keep their values. New slots hold null. */
  grow(capacity: number): void {
    if (capacity <= this.codes.length) return;
    const codes = new Int32Array(capacity).fill(NULL);
    codes.set(this.codes);
    this.codes = codes;
  }

  set(s: number, value: string | null): void {
    if (this.codes[s] === SPILLED) this.spilled.delete(s);
    if (value === null) {
      this.codes[s] = NULL;
      return;
    }
    if (value === this.lastString) {
      this.codes[s] = this.lastCode;
      return;
    }
    const code = this.table.codeOf(value);
    if (code < 0) {
      this.codes[s] = SPILLED;
      this.spilled.set(s, value);
      return;
    }
    this.lastString = value;
    this.lastCode = code;
    this.codes[s] = code;
  }

  get(s: number): string | null {
    const c = this.codes[s] as number;
    if (c >= 0) return this.table.stringOf(c);
    return c === NULL ? null : (this.spilled.get(s) as string);
  }

  /** Values kept per slot because the table was full. */
  get spilledCount(): number {
    return this.spilled.size;
  }
}

/** A column of per-slot strings that are mostly null (an error message): only the others are kept. */
export class SparseStrings {
  private readonly values = new Map<number, string>();

  set(s: number, value: string | null): void {
    if (value !== null) this.values.set(s, value);
    else if (this.values.size > 0) this.values.delete(s);
  }

  get(s: number): string | null {
    return this.values.get(s) ?? null;
  }

  get size(): number {
    return this.values.size;
  }
}
