/**
 * Per-worker maps given on the command line or in a config file (--worker-groups, --worker-node-map):
 * a JSON object `{"url": value}`, `url=value` pairs separated by commas or whitespace, or the object
 * itself. Keys come back as normalised worker URLs; a URL named twice is an error.
 */
import { normalizeWorkerUrl } from './registry.js';

export function parseWorkerUrlMap(
  raw: string | Readonly<Record<string, unknown>> | undefined,
  flag: string,
  valueName: string,
  fail: (message: string) => Error,
): Map<string, unknown> {
  const out = new Map<string, unknown>();
  if (raw === undefined) return out;
  let entries: [string, unknown][];
  if (typeof raw === 'string') {
    const text = raw.trim();
    if (text === '') return out;
    if (text.startsWith('{')) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch (err) {
        throw fail(`${flag}: not valid JSON: ${(err as Error).message}`);
      }
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw fail(`${flag}: expected a JSON object {"http://host:port": ${valueName}}`);
      entries = Object.entries(parsed as Record<string, unknown>);
    } else {
      entries = text
        .split(/[\s,]+/)
        .filter((p) => p !== '')
        .map((pair) => {
          const eq = pair.lastIndexOf('=');
          if (eq <= 0) throw fail(`${flag}: '${pair}' is not URL=${valueName.toUpperCase()}`);
          return [pair.slice(0, eq), pair.slice(eq + 1)];
        });
    }
  } else {
    entries = Object.entries(raw);
  }
  for (const [url, value] of entries) {
    let key: string;
    try {
      key = normalizeWorkerUrl(url).url;
    } catch (err) {
      throw fail(`${flag}: ${(err as Error).message}`);
    }
    if (out.has(key)) throw fail(`${flag}: ${key} is mapped twice`);
    out.set(key, value);
  }
  return out;
}
