import t from 'tap';
import { ERROR_REGISTRY, SwitchyardError, toSwitchyardError, errorBody, statusOf } from '../../src/errors.js';

t.test('every code maps to a 4xx/5xx status and a type', async (t) => {
  for (const [code, entry] of Object.entries(ERROR_REGISTRY)) {
    t.ok(entry.status >= 400 && entry.status < 600, `${code} status`);
    t.ok(entry.type.length > 0, `${code} type`);
  }
});

t.test('error body shape', async (t) => {
  const err = new SwitchyardError('payload_too_large', 'too big', { details: { limit: 10 } });
  t.equal(err.status, 413);
  t.same(err.toJSON(), { error: { message: 'too big', type: 'invalid_request_error', code: 'payload_too_large', details: { limit: 10 } } });
  t.same(JSON.parse(errorBody('not_found', 'nope')), { error: { message: 'nope', type: 'not_found_error', code: 'not_found' } });
  t.equal(statusOf('queue_full'), 429);
  t.equal(new SwitchyardError('upstream_error', 'x', { status: 500 }).status, 500, 'status override');
});

t.test('unknown throwables become internal_error', async (t) => {
  t.equal(toSwitchyardError(new Error('boom')).code, 'internal_error');
  t.equal(toSwitchyardError('str').message, 'str');
  const e = new SwitchyardError('not_found', 'x');
  t.equal(toSwitchyardError(e), e);
});
