/** Shared by the actor runtime tests: the echo fixture actor and small waits. */
import { fileURLToPath } from 'node:url';
import { Actor, type ActorTuning } from '../../src/actors/actor.js';
import type { EchoInit, EchoMessage, EchoReplies } from './fixtures/echo-actor.js';

const FIXTURE = fileURLToPath(new URL('./fixtures/echo-actor.js', import.meta.url));

export type EchoActor = Actor<EchoMessage, EchoReplies, EchoInit>;

export function echoActor(tuning: ActorTuning = {}, init: () => EchoInit = () => ({ tag: 'a' })): EchoActor {
  // execArgv: threads would otherwise inherit tap's --import loaders and start several times slower
  return new Actor<EchoMessage, EchoReplies, EchoInit>({ name: 'echo', filename: FIXTURE, init, execArgv: ['--enable-source-maps'], ...tuning });
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Poll until cond holds; the bound is generous because thread starts are slow on a loaded machine. */
export async function until(what: string, cond: () => boolean, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}
