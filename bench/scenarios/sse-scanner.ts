/**
 * The SSE scanner the relay runs on every streamed chunk (src/proxy/sse-scanner.ts): cost per event and
 * bytes per second, one whole stream per operation (a fresh scanner, every chunk pushed, then the last
 * event parsed for token counts, as the router does at the end of a stream).
 *
 * Streams (100 content events each, then [DONE]):
 *   sglang     SGLang /generate: cumulative text + meta_info per event (the light backend's bytes,
 *              ~35 KB per stream), one event per network chunk
 *   openai     OpenAI chat.completion.chunk deltas: a role-only first chunk, 100 content deltas, a
 *              usage-only chunk (choices: []), one event per network chunk
 *   coalesced  the sglang stream with 10 events per network chunk (a client or proxy that fell behind)
 *   split      the sglang stream cut every 1,460 bytes (Ethernet MSS), so events straddle chunks and
 *              the scanner carries partial events over
 *
 * Figures per stream kind W:
 *   sse.W.ns_per_event    ns per content event (the whole stream's cost / 100)
 *   sse.W.mb_per_s        MB (1e6 bytes) of stream scanned per second
 *   sse.W.vs_indexof      scanner time / a bare Buffer.indexOf('\n\n') walk over the same chunks, same
 *                         batches: what scanning costs over merely finding event boundaries
 *   sse.W.calibrated      (sglang, openai) ns per stream in reference units: the gate's figure
 *
 * Honours SWITCHYARD_BENCH_SLOWDOWN (the gate's own test).
 */
import { buildAnswers } from '../fixtures/light-backend.js';
import { readTokenCounts, SseScanner } from '../../src/proxy/sse-scanner.js';
import { outputWord } from '../../src/util/tokenizer.js';
import { calibratedFigures, measureAgainst, type Subject } from '../lib/gate-calibration.js';
import { summarize, type BenchContext, type Figure, type Scenario } from '../lib/scenario.js';

const EVENTS = 100;
const MSS = 1460;
const BOUNDARY = Buffer.from('\n\n');

let sink = 0;

interface Stream {
  readonly name: 'sglang' | 'openai' | 'coalesced' | 'split';
  readonly note: string;
  readonly chunks: readonly Buffer[];
  readonly bytes: number;
}

function sglangEvents(): Buffer[] {
  const a = buildAnswers(EVENTS, 16);
  return [...a.events, a.done];
}

function openaiEvents(): Buffer[] {
  const base = { id: 'chatcmpl-bench', object: 'chat.completion.chunk', created: 1_700_000_000, model: 'bench-model' };
  const events: Buffer[] = [];
  const ev = (o: object): Buffer => Buffer.from(`data: ${JSON.stringify(o)}\n\n`);
  events.push(ev({ ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }] }));
  for (let k = 0; k < EVENTS; k++) {
    const last = k === EVENTS - 1;
    events.push(ev({ ...base, choices: [{ index: 0, delta: { content: outputWord(7, k) }, logprobs: null, finish_reason: last ? 'length' : null }] }));
  }
  events.push(ev({ ...base, choices: [], usage: { prompt_tokens: 512, completion_tokens: EVENTS, total_tokens: 512 + EVENTS, prompt_tokens_details: { cached_tokens: 256 } } }));
  events.push(Buffer.from('data: [DONE]\n\n'));
  return events;
}

function coalesce(events: readonly Buffer[], perChunk: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < events.length; i += perChunk) out.push(Buffer.concat(events.slice(i, i + perChunk)));
  return out;
}

function cut(events: readonly Buffer[], size: number): Buffer[] {
  const all = Buffer.concat(events);
  const out: Buffer[] = [];
  for (let i = 0; i < all.length; i += size) out.push(Buffer.from(all.subarray(i, Math.min(all.length, i + size))));
  return out;
}

function streams(): Stream[] {
  const sg = sglangEvents();
  const oa = openaiEvents();
  const make = (name: Stream['name'], note: string, chunks: Buffer[]): Stream => ({ name, note, chunks, bytes: chunks.reduce((n, c) => n + c.length, 0) });
  return [
    make('sglang', 'SGLang cumulative text + meta_info, one event per chunk', sg),
    make('openai', 'OpenAI chat deltas + usage chunk, one event per chunk', oa),
    make('coalesced', 'SGLang events, 10 per chunk', coalesce(sg, 10)),
    make('split', `SGLang events cut every ${MSS} bytes`, cut(sg, MSS)),
  ];
}

