/**
 * A small declarative option parser shared by every subcommand.
 *
 * Precedence: command line > environment (SWITCHYARD_<NAME>) > config file (--config, JSON) > default.
 * Flag names follow SGLang's router (kebab-case); list flags accept argparse-style `--worker-urls a b c`,
 * repeated flags and comma-separated values.
 */
import { readFileSync } from 'node:fs';

export type OptionType = 'string' | 'number' | 'integer' | 'boolean' | 'list';

export interface OptionSpec {
  readonly name: string;
  readonly type: OptionType;
  readonly help: string;
  readonly default?: string | number | boolean | readonly string[];
  /** Environment variable; defaults to SWITCHYARD_<UPPER_SNAKE_NAME>; false disables it. */
  readonly env?: string | false;
  readonly choices?: readonly string[];
  readonly min?: number;
  readonly max?: number;
  readonly group?: string;
  readonly alias?: readonly string[];
  /** Value placeholder in --help. */
  readonly metavar?: string;
}

type CamelCase<S extends string> = S extends `${infer H}-${infer T}` ? `${H}${Capitalize<CamelCase<T>>}` : S;
type ValueOf<S extends OptionSpec> = S['type'] extends 'boolean'
  ? boolean
  : S['type'] extends 'list'
    ? string[]
    : S['type'] extends 'number' | 'integer'
      ? number
      : string;

export type ParsedOptions<Specs extends readonly OptionSpec[]> = {
  [S in Specs[number] as CamelCase<S['name']>]: S extends { default: unknown } ? ValueOf<S> : ValueOf<S> | undefined;
};

export class OptionsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OptionsError';
  }
}

/** Thrown when --help was asked for; the CLI prints `text` and exits 0. */
export class HelpRequested extends Error {
  constructor(readonly text: string) {
    super('help requested');
    this.name = 'HelpRequested';
  }
}

