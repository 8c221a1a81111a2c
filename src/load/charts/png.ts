/**
 * SVG -> PNG with @resvg/resvg-js (a prebuilt native binary shipped inside the npm package; no install
 * script, no download). When it cannot load, or the machine has no fonts for the labels, PNG output
 * degrades to SVG only and says why once: reports still have their SVGs (inlined in the HTML).
 */
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';

interface ResvgModule {
  Resvg: new (svg: string, options?: Record<string, unknown>) => { render(): { asPng(): Buffer } };
}

export interface PngRenderer {
  /** Writes `svg` as PNG to `path`. */
  write(svg: string, path: string): void;
}

let cached: { renderer: PngRenderer | undefined; reason: string | undefined } | undefined;

const FONT_DIRS = ['/usr/share/fonts', '/usr/local/share/fonts', '/System/Library/Fonts', '/Library/Fonts', 'C:\\Windows\\Fonts'];

function hasFonts(): boolean {
  const walk = (dir: string, depth: number): boolean => {
    if (depth > 4 || !existsSync(dir)) return false;
    try {
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        if (e.isFile() && /\.(ttf|otf|ttc)$/i.test(e.name)) return true;
        if (e.isDirectory() && walk(`${dir}/${e.name}`, depth + 1)) return true;
      }
    } catch {
      return false;
    }
    return false;
  };
  return FONT_DIRS.some((d) => walk(d, 0));
}

/** The PNG renderer, or undefined with the reason PNGs are not available here. */
export function pngRenderer(): { renderer: PngRenderer | undefined; reason: string | undefined } {
  if (cached !== undefined) return cached;
  if (process.env['SWITCHYARD_NO_PNG'] === '1') {
    cached = { renderer: undefined, reason: 'PNG output disabled by SWITCHYARD_NO_PNG=1' };
    return cached;
  }
  let mod: ResvgModule;
  try {
    mod = createRequire(import.meta.url)('@resvg/resvg-js') as ResvgModule;
  } catch (err) {
    cached = { renderer: undefined, reason: `@resvg/resvg-js is not usable here (${(err as Error).message.split('\n')[0]}); writing SVG only (run npm install)` };
    return cached;
  }
  if (!hasFonts()) {
    cached = { renderer: undefined, reason: 'no TrueType/OpenType fonts found for chart labels (e.g. apt-get install fonts-dejavu-core); writing SVG only' };
    return cached;
  }
  const renderer: PngRenderer = {
    write(svg: string, path: string): void {
      const r = new mod.Resvg(svg, {
        background: '#ffffff',
        fitTo: { mode: 'zoom', value: 1.5 },
        font: { loadSystemFonts: true, defaultFontFamily: 'DejaVu Sans', sansSerifFamily: 'DejaVu Sans' },
      });
      writeFileSync(path, r.render().asPng());
    },
  };
  cached = { renderer, reason: undefined };
  return cached;
}

/** Writes `<base>.svg` and, when possible, `<base>.png`; returns what was written. */
export function writeChart(svg: string, base: string): { svg: string; png: string | undefined } {
  writeFileSync(`${base}.svg`, svg);
  const { renderer } = pngRenderer();
  if (renderer === undefined) return { svg: `${base}.svg`, png: undefined };
  renderer.write(svg, `${base}.png`);
  return { svg: `${base}.svg`, png: `${base}.png` };
}
