/** The conformance suite for every registered policy (plugins included), decided inline. */
import t from 'tap';
import { runConformanceForAll } from './conformance.js';

await runConformanceForAll(t, 'inline', { placement: 'inline' });
