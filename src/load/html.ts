/** One self-contained HTML report (inline CSS, charts inlined as SVG; no external resources). */
import { escapeXml } from './charts/svg.js';

export interface HtmlSection {
  heading: string;
  /** Trusted HTML (tables and SVG built by this module's callers). */
  html: string;
}

export function htmlTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const th = headers.map((h, c) => `<th${c === 0 ? '' : ' class="num"'}>${escapeXml(h)}</th>`).join('');
  const trs = rows.map((r) => `<tr>${r.map((cell, c) => `<td${c === 0 ? '' : ' class="num"'}>${escapeXml(cell)}</td>`).join('')}</tr>`).join('\n');
  return `<table><thead><tr>${th}</tr></thead><tbody>\n${trs}\n</tbody></table>`;
}

export function htmlList(items: readonly string[]): string {
  return `<ul>${items.map((i) => `<li>${escapeXml(i)}</li>`).join('')}</ul>`;
}

/** An SVG chart as a figure (the SVG text is inlined as is). */
export function htmlFigure(svg: string, caption: string): string {
  return `<figure>${svg.replace(/^<\?xml[^>]*>\s*/, '')}<figcaption>${escapeXml(caption)}</figcaption></figure>`;
}

export function htmlReport(title: string, intro: readonly string[], sections: readonly HtmlSection[]): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeXml(title)}</title>
<style>
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, Helvetica, sans-serif; margin: 24px auto; max-width: 1180px; color: #222; padding: 0 16px; }
h1 { font-size: 24px; } h2 { font-size: 19px; margin-top: 32px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { border: 1px solid #d0d0d0; padding: 4px 8px; } th { background: #f3f3f3; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 16px 0; } figure svg { max-width: 100%; height: auto; border: 1px solid #e5e5e5; }
figcaption { font-size: 12px; color: #555; }
.intro li { margin: 2px 0; } code { background: #f5f5f5; padding: 0 3px; }
</style>
</head>
<body>
<h1>${escapeXml(title)}</h1>
<ul class="intro">${intro.map((l) => `<li>${escapeXml(l)}</li>`).join('')}</ul>
${sections.map((s) => `<h2>${escapeXml(s.heading)}</h2>\n${s.html}`).join('\n')}
</body>
</html>
`;
}
