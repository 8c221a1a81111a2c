/**
 * Exact-size copies of typed-array prefixes, for buffers that cross threads.
 *
 * Float64Array.prototype.slice is several times slower than allocating and set()ing on Node 20 (a
 * 74 KB prefix: ~25 us vs ~5 us measured), and the trace and stats batches are copied this way on the
 * front end's thread every few milliseconds.
 */
export function copyFloats(a: Float64Array, n: number = a.length): Float64Array {
  const out = new Float64Array(n);
  out.set(n === a.length ? a : a.subarray(0, n));
  return out;
}

export function copyBytes(a: Uint8Array, n: number = a.length): Uint8Array {
  const out = new Uint8Array(n);
  out.set(n === a.length ? a : a.subarray(0, n));
  return out;
}

/**
 * Below this size a typed array is cloned rather than moved when it crosses threads: moving costs a fixed
 * ~8-10 us of CPU (both threads) whatever the size, cloning ~7 us at 2 KB and ~40 us at 32 KB (a 4,000-
 * message loop to a worker, measured).
 */
export const TRANSFER_MIN_BYTES = 4096;

/** The buffers among `views` worth moving rather than cloning (see TRANSFER_MIN_BYTES). */
export function transferable(...views: ArrayBufferView[]): ArrayBuffer[] | undefined {
  let out: ArrayBuffer[] | undefined;
  for (const v of views) if (v.byteLength >= TRANSFER_MIN_BYTES) (out ??= []).push(v.buffer as ArrayBuffer);
  return out;
}
