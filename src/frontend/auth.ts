import { timingSafeEqual, createHash } from 'node:crypto';

/** Constant-time check of `Authorization: Bearer <key>` (hashing first makes lengths equal). */
export function checkBearer(header: string, key: string): boolean {
  const m = /^Bearer\s+(.+)$/i.exec(header);
  if (m === null) return false;
  const a = createHash('sha256').update(m[1]!.trim()).digest();
  const b = createHash('sha256').update(key).digest();
  return timingSafeEqual(a, b);
}
