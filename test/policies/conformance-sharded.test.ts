/** The conformance suite for every registered policy (plugins included), sharded over three policy actors. */
import t from 'tap';
import { runConformanceForAll, TEST_ACTOR } from './conformance.js';

// Hundreds of actor threads start and stop here; on a busy shared machine that outlasts tap's default.
t.setTimeout(900_000);
await runConformanceForAll(t, 'sharded over 3 actors', { placement: 'actor', shards: 3, actor: TEST_ACTOR });
