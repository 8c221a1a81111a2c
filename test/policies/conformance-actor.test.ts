/** The conformance suite for every registered policy (plugins included), through one policy actor. */
import t from 'tap';
import { runConformanceForAll, TEST_ACTOR } from './conformance.js';

// Hundreds of actor threads start and stop here; on a busy shared machine that outlasts tap's default.
t.setTimeout(900_000);
await runConformanceForAll(t, 'in an actor', { placement: 'actor', actor: TEST_ACTOR });
