/**
 * The process one scenario runs in (spawned by bench/run.ts with an IPC channel), so that one
 * scenario's heap, threads and leftover handles never disturb the next.
 *
 *   node dist/bench/lib/child.js describe <scenario.js>...   -> { kind: 'described', scenarios }
 *   node dist/bench/lib/child.js run <scenario.js> <ctx-json> -> result | skipped | failed
 *
 * The child exits as soon as its message is delivered, whatever handles the scenario left open; the
 * processes it started through bench/lib/processes.ts are killed on the way out.
 */
import { pathToFileURL } from 'node:url';
import { basename } from 'node:path';
import type { Figure, Scenario, BenchContext } from './scenario.js';
import type { ChildContext, ChildMessage, ScenarioInfo, SkippedPart } from './protocol.js';
import { installCleanupHandlers, stopAll } from './processes.js';

function isScenario(x: unknown): x is Scenario {
  if (x === null || typeof x !== 'object') return false;
  const s = x as Record<string, unknown>;
  return typeof s['name'] === 'string' && typeof s['description'] === 'string' && typeof s['run'] === 'function';
}

async function load(file: string): Promise<Scenario> {
  const mod = (await import(pathToFileURL(file).href)) as { default?: unknown };
  if (!isScenario(mod.default)) throw new Error(`${basename(file)} does not default-export a Scenario (name, description, run)`);
  return mod.default;
}

function send(message: ChildMessage): Promise<void> {
  return new Promise((resolve) => {
    if (process.send === undefined) {
      process.stdout.write(JSON.stringify(message) + '\n');
      resolve();
      return;
    }
    process.send(message, undefined, {}, () => resolve());
  });
}

async function describe(files: readonly string[]): Promise<void> {
  const scenarios: ScenarioInfo[] = [];
  for (const file of files) {
    try {
      const s = await load(file);
      scenarios.push({ file: basename(file), name: s.name, description: s.description, gate: s.gate === true, needs: [...(s.needs ?? [])] });
    } catch (err) {
      const name = basename(file).replace(/\.js$/, '');
      scenarios.push({ file: basename(file), name, description: '', gate: false, needs: [], error: (err as Error).stack ?? String(err) });
    }
  }
  await send({ kind: 'described', scenarios });
}

function isSkippedError(err: unknown): err is Error {
  return err instanceof Error && err.name === 'ScenarioSkipped';
}

async function runOne(file: string, ctxJson: string): Promise<number> {
  const given = JSON.parse(ctxJson) as ChildContext;
  const skipped: SkippedPart[] = [];
  let name = basename(file).replace(/\.js$/, '');
  const ctx: BenchContext = {
    quick: given.quick,
    durationSec: given.durationSec,
    runs: given.runs,
    log: (message) => process.stderr.write(`[${name}] ${message}\n`),
    skip: (what, reason) => {
      skipped.push({ what, reason });
      process.stderr.write(`[${name}] skipped ${what}: ${reason}\n`);
    },
  };
  let figures: Figure[] = [];
  try {
    const scenario = await load(file);
    name = scenario.name;
    figures = await scenario.run(ctx);
    await stopAll();
    await send({ kind: 'result', figures, skipped });
    return 0;
  } catch (err) {
    await stopAll();
    if (isSkippedError(err)) {
      await send({ kind: 'skipped', reason: err.message, skipped });
      return 0;
    }
    await send({ kind: 'failed', error: (err as Error).stack ?? String(err), figures, skipped });
    return 1;
  }
}

async function main(): Promise<number> {
  installCleanupHandlers();
  const [mode, ...rest] = process.argv.slice(2);
  if (mode === 'describe') {
    await describe(rest);
    return 0;
  }
  if (mode === 'run' && rest.length === 2) return runOne(rest[0] as string, rest[1] as string);
  process.stderr.write('usage: child.js describe <scenario.js>... | run <scenario.js> <context-json>\n');
  return 2;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench child: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