/** One whole stream through a fresh scanner, then the end-of-stream read of token counts. */
function scanStream(chunks: readonly Buffer[]): void {
  const s = new SseScanner();
  for (let i = 0; i < chunks.length; i++) s.push(chunks[i] as Buffer, i + 1); // 0 means "no content yet" to the scanner
  const counts = readTokenCounts(s.lastEvent());
  sink += s.contentEvents + (counts === undefined ? 0 : counts.completionTokens);
}

/** The floor: find every event boundary in the same chunks and nothing else. */
function boundaryWalk(chunks: readonly Buffer[]): void {
  let n = 0;
  for (let i = 0; i < chunks.length; i++) {
    const c = chunks[i] as Buffer;
    let at = c.indexOf(BOUNDARY, 0);
    while (at !== -1) {
      n++;
      at = c.indexOf(BOUNDARY, at + 2);
    }
  }
  sink += n;
}

const scenario: Scenario = {
  name: 'sse-scanner',
  description: 'SSE chunk scanner: ns per event and MB/s for SGLang, OpenAI, coalesced and split streams; vs a bare boundary scan; calibrated',
  gate: true,
  async run(ctx: BenchContext): Promise<Figure[]> {
    const budgetMs = ctx.quick ? 250 : 600;
    const all = streams();
    // The scanner must see what the relay sees: check the stream is read as 100 content events first.
    for (const st of all) {
      const s = new SseScanner();
      st.chunks.forEach((c, i) => s.push(c, i + 1));
      if (s.contentEvents !== EVENTS || !s.sawDone) throw new Error(`${st.name}: the scanner saw ${s.contentEvents} content events (expected ${EVENTS}), done ${s.sawDone}`);
    }
    const perEvent = new Map<string, number[]>();
    const vs = new Map<string, number[]>();
    for (let r = 0; r < ctx.runs; r++) {
      for (const st of all) {
        const subject: Subject = { op: () => scanStream(st.chunks) };
        const floor: Subject = { op: () => boundaryWalk(st.chunks) };
        const m = measureAgainst(subject, floor, budgetMs);
        (perEvent.get(st.name) ?? perEvent.set(st.name, []).get(st.name)!).push(m.subjectNs / EVENTS);
        (vs.get(st.name) ?? vs.set(st.name, []).get(st.name)!).push(m.ratio);
        ctx.log(`round ${r + 1}/${ctx.runs} ${st.name}: ${(m.subjectNs / EVENTS).toFixed(1)} ns/event, ${((st.bytes / m.subjectNs) * 1e3).toFixed(0)} MB/s, ${m.ratio.toFixed(2)}x the boundary walk`);
      }
    }
    const figures: Figure[] = [];
    for (const st of all) {
      const ns = summarize(perEvent.get(st.name) ?? []);
      const ratio = summarize(vs.get(st.name) ?? []);
      const mbs = summarize((perEvent.get(st.name) ?? []).map((x) => (st.bytes / (x * EVENTS)) * 1e3));
      const bytesNote = `${(st.bytes / 1024).toFixed(1)} KB per stream, ${st.chunks.length} chunks`;
      figures.push({ name: `sse.${st.name}.ns_per_event`, value: Number(ns.median.toPrecision(4)), unit: 'ns', better: 'lower', spread: Number(ns.spread.toPrecision(3)), note: `${st.note}; ${bytesNote}` });
      figures.push({ name: `sse.${st.name}.mb_per_s`, value: Math.round(mbs.median), unit: 'MB/s', better: 'higher', spread: Number(mbs.spread.toPrecision(3)), note: bytesNote });
      figures.push({ name: `sse.${st.name}.vs_indexof`, value: Number(ratio.median.toPrecision(4)), unit: 'x', better: 'lower', spread: Number(ratio.spread.toPrecision(3)), note: "scanner / bare indexOf('\\n\\n') walk, same batches" });
    }
    const gated = all.filter((st) => st.name === 'sglang' || st.name === 'openai');
    figures.push(
      ...calibratedFigures(
        gated.map((st) => ({ name: `sse.${st.name}`, note: `one ${EVENTS}-event ${st.name} stream`, subject: { op: () => scanStream(st.chunks) } })),
        { runs: ctx.runs, budgetMs, log: (m) => ctx.log(m) },
      ).filter((f) => f.name.endsWith('.calibrated')),
    );
    if (sink === -1) ctx.log('unreachable');
    return figures;
  },
};

export default scenario;