export function camelCase(name: string): string {
  return name.replace(/-([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

export function envName(spec: OptionSpec): string | undefined {
  if (spec.env === false) return undefined;
  return spec.env ?? `SWITCHYARD_${spec.name.replace(/-/g, '_').toUpperCase()}`;
}

export interface ParseContext {
  /** Defaults to process.env. */
  env?: NodeJS.ProcessEnv;
  /** Command name and summary for --help. */
  command: string;
  summary: string;
  /** Allow positional arguments (returned in `_`). */
  positionals?: boolean;
}

const CONFIG_SPEC: OptionSpec = {
  name: 'config',
  type: 'string',
  help: 'JSON config file; keys are flag names (kebab, snake or camel case)',
  metavar: 'FILE',
};

export function parseOptions<const Specs extends readonly OptionSpec[]>(
  specs: Specs,
  argv: readonly string[],
  ctx: ParseContext,
): ParsedOptions<Specs> & { _: string[]; config: string | undefined } {
  const all: OptionSpec[] = [...specs, CONFIG_SPEC];
  const byFlag = new Map<string, OptionSpec>();
  for (const spec of all) {
    byFlag.set(spec.name, spec);
    for (const a of spec.alias ?? []) byFlag.set(a, spec);
  }
  const fromCli = new Map<string, unknown>();
  const positionals: string[] = [];

  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--help' || arg === '-h') throw new HelpRequested(formatHelp(specs, ctx));
    if (arg === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('--')) {
      if (ctx.positionals) {
        positionals.push(arg);
        continue;
      }
      throw new OptionsError(`unexpected argument '${arg}' (flags start with --)`);
    }
    let name = arg.slice(2);
    let inline: string | undefined;
    const eq = name.indexOf('=');
    if (eq >= 0) {
      inline = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    name = name.replace(/_/g, '-');
    let spec = byFlag.get(name);
    let negated = false;
    if (spec === undefined && name.startsWith('no-')) {
      const base = byFlag.get(name.slice(3));
      if (base?.type === 'boolean') {
        spec = base;
        negated = true;
      }
    }
    if (spec === undefined) throw new OptionsError(unknownFlagMessage(name, all));
    const key = spec.name;
    if (spec.type === 'boolean') {
      let value = !negated;
      if (inline !== undefined) value = parseBool(inline, spec) !== negated;
      else if (!negated && i + 1 < argv.length && /^(true|false)$/i.test(argv[i + 1] as string)) {
        value = parseBool(argv[++i] as string, spec);
      }
      fromCli.set(key, value);
      continue;
    }
    if (spec.type === 'list') {
      const values: string[] = (fromCli.get(key) as string[] | undefined) ?? [];
      if (inline !== undefined) values.push(...splitList(inline));
      else {
        let consumed = 0;
        while (i + 1 < argv.length && !(argv[i + 1] as string).startsWith('--')) {
          values.push(...splitList(argv[++i] as string));
          consumed++;
        }
        if (consumed === 0) throw new OptionsError(`--${key} needs at least one value`);
      }
      fromCli.set(key, values);
      continue;
    }
    let raw = inline;
    if (raw === undefined) {
      if (i + 1 >= argv.length) throw new OptionsError(`--${key} needs a value`);
      raw = argv[++i] as string;
    }
    fromCli.set(key, coerce(spec, raw, `--${key}`));
  }

  const env = ctx.env ?? process.env;
  const configPath = (fromCli.get('config') as string | undefined) ?? env['SWITCHYARD_CONFIG'];
  const fileValues = configPath === undefined ? new Map<string, unknown>() : readConfigFile(configPath, all);

  const out: Record<string, unknown> = { _: positionals, config: configPath };
  for (const spec of specs) {
    let value: unknown;
    if (fromCli.has(spec.name)) value = fromCli.get(spec.name);
    else {
      const envKey = envName(spec);
      const envValue = envKey === undefined ? undefined : env[envKey];
      if (envValue !== undefined && envValue !== '') value = coerce(spec, envValue, `$${envKey}`);
      else if (fileValues.has(spec.name)) value = fileValues.get(spec.name);
      else value = spec.default === undefined ? undefined : Array.isArray(spec.default) ? [...spec.default] : spec.default;
    }
    out[camelCase(spec.name)] = value;
  }
  return out as ParsedOptions<Specs> & { _: string[]; config: string | undefined };
}

function parseBool(raw: string, spec: OptionSpec): boolean {
  const v = raw.trim().toLowerCase();
  if (v === 'true' || v === '1' || v === 'yes' || v === 'on') return true;
  if (v === 'false' || v === '0' || v === 'no' || v === 'off') return false;
  throw new OptionsError(`--${spec.name} expects true or false, got '${raw}'`);
}

function splitList(raw: string): string[] {
  return raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);
}

function coerce(spec: OptionSpec, raw: unknown, where: string): unknown {
  switch (spec.type) {
    case 'boolean':
      if (typeof raw === 'boolean') return raw;
      return parseBool(String(raw), spec);
    case 'list':
      if (Array.isArray(raw)) return raw.map(String);
      return splitList(String(raw));
    case 'number':
    case 'integer': {
      const n = typeof raw === 'number' ? raw : Number(String(raw).trim());
      if (String(raw).trim() === '' || !Number.isFinite(n)) throw new OptionsError(`${where} expects a number, got '${String(raw)}'`);
      if (spec.type === 'integer' && !Number.isInteger(n)) throw new OptionsError(`${where} expects an integer, got '${String(raw)}'`);
      if (spec.min !== undefined && n < spec.min) throw new OptionsError(`${where} must be >= ${spec.min}, got ${n}`);
      if (spec.max !== undefined && n > spec.max) throw new OptionsError(`${where} must be <= ${spec.max}, got ${n}`);
      return n;
    }
    case 'string': {
      const s = String(raw);
      if (spec.choices !== undefined && !spec.choices.includes(s)) {
        throw new OptionsError(`${where} must be one of ${spec.choices.join(', ')}; got '${s}'`);
      }
      return s;
    }
  }
}

function readConfigFile(path: string, specs: readonly OptionSpec[]): Map<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new OptionsError(`cannot read config file ${path}: ${(err as Error).message}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new OptionsError(`config file ${path} must hold a JSON object`);
  }
  const byKey = new Map<string, OptionSpec>();
  for (const s of specs) {
    byKey.set(s.name, s);
    byKey.set(s.name.replace(/-/g, '_'), s);
    byKey.set(camelCase(s.name), s);
  }
  const out = new Map<string, unknown>();
  for (const [k, v] of Object.entries(parsed as Record<string, unknown>)) {
    const spec = byKey.get(k);
    if (spec === undefined) throw new OptionsError(`config file ${path}: unknown key '${k}'`);
    out.set(spec.name, coerce(spec, v, `${path}:${k}`));
  }
  return out;
}

function unknownFlagMessage(name: string, specs: readonly OptionSpec[]): string {
  let best: string | undefined;
  let bestDist = 4;
  for (const s of specs) {
    const d = editDistance(name, s.name);
    if (d < bestDist) {
      bestDist = d;
      best = s.name;
    }
  }
  return `unknown flag --${name}` + (best === undefined ? '' : ` (did you mean --${best}?)`);
}

function editDistance(a: string, b: string): number {
  const prev = new Array<number>(b.length + 1);
  for (let j = 0; j <= b.length; j++) prev[j] = j;
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0] as number;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = prev[j] as number;
      prev[j] = Math.min((prev[j] as number) + 1, (prev[j - 1] as number) + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = tmp;
    }
  }
  return prev[b.length] as number;
}

export function formatHelp(specs: readonly OptionSpec[], ctx: Pick<ParseContext, 'command' | 'summary'>): string {
  const lines: string[] = [`Usage: switchyard ${ctx.command} [options]`, '', ctx.summary, ''];
  const groups = new Map<string, OptionSpec[]>();
  for (const s of [...specs, CONFIG_SPEC]) {
    const g = s.group ?? 'Options';
    if (!groups.has(g)) groups.set(g, []);
    groups.get(g)!.push(s);
  }
  for (const [group, list] of groups) {
    lines.push(`${group}:`);
    for (const s of list) {
      const meta = s.type === 'boolean' ? '' : ` ${s.metavar ?? (s.type === 'list' ? 'VALUE...' : s.type === 'string' ? 'STR' : 'N')}`;
      const flag = `  --${s.name}${meta}`;
      const extras: string[] = [];
      if (s.choices) extras.push(`one of: ${s.choices.join(', ')}`);
      if (s.default !== undefined && !(Array.isArray(s.default) && s.default.length === 0)) {
        extras.push(`default: ${Array.isArray(s.default) ? s.default.join(',') : String(s.default)}`);
      }
      const env = envName(s);
      if (env !== undefined && s !== CONFIG_SPEC) extras.push(`env: ${env}`);
      else if (s === CONFIG_SPEC) extras.push('env: SWITCHYARD_CONFIG');
      const desc = s.help + (extras.length ? ` [${extras.join('; ')}]` : '');
      lines.push(flag.length < 38 ? `${flag.padEnd(38)}${desc}` : `${flag}\n${' '.repeat(38)}${desc}`);
    }
    lines.push('');
  }
  lines.push('  --help                              Show this help');
  return lines.join('\n');
}
