/**
 * The trace store's index from request id to slot, kept out of the JavaScript heap.
 *
 * A Map<string, number> over 100k traces holds 100k id strings that all get promoted to the old
 * generation and die there when their trace is evicted: the tracker thread's major collections had to mark
 * and sweep them, and the platform's GC helper threads spent ~3 us per request on it at ~14k req/s (e2e
 * bench). Here an id lives as bytes in its slot's row of one buffer (ids are ASCII by validation, and most
 * are short), found through an open-addressing hash table in an Int32Array: no object per trace at all.
 *
 * Ids come in two forms: a string (queries, the trace log) or bytes in an event batch (the hot path: the
 * front end writes ids as bytes, so no string is made for them on either side). Both hash the same way
 * (FNV-1a over char codes = bytes for ASCII). The ids themselves are an InlineStrings column: longer than
 * INLINE_BYTES, or not ASCII, they are kept as strings beside it (rare: request ids are at most 128 chars
 * of [A-Za-z0-9._:-]).
 *
 * Linear probing at load factor <= 1/2, deletion by backward shift (no tombstones), so a lookup stays a
 * probe or two however the table churns.
 */

import { InlineStrings } from './inline-strings.js';

/** Bytes of an id stored in its slot's row; longer ids are kept as strings. */
export const INLINE_BYTES = 48;
const MIN_TABLE = 2048;

/** An id as it crossed in an event batch: `len` ASCII bytes at `off` in `bytes`. */
export interface IdBytes {
  readonly bytes: Uint8Array;
  readonly off: number;
  readonly len: number;
}

export function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return mix(h);
}

export function hashBytes(b: Uint8Array, off: number, len: number): number {
  let h = 0x811c9dc5;
  for (let i = off, end = off + len; i < end; i++) h = Math.imul(h ^ (b[i] as number), 0x01000193);
  return mix(h);
}

/** FNV's low bits are weak for short keys; the table indexes by low bits. */
function mix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  return h | 0;
}

export class IdTable {
  private capacity = 0;
  /** Each slot's id (null: the slot holds none). */
  private readonly ids = new InlineStrings(INLINE_BYTES);
  private hashes: Int32Array = new Int32Array(0);
  /** slot + 1 per position; 0: empty. */
  private table: Int32Array = new Int32Array(MIN_TABLE);
  private mask = MIN_TABLE - 1;
  private n = 0;

  /** Ids held. */
  get count(): number {
    return this.n;
  }

  /** Room for slots [0, capacity); existing slots keep their ids. */
  grow(capacity: number): void {
    if (capacity <= this.capacity) return;
    this.ids.grow(capacity);
    const hashes = new Int32Array(capacity);
    hashes.set(this.hashes);
    this.hashes = hashes;
    this.capacity = capacity;
    let size = MIN_TABLE;
    while (size < capacity * 2) size *= 2;
    if (size !== this.table.length) this.rehash(size);
  }

  /** The slot holding `id`, or -1. */
  find(id: string): number {
    const h = hashString(id);
    const { table, mask, hashes } = this;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const e = table[i] as number;
      if (e === 0) return -1;
      const s = e - 1;
      if (hashes[s] === h && this.ids.equals(s, id)) return s;
    }
  }

  /** The slot holding the id in `b`, or -1. */
  findBytes(b: Uint8Array, off: number, len: number): number {
    const h = hashBytes(b, off, len);
    const { table, mask, hashes } = this;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const e = table[i] as number;
      if (e === 0) return -1;
      const s = e - 1;
      if (hashes[s] === h && this.ids.equalsBytes(s, b, off, len)) return s;
    }
  }

  /** Give empty slot `s` the id (which must not be held already). */
  insert(s: number, id: string): void {
    this.checkEmpty(s);
    this.ids.set(s, id);
    this.link(s, hashString(id));
  }

  /** insert() for an id given as ASCII bytes. */
  insertBytes(s: number, b: Uint8Array, off: number, len: number): void {
    this.checkEmpty(s);
    this.ids.setBytes(s, b, off, len);
    this.link(s, hashBytes(b, off, len));
  }

  /** Forget slot s's id. */
  remove(s: number): void {
    if (this.ids.isNull(s)) return;
    const { table, mask } = this;
    let i = (this.hashes[s] as number) & mask;
    while (table[i] !== s + 1) i = (i + 1) & mask;
    // Backward shift: pull later entries of the probe run into the hole unless their home lies after it.
    for (let j = (i + 1) & mask; ; j = (j + 1) & mask) {
      const e = table[j] as number;
      if (e === 0) break;
      const home = (this.hashes[e - 1] as number) & mask;
      const stays = i <= j ? home > i && home <= j : home > i || home <= j;
      if (!stays) {
        table[i] = e;
        i = j;
      }
    }
    table[i] = 0;
    this.ids.set(s, null);
    this.n--;
  }

  /** Slot s's id as a string (answers and the log only: the hot path never needs it). */
  idOf(s: number): string {
    const id = this.ids.get(s);
    if (id === null) throw new Error(`slot ${s} holds no id`);
    return id;
  }

  /** Order of the ids of two held slots, as strings compare (-1, 0, 1), without making strings. */
  compare(a: number, b: number): number {
    return this.ids.compare(a, b);
  }

  // ---------------------------------------------------------------------------------------------

  private checkEmpty(s: number): void {
    if (s < 0 || s >= this.capacity) throw new RangeError(`slot ${s} outside [0, ${this.capacity})`);
    if (!this.ids.isNull(s)) throw new Error(`slot ${s} already holds an id`);
  }

  private link(s: number, h: number): void {
    this.hashes[s] = h;
    const { table, mask } = this;
    let i = h & mask;
    while (table[i] !== 0) i = (i + 1) & mask;
    table[i] = s + 1;
    this.n++;
  }

  private rehash(size: number): void {
    this.table = new Int32Array(size);
    this.mask = size - 1;
    const { table, mask } = this;
    for (let s = 0; s < this.capacity; s++) {
      if (this.ids.isNull(s)) continue;
      let i = (this.hashes[s] as number) & mask;
      while (table[i] !== 0) i = (i + 1) & mask;
      table[i] = s + 1;
    }
  }
}
