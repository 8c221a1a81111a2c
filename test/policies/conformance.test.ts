/** The conformance suite for every registered policy, inline and through the actor host. */
import t from 'tap';
import { fileURLToPath } from 'node:url';
import { createPolicyHost } from '../../src/policies/host.js';
import { policyNames, registerPolicyModule } from '../../src/policies/registry.js';
import { runConformance, TEST_ACTOR } from './conformance.js';
import { TEST_PLUGIN_NAME } from './fixtures/test-plugin.js';

// A plugin, loaded by module path like a user's would be, must pass the same suite.
await registerPolicyModule(TEST_PLUGIN_NAME, fileURLToPath(new URL('./fixtures/test-plugin.js', import.meta.url)));

for (const name of policyNames()) {
  t.test(`${name} inline`, (t) =>
    runConformance(t, name, (table, seed) => createPolicyHost(name, { seed }, table, undefined, { placement: 'inline' })),
  );
  t.test(`${name} in an actor`, (t) =>
    runConformance(t, name, (table, seed) => createPolicyHost(name, { seed }, table, undefined, { placement: 'actor', actor: TEST_ACTOR })),
  );
}
