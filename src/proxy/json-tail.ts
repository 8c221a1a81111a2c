/**
 * Reads one nested object (`"meta_info": {...}` or `"usage": {...}`) out of a response body without
 * parsing the whole body: find the key's last occurrence, then take the balanced braces after it,
 * honouring strings and escapes. Generated text can be long; the accounting object is small.
 */
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN = 0x7b;
const CLOSE = 0x7d;

export function extractObjectAfterKey(buf: Buffer, key: string): Record<string, unknown> | undefined {
  const needle = `"${key}"`;
  let at = buf.lastIndexOf(needle);
  while (at !== -1) {
    let i = at + needle.length;
    while (i < buf.length && (buf[i] === 0x20 || buf[i] === 0x0a || buf[i] === 0x0d || buf[i] === 0x09)) i++;
    if (buf[i] === 0x3a) {
      i++;
      while (i < buf.length && (buf[i] === 0x20 || buf[i] === 0x0a || buf[i] === 0x0d || buf[i] === 0x09)) i++;
      if (buf[i] === OPEN) {
        const end = matchBrace(buf, i);
        if (end !== -1) {
          try {
            const v: unknown = JSON.parse(buf.toString('utf8', i, end + 1));
            if (v !== null && typeof v === 'object' && !Array.isArray(v)) return v as Record<string, unknown>;
          } catch {
            return undefined;
          }
        }
      }
    }
    // The match was inside a string (e.g. generated text mentioning the key): look further left.
    at = at === 0 ? -1 : buf.lastIndexOf(needle, at - 1);
  }
  return undefined;
}

function matchBrace(buf: Buffer, start: number): number {
  let depth = 0;
  let inString = false;
  for (let i = start; i < buf.length; i++) {
    const c = buf[i];
    if (inString) {
      if (c === BACKSLASH) i++;
      else if (c === QUOTE) inString = false;
      continue;
    }
    if (c === QUOTE) inString = true;
    else if (c === OPEN) depth++;
    else if (c === CLOSE) {
      depth--;
      if (depth === 0) return i;
    }
  }
  return -1;
}

/** The accounting part of a non-streaming response, shaped as readTokenCounts expects. */
export function extractAccounting(body: Buffer): Record<string, unknown> | undefined {
  const meta = extractObjectAfterKey(body, 'meta_info');
  if (meta !== undefined) return { meta_info: meta };
  const usage = extractObjectAfterKey(body, 'usage');
  if (usage !== undefined) return { usage };
  return undefined;
}
