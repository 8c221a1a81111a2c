import t from 'tap';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { readFileSync, readdirSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { lowerHelperThreads, useParallelScavenge } from '../../src/load/helper-threads.js';

t.test('the first setting of a process wins (a V8 flag is process-wide)', async (t) => {
  t.equal(useParallelScavenge(true), true);
  t.equal(useParallelScavenge(false), true, 'a later run in the same process reports what is in force');
});

t.test('without --parallel-scavenge, V8 scavenges on the main thread alone', async (t) => {
  // --trace-gc-nvp prints each scavenge's phases; background.scavenge.parallel is the helper threads' share.
  const mod = fileURLToPath(new URL('../../src/load/helper-threads.js', import.meta.url));
  const script = `const { useParallelScavenge } = await import(${JSON.stringify(mod)});
useParallelScavenge(process.argv[1] === 'parallel');
console.log('-- set --');
let keep = [];
for (let i = 0; i < 3e5; i++) { keep.push({ i, s: 'x' + i }); if (keep.length > 5000) keep = []; }`;
  const helpers = (mode: string): number[] => {
    const env = { ...process.env };
    delete env['NODE_OPTIONS']; // the test runner's own hooks
    const r = spawnSync(process.execPath, ['--trace-gc-nvp', '--input-type=module', '-e', script, mode], { encoding: 'utf8', env });
    t.equal(r.status, 0, r.stderr);
    // Only the collections after the setting (start-up may collect before it).
    const after = r.stdout.slice(r.stdout.indexOf('-- set --'));
    return [...after.matchAll(/gc=s .*?background\.scavenge\.parallel=([0-9.]+)/g)].map((m) => Number(m[1]));
  };
  const serial = helpers('serial');
  t.ok(serial.length > 0, 'scavenges happened');
  t.ok(serial.every((x) => x === 0), `no helper-thread scavenging: ${serial.join(' ')}`);
  // The check can fail: with helpers allowed, some scavenges give them work (on 2 cores as on more).
  const parallel = helpers('parallel');
  t.ok(parallel.some((x) => x > 0), `helpers scavenge when allowed: ${parallel.join(' ')}`);
});

/** A thread's nice value (Linux /proc: field 19 of stat). */
function niceOf(tid: string): number {
  const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
}

t.test('helper threads get the nice value; the main thread keeps its own', { skip: process.platform !== 'linux' && 'Linux /proc' }, async (t) => {
  // A worker thread makes sure there is another thread whatever V8 has started by now.
  const w = new Worker('setInterval(() => {}, 1000)', { eval: true });
  t.teardown(() => w.terminate());
  await new Promise((r) => w.once('online', r));
  const mainBefore = niceOf(String(process.pid));
  const others = readdirSync('/proc/self/task').filter((x) => x !== String(process.pid));
  t.ok(others.length > 0);
  const changed = lowerHelperThreads(Math.max(mainBefore + 1, 5));
  t.ok(changed >= others.length, 'every other thread');
  t.ok(others.every((x) => niceOf(x) === Math.max(mainBefore + 1, 5)), 'at the nice value asked');
  t.equal(niceOf(String(process.pid)), mainBefore, 'not the main thread');
});
