/**
 * Machine-independent timing for the regression gate: a subject's cost expressed in units of a fixed
 * reference computation measured in the same process, in interleaved batches a millisecond apart.
 *
 * Why: on a shared 2-core machine the absolute ns/op of anything moves by tens of percent from one minute
 * to the next (neighbours, CPU frequency, another engineer's test suite), and a faster or slower machine
 * moves it again. Both effects hit the reference and the subject alike when they are measured side by
 * side, so the ratio (subject ns/op / reference ns/op) keeps what belongs to the code under test.
 *
 * How: batches of about BATCH_TARGET_MS each, alternating reference, subject, subject, reference, ...
 * (ABBA, so a drift within a pair cancels); each side keeps the low quartile of its batch times (a batch
 * interrupted by the scheduler only ever gets slower, so the low quartile is the uninterrupted cost and
 * is far steadier than the mean on a loaded machine); the ratio is the quotient of the two. The
 * reference is a mix of the kinds of work hot paths do (see referenceOp): an arithmetic-only reference
 * was tried first and slowed 2x under a busy hyperthread sibling while the subjects slowed 1.1x.
 *
 * SWITCHYARD_BENCH_SLOWDOWN=F (F >= 1) makes every calibrated subject F times slower: after each subject
 * batch, inside the timed region, the measuring code spins on the reference computation for (F - 1) times
 * the batch's own time. It exists so the gate's own test can prove the gate fails on a real slowdown
 * (test/gate/); nothing else should set it.
 */

import { summarize, type Figure } from './scenario.js';

/** Environment variable read by measureCalibrated (see the module comment). */
export const SLOWDOWN_ENV = 'SWITCHYARD_BENCH_SLOWDOWN';

/** The slowdown factor from the environment: 1 when unset; a bad value is an error, not silently 1. */
export function slowdownFactor(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env[SLOWDOWN_ENV];
  if (raw === undefined || raw.trim() === '') return 1;
  const f = Number(raw);
  if (!Number.isFinite(f) || f < 1 || f > 1000) throw new Error(`${SLOWDOWN_ENV} must be a number from 1 to 1000, got '${raw}'`);
  return f;
}

interface RefEntry {
  readonly id: number;
  load: number;
  readonly name: string;
}
const REF_ENTRIES: RefEntry[] = Array.from({ length: 8 }, (_, i) => ({ id: i, load: i * 3, name: `worker-${i}` }));
const REF_KEYS = REF_ENTRIES.map((e) => e.name);
const REF_MAP = new Map<string, RefEntry>(REF_ENTRIES.map((e) => [e.name, e]));
const REF_TEXT = 'Switchyard calibration text';
const REF_COUNTS = new Int32Array(64);
let refSeq = 0;
/** Observed by callers so the optimiser cannot drop the work. */
export let referenceSink = 0;

/**
 * One unit of reference work, the mix the router's hot paths are made of: a scan of 8 small objects for
 * the least loaded (property loads, compares, a write), a Map lookup by string, FNV-1a over 27 characters
 * (string reads, integer multiplies), a typed-array read-modify-write and a small object that escapes.
 * A mix rather than one kind of work, so that what slows one kind (a busy hyperthread sibling slows
 * arithmetic, a cache-hungry neighbour slows memory) moves the reference as it moves the subjects.
 * Fixed: changing it invalidates every calibrated baseline.
 */
export function referenceOp(): number {
  const seq = refSeq++;
  let best = 0;
  let bestLoad = Infinity;
  for (let i = 0; i < REF_ENTRIES.length; i++) {
    const e = REF_ENTRIES[i] as RefEntry;
    if (e.load < bestLoad) {
      bestLoad = e.load;
      best = i;
    }
  }
  const chosen = REF_ENTRIES[best] as RefEntry;
  chosen.load += 5;
  if (chosen.load > 64) for (const e of REF_ENTRIES) e.load = e.id * 3;
  const hit = REF_MAP.get(REF_KEYS[seq & 7] as string);
  let h = 0x811c9dc5 ^ seq;
  for (let i = 0; i < REF_TEXT.length; i++) h = Math.imul(h ^ REF_TEXT.charCodeAt(i), 16777619);
  const slot = h & 63;
  REF_COUNTS[slot] = (REF_COUNTS[slot] as number) + 1;
  const box = { h, id: hit === undefined ? -1 : hit.id, best };
  return box.h ^ box.id ^ box.best;
}

