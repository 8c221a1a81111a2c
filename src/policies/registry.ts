/**
 * Policy registry: name -> factory. Built-ins use SGLang's names; plugins register at runtime.
 *
 * A policy that runs in an actor thread is rebuilt there from a PolicySpec ({ name, options, module }):
 * built-ins by name (this module is imported by the thread too), plugins by importing their module, so a
 * plugin that should run in an actor must be registered with its module path (registerPolicyModule).
 */
import { pathToFileURL } from 'node:url';
import { isAbsolute } from 'node:path';
import { SwitchyardError } from '../errors.js';
import type { PolicySpec } from '../actors/protocol.js';
import type { Policy, PolicyFactory, PolicyFactoryOptions } from './types.js';
import { createRandomPolicy } from './random.js';
import { createRoundRobinPolicy } from './round-robin.js';
import { createPowerOfTwoPolicy } from './power-of-two.js';
import { createCacheAwarePolicy } from './cache-aware.js';
import { createShortestQueuePolicy } from './shortest-queue.js';
import { createMarginalUtilityPolicy } from './marginal-utility.js';
import { createPluginPolicy, type RouteFunction } from './plugin.js';

/** Built-in policies. Adding one is one line here. */
const BUILTIN: ReadonlyMap<string, PolicyFactory> = new Map<string, PolicyFactory>([
  ['random', createRandomPolicy],
  ['round_robin', createRoundRobinPolicy],
  ['power_of_two', createPowerOfTwoPolicy],
  ['cache_aware', createCacheAwarePolicy],
  ['shortest_queue', createShortestQueuePolicy],
  ['marginal_utility', createMarginalUtilityPolicy],
]);

/** Every built-in name the router accepts once implemented: SGLang's four, then ours. */
export const KNOWN_POLICY_NAMES = ['random', 'round_robin', 'power_of_two', 'cache_aware', 'shortest_queue', 'marginal_utility'] as const;

interface PluginEntry {
  readonly factory: PolicyFactory;
  readonly module: string | undefined;
}

const plugins = new Map<string, PluginEntry>();

const NAME_RE = /^[a-z][a-z0-9_]{0,63}$/;

/** Names that can be constructed now, built-ins first. */
export function policyNames(): string[] {
  return [...BUILTIN.keys(), ...plugins.keys()];
}

export function isBuiltinPolicy(name: string): boolean {
  return BUILTIN.has(name);
}

export function isPolicyName(name: string): boolean {
  return BUILTIN.has(name) || plugins.has(name);
}

/**
 * Register a plugin policy. `module` (absolute path or file: URL of a module exporting the factory as
 * default or `createPolicy`) lets actor threads build it too; without it the policy can only run inline.
 */
export function registerPolicy(name: string, factory: PolicyFactory, options: { module?: string | undefined } = {}): void {
  if (!NAME_RE.test(name)) {
    throw new SwitchyardError('invalid_request', `invalid policy name "${name}": use lowercase letters, digits and _ (start with a letter)`);
  }
  if (BUILTIN.has(name) || plugins.has(name)) {
    throw new SwitchyardError('invalid_request', `policy "${name}" is already registered`);
  }
  plugins.set(name, { factory, module: options.module === undefined ? undefined : moduleUrl(options.module) });
}

/** Import a plugin module and register its factory under `name`, with the module for actor threads. */
export async function registerPolicyModule(name: string, module: string): Promise<void> {
  const url = moduleUrl(module);
  registerPolicy(name, await importFactory(url, name), { module: url });
}

/**
 * `--policy-module FILE`: import a plugin module and register it under its own name (the module's `name`
 * export, else the name of the policy its factory builds). Returns the name. Registering the same module
 * again returns the name without registering twice.
 */
export async function loadPolicyModule(module: string): Promise<string> {
  const url = moduleUrl(module);
  const mod = await importModule(url, module);
  let name: string;
  if (typeof mod.name === 'string') name = mod.name;
  else {
    const factory = factoryOf(mod, url, undefined);
    let probe: Policy;
    try {
      probe = factory({});
    } catch (err) {
      throw new SwitchyardError('invalid_request', `policy module ${url}: its factory failed without options: ${(err as Error).message}`, { cause: err });
    }
    name = probe.name;
    await probe.close?.();
  }
  const existing = plugins.get(name);
  if (existing !== undefined && existing.module === url) return name;
  registerPolicy(name, factoryOf(mod, url, name), { module: url });
  return name;
}

