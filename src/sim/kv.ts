/**
 * A simulated server's KV memory: `capacity` token slots shared by the radix prefix cache (tokens a
 * sequence can be matched against later; locked while a live request uses them, evictable LRU-first
 * otherwise) and private slots (decode tokens and prefill chunks in flight, which belong to one request
 * until it ends and its sequence is cached).
 */
import { RadixCache } from './radix-cache.js';
import type { SimRequest } from './request.js';

export class KvPool {
  readonly cache = new RadixCache();
  /** KV slots outside the tree (decode tokens, prefill chunks in flight). */
  privateTokens = 0;

  constructor(
    readonly capacity: number,
    /** --disable-radix-cache: nothing is cached, a request's tokens stay private until it ends. */
    private readonly radix: boolean,
  ) {}

  /** KV tokens held by live requests (SGLang's num_used_tokens: excludes evictable cache). */
  get used(): number {
    return this.cache.lockedSize + this.privateTokens;
  }

  get free(): number {
    return this.capacity - this.cache.totalSize - this.privateTokens;
  }

  /** Makes `tokens` KV slots free, evicting unlocked cache LRU-first; false if impossible. */
  allocate(tokens: number): boolean {
    const free = this.free;
    if (free >= tokens) return true;
    this.cache.evict(tokens - free);
    return this.free >= tokens;
  }

  /** Caches the first `cacheLen` tokens of the request's sequence and drops its locks and private slots. */
  release(req: SimRequest, cacheLen: number): void {
    if (this.radix && req.node !== null) {
      const outputs = Math.max(0, cacheLen - req.promptTokens);
      const len = Math.min(cacheLen, req.computed + req.privateTokens);
      if (len > 0) {
        const seq = req.sequence(Math.min(outputs, req.outputIds.length));
        this.cache.insert(seq, Math.min(len, seq.length));
      }
      this.cache.unlock(req.node);
    }
    req.node = null;
    this.privateTokens -= req.privateTokens;
    req.privateTokens = 0;
  }
}