/** The operation measured: `op(i)` for i = 0..batch-1; `prepare(batch)` runs untimed before each batch. */
export interface Subject {
  readonly op: (i: number) => void;
  readonly prepare?: (batch: number) => void;
}

export interface CalibratedMeasurement {
  /** Subject ns/op / reference ns/op (low quartiles of interleaved batches). */
  readonly ratio: number;
  readonly subjectNs: number;
  readonly referenceNs: number;
  /** Batches measured per side. */
  readonly batches: number;
}

export const BATCH_TARGET_MS = 1;
/** Batches each side gets at least, whatever the budget (a starved process still gets a fair sample). */
const MIN_BATCHES = 40;
const MAX_BATCHES = 20_000;

/**
 * The clock: wall time (hrtime). Process CPU time was tried and rejected: it includes V8's background
 * threads (concurrent GC, compilers), whose time lands on a batch in jumps of milliseconds. A batch the
 * scheduler interrupted is only ever slower, which the low-quartile estimate discards.
 */
function clockNs(): number {
  return Number(process.hrtime.bigint());
}

type TimedLoop = (op: (i: number) => void, n: number) => void;

/**
 * A timing loop of its own for each subject: a loop shared by every subject sees many different `op`
 * functions, its call site goes polymorphic and later subjects are measured through a slower dispatch
 * than the first. A fresh Function has fresh type feedback, so each subject is inlined as in production.
 */
function freshLoop(): TimedLoop {
  return new Function('op', 'n', 'for (let i = 0; i < n; i++) op(i);') as TimedLoop;
}

/**
 * Ops per batch so that one batch takes about BATCH_TARGET_MS. Each candidate size is timed three times
 * and the fastest counts: a single timing that the scheduler interrupted would otherwise shrink the batch
 * to a handful of ops, and the timing overhead would then be measured instead of the subject.
 */
function batchSize(loop: TimedLoop, subject: Subject): number {
  let batch = 1;
  for (;;) {
    let fastest = Infinity;
    for (let k = 0; k < 3; k++) {
      subject.prepare?.(batch);
      const t0 = clockNs();
      loop(subject.op, batch);
      fastest = Math.min(fastest, clockNs() - t0);
    }
    const ms = fastest / 1e6;
    if (ms >= BATCH_TARGET_MS / 2 || batch >= 1 << 24) return Math.max(1, Math.round((batch * BATCH_TARGET_MS) / Math.max(ms, 1e-3)));
    batch *= 2;
  }
}

/** The reference as a Subject. */
export const referenceSubject: Subject = {
  op: () => {
    referenceSink ^= referenceOp();
  },
};

/** Spin on the reference computation until the CPU clock reaches `untilNs` (the injected slowdown). */
function spinUntil(untilNs: number): void {
  let s = 0;
  while (clockNs() < untilNs) for (let k = 0; k < 16; k++) s ^= referenceOp();
  referenceSink ^= s;
}

/** The value below which a quarter of the samples lie (linear interpolation). */
export function lowQuartile(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const pos = (sorted.length - 1) * 0.25;
  const lo = Math.floor(pos);
  const a = sorted[lo] as number;
  const b = sorted[Math.ceil(pos)] as number;
  return a + (b - a) * (pos - lo);
}

/**
 * Measure `subject` against the reference for about `budgetMs` of wall time (and at least MIN_BATCHES
 * batches a side), interleaved ABBA. `slowdown` defaults to SWITCHYARD_BENCH_SLOWDOWN.
 */
export function measureCalibrated(subject: Subject, budgetMs: number, slowdown = slowdownFactor()): CalibratedMeasurement {
  return measureAgainst(subject, referenceSubject, budgetMs, slowdown);
}

/**
 * The same interleaved measurement with any reference (e.g. the same bookkeeping on a plain array, to
 * price shared memory): each side's cost is the low quartile of its batches' ns/op. The slowdown, when
 * set, applies to the subject only.
 */
