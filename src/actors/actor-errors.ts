/** The actor runtime's errors (re-exported by actor.ts). */
import { SwitchyardError, type ErrorCode } from '../errors.js';

/** Base of the runtime's errors; SwitchyardErrors so they map to a status if they ever reach a client. */
export class ActorError extends SwitchyardError {
  readonly actor: string;
  constructor(code: ErrorCode, actor: string, message: string, cause?: unknown) {
    super(code, message, cause === undefined ? undefined : { cause });
    this.name = 'ActorError';
    this.actor = actor;
  }
}

/** The thread died (or failed to start) while the call was in flight. */
export class ActorCrashedError extends ActorError {
  constructor(actor: string, message: string, cause?: unknown) {
    super('service_unavailable', actor, message, cause);
    this.name = 'ActorCrashedError';
  }
}

export class ActorClosedError extends ActorError {
  constructor(actor: string) {
    super('shutting_down', actor, `actor ${actor} is closed`);
    this.name = 'ActorClosedError';
  }
}

export class ActorOverloadedError extends ActorError {
  constructor(actor: string, limit: number) {
    super('service_unavailable', actor, `actor ${actor} has ${limit} calls queued; refusing more`);
    this.name = 'ActorOverloadedError';
  }
}