/** Remove a plugin (tests). Built-ins cannot be removed. */
export function unregisterPolicy(name: string): boolean {
  return plugins.delete(name);
}

/** Build a policy on this thread. Unknown names fail with the list of valid ones. */
export function createPolicy(name: string, options: PolicyFactoryOptions = {}): Policy {
  const factory = BUILTIN.get(name) ?? plugins.get(name)?.factory;
  if (factory === undefined) throw unknownPolicy(name);
  const policy = factory(options);
  if (policy.name !== name) {
    throw new SwitchyardError('internal_error', `policy factory registered as "${name}" built a policy named "${policy.name}"`);
  }
  return policy;
}

/** What an actor thread needs to rebuild the policy. */
export function policySpec(name: string, options: PolicyFactoryOptions = {}): PolicySpec {
  if (BUILTIN.has(name)) return { name, options };
  const plugin = plugins.get(name);
  if (plugin === undefined) throw unknownPolicy(name);
  return { name, options, module: plugin.module };
}

/** Build a policy from a spec (in an actor thread): built-in by name, plugin by importing its module. */
export async function createPolicyFromSpec(spec: PolicySpec): Promise<Policy> {
  if (BUILTIN.has(spec.name)) return createPolicy(spec.name, spec.options);
  if (spec.module !== undefined) {
    const factory = await importFactory(spec.module, spec.name);
    const policy = factory(spec.options);
    if (policy.name !== spec.name) {
      throw new SwitchyardError('internal_error', `plugin ${spec.module} built a policy named "${policy.name}", expected "${spec.name}"`);
    }
    return policy;
  }
  if (plugins.has(spec.name)) return createPolicy(spec.name, spec.options);
  if ((KNOWN_POLICY_NAMES as readonly string[]).includes(spec.name)) throw unknownPolicy(spec.name);
  throw new SwitchyardError(
    'invalid_request',
    `policy "${spec.name}" is not built in and no module was given; a plugin that runs in an actor thread must be registered with registerPolicyModule`,
  );
}

function unknownPolicy(name: string): SwitchyardError {
  const valid = policyNames();
  const pending = KNOWN_POLICY_NAMES.filter((n) => !isPolicyName(n));
  const later = pending.length > 0 ? ` (not available yet: ${pending.join(', ')})` : '';
  return new SwitchyardError('invalid_request', `unknown policy "${name}"; valid policies: ${valid.join(', ')}${later}`, {
    details: { policy: name, valid },
  });
}

function moduleUrl(module: string): string {
  if (module.startsWith('file:')) return module;
  if (isAbsolute(module)) return pathToFileURL(module).href;
  throw new SwitchyardError('invalid_request', `policy module must be an absolute path or a file: URL, got "${module}"`);
}

interface PolicyModule {
  readonly default?: unknown;
  readonly createPolicy?: unknown;
  readonly route?: unknown;
  readonly name?: unknown;
}

async function importModule(url: string, name: string): Promise<PolicyModule> {
  try {
    return (await import(url)) as PolicyModule;
  } catch (err) {
    throw new SwitchyardError('invalid_request', `cannot load policy module for "${name}" from ${url}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * The factory a module provides: its default export or `createPolicy` (a PolicyFactory), or, for the
 * simple form, a `route(request, workers, context)` function wrapped by createPluginPolicy.
 */
function factoryOf(mod: PolicyModule, url: string, name: string | undefined): PolicyFactory {
  if (typeof mod.default === 'function') return mod.default as PolicyFactory;
  if (typeof mod.createPolicy === 'function') return mod.createPolicy as PolicyFactory;
  if (typeof mod.route === 'function') {
    const routeName = name ?? (typeof mod.name === 'string' ? mod.name : undefined);
    if (routeName === undefined) throw new SwitchyardError('invalid_request', `policy module ${url} exports route() but no name`);
    const route = mod.route as RouteFunction;
    return (options) => createPluginPolicy(routeName, route, options);
  }
  throw new SwitchyardError('invalid_request', `policy module ${url} exports no factory (default export or createPolicy) and no route function`);
}

async function importFactory(url: string, name: string): Promise<PolicyFactory> {
  return factoryOf(await importModule(url, name), url, name);
}