export function measureAgainst(subject: Subject, reference: Subject, budgetMs: number, slowdown = slowdownFactor()): CalibratedMeasurement {
  const subjectLoop = freshLoop();
  const referenceLoop = freshLoop();
  // Warm both sides up (JIT tiers, inline caches) before sizing the batches.
  const warmUntil = performance.now() + Math.max(20, Math.min(100, budgetMs / 10));
  while (performance.now() < warmUntil) {
    subject.prepare?.(64);
    subjectLoop(subject.op, 64);
    reference.prepare?.(64);
    referenceLoop(reference.op, 64);
  }
  const subjectBatch = batchSize(subjectLoop, subject);
  const referenceBatch = batchSize(referenceLoop, reference);
  const subjectNs: number[] = [];
  const referenceNs: number[] = [];

  const timeReference = (): void => {
    reference.prepare?.(referenceBatch);
    const t0 = clockNs();
    referenceLoop(reference.op, referenceBatch);
    referenceNs.push((clockNs() - t0) / referenceBatch);
  };
  const timeSubject = (): void => {
    subject.prepare?.(subjectBatch);
    const t0 = clockNs();
    subjectLoop(subject.op, subjectBatch);
    if (slowdown > 1) spinUntil(t0 + (clockNs() - t0) * slowdown);
    subjectNs.push((clockNs() - t0) / subjectBatch);
  };

  const started = performance.now();
  let pair = 0;
  while (subjectNs.length < MIN_BATCHES || (performance.now() - started < budgetMs && subjectNs.length < MAX_BATCHES)) {
    if ((pair++ & 1) === 0) {
      timeReference();
      timeSubject();
    } else {
      timeSubject();
      timeReference();
    }
  }
  const s = lowQuartile(subjectNs);
  const r = lowQuartile(referenceNs);
  return { ratio: s / r, subjectNs: s, referenceNs: r, batches: subjectNs.length };
}

/** One calibrated figure: `<name>.calibrated` (reference units) and `<name>.ns` (the absolute behind it). */
export interface CalibratedCase {
  readonly name: string;
  readonly note: string;
  readonly subject: Subject;
}

/**
 * Measure every case `runs` times, round by round (case A, B, C, A, B, C, ...: a slow minute lands on
 * every case, not on whichever ran then), and report for each the median over the rounds, with the
 * spread ((max - min) / 2 / median):
 *   <name>.calibrated  subject ns/op / reference ns/op   unit "ref", better lower (what the gate keeps)
 *   <name>.ns          subject ns/op                     absolute, for reading; not for gating
 */
export function calibratedFigures(cases: readonly CalibratedCase[], options: { runs: number; budgetMs: number; log?: (m: string) => void }): Figure[] {
  const ratios: number[][] = cases.map(() => []);
  const ns: number[][] = cases.map(() => []);
  for (let r = 0; r < options.runs; r++) {
    cases.forEach((c, i) => {
      const m = measureCalibrated(c.subject, options.budgetMs);
      (ratios[i] as number[]).push(m.ratio);
      (ns[i] as number[]).push(m.subjectNs);
      options.log?.(`round ${r + 1}/${options.runs} ${c.name}: ${m.subjectNs.toFixed(1)} ns/op = ${m.ratio.toFixed(3)} ref (reference ${m.referenceNs.toFixed(1)} ns, ${m.batches} batches)`);
    });
  }
  const out: Figure[] = [];
  cases.forEach((c, i) => {
    const ratio = summarize(ratios[i] as number[]);
    const abs = summarize(ns[i] as number[]);
    out.push({ name: `${c.name}.calibrated`, value: round4(ratio.median), unit: 'ref', better: 'lower', spread: round4(ratio.spread), note: `${c.note}; ns/op / reference ns/op, same process` });
    out.push({ name: `${c.name}.ns`, value: round4(abs.median), unit: 'ns', better: 'lower', spread: round4(abs.spread), note: c.note });
  });
  return out;
}

function round4(x: number): number {
  return Number.isFinite(x) ? Number(x.toPrecision(4)) : x;
}
