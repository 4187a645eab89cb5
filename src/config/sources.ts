/**
 * Gathers settings from their sources, in precedence order flags > TRESOR_* environment > config
 * file > the schema's defaults, and validates each source against the one schema. Every problem
 * is collected (never the first only), each naming where the bad value came from and its path in
 * the config file; values are never repeated in problems, since some are secrets.
 *
 * Relative paths from the config file are resolved against the file's folder, those from flags
 * and the environment against the working directory.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { TSchema } from 'typebox';
import { Value } from 'typebox/value';
import {
  dottedOf,
  expectation,
  fromText,
  kebab,
  pointerToken,
  type SettingInfo,
  settingsOf,
} from './settings.ts';

export interface Problem {
  /** JSON pointer of the setting in the config file ('' for the file as a whole). */
  pointer: string;
  message: string;
}

export interface Gathered {
  /** Values that were set, by pointer (secrets included: their `*File` was read). */
  values: Map<string, unknown>;
  /** Where each set value came from, for messages: `env TRESOR_PORT`, `config file server.port`. */
  from: Map<string, string>;
  /** Each setting's schema default, by pointer. */
  defaults: Map<string, unknown>;
  problems: Problem[];
  /** The config file, when one was named. */
  configPath?: string;
}

type Source = Record<string, unknown>;

/** Reads flags, environment and the config file (`flags.config` or TRESOR_CONFIG) against `schema`. */
export function gatherSettings(schema: TSchema, flags: Source, env: NodeJS.ProcessEnv): Gathered {
  const settings = settingsOf(schema);
  const g: Gathered = { values: new Map(), from: new Map(), defaults: new Map(), problems: [] };
  for (const s of settings) if (s.schema.default !== undefined) g.defaults.set(s.pointer, s.schema.default);

  const configPath = nonEmpty(flags.config) ?? nonEmpty(env.TRESOR_CONFIG);
  if (configPath !== undefined) {
    g.configPath = resolve(configPath);
    readFile(schema, settings, g.configPath, g);
  }
  for (const s of settings) {
    const raw = env[s.env];
    if (raw !== undefined && raw !== '') take(s, raw, `env ${s.env}`, process.cwd(), g);
  }
  for (const s of settings) {
    const raw = s.flag === undefined ? undefined : flags[s.flag];
    if (raw !== undefined && raw !== '') take(s, raw, `flag --${kebab(s.flag ?? '')}`, process.cwd(), g);
  }
  for (const s of settings) if (s.secret === 'file' && g.values.has(s.pointer)) readSecret(s, g);
  return g;
}

function readFile(schema: TSchema, settings: SettingInfo[], absolute: string, g: Gathered): void {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(absolute, 'utf8'));
  } catch (err) {
    const reason =
      (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'does not exist' : 'is not readable JSON';
    g.problems.push({ pointer: '', message: `config file ${absolute} ${reason}` });
    return;
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    g.problems.push({ pointer: '', message: `config file ${absolute} must hold a JSON object` });
    return;
  }
  const bad = new Set<string>();
  for (const fault of Value.Errors(schema, parsed)) {
    const names = (fault.params as { additionalProperties?: string[] }).additionalProperties;
    const unknown =
      fault.keyword === 'additionalProperties'
        ? (names ?? []).map((n) => `${fault.instancePath}/${pointerToken(n)}`)
        : fault.keyword === 'boolean'
          ? [fault.instancePath]
          : [];
    for (const pointer of unknown) {
      if (bad.has(pointer)) continue;
      bad.add(pointer);
      g.problems.push({ pointer, message: `config file: unknown setting ${dottedOf(pointer)}` });
    }
    if (unknown.length > 0 || fault.keyword === 'boolean' || bad.has(fault.instancePath)) continue;
    bad.add(fault.instancePath);
    const expected = schemaAt(schema, fault.instancePath);
    g.problems.push({
      pointer: fault.instancePath,
      message: `config file ${dottedOf(fault.instancePath)} must be ${expected ? expectation(expected) : 'valid'}`,
    });
  }
  const base = dirname(absolute);
  for (const s of settings) {
    const value = valueAt(parsed, s.pointer);
    if (value === undefined || [...bad].some((p) => p === s.pointer || p.startsWith(`${s.pointer}/`)))
      continue;
    if (s.secret === 'value') {
      const viaFile = settings.find((f) => f.secretOf === s.pointer);
      g.problems.push({
        pointer: s.pointer,
        message: `config file ${s.dotted}: secrets do not belong in the config file; use ${viaFile?.dotted} or ${viaFile?.env}`,
      });
      continue;
    }
    set(s, value, `config file ${s.dotted}`, base, g);
  }
}

/** A value from the environment or a flag: converted from text, checked against its setting. */
function take(s: SettingInfo, raw: unknown, from: string, base: string, g: Gathered): void {
  const value = fromText(s.schema, raw);
  if (!Value.Check(s.schema, value)) {
    g.problems.push({
      pointer: s.pointer,
      message: `${from} must be ${expectation(s.schema)} (${s.dotted})`,
    });
    return;
  }
  set(s, value, from, base, g);
}

function set(s: SettingInfo, value: unknown, from: string, base: string, g: Gathered): void {
  g.values.set(s.pointer, s.path && typeof value === 'string' ? resolve(base, value) : value);
  g.from.set(s.pointer, from);
}

/** A secret from the file its `*File` setting names (one trailing newline trimmed). */
function readSecret(s: SettingInfo, g: Gathered): void {
  const secretOf = s.secretOf;
  const from = g.from.get(s.pointer) ?? s.dotted;
  try {
    const content = readFileSync(String(g.values.get(s.pointer)), 'utf8').replace(/\r?\n$/, '');
    if (secretOf !== undefined) {
      g.values.set(secretOf, content);
      g.from.set(secretOf, `the file named by ${from}`);
    }
  } catch {
    g.problems.push({ pointer: s.pointer, message: `${from}: cannot read the secret file` });
  }
}

function schemaAt(schema: TSchema, pointer: string): Record<string, unknown> | undefined {
  let at: Record<string, unknown> | undefined = schema as Record<string, unknown>;
  for (const token of pointer.split('/').slice(1)) {
    if (at === undefined) return undefined;
    const key = token.replace(/~1/g, '/').replace(/~0/g, '~');
    at =
      at.type === 'array'
        ? (at.items as Record<string, unknown> | undefined)
        : (at.properties as Record<string, Record<string, unknown>> | undefined)?.[key];
  }
  return at;
}

function valueAt(root: unknown, pointer: string): unknown {
  let at = root;
  for (const token of pointer.split('/').slice(1)) {
    if (typeof at !== 'object' || at === null || Array.isArray(at)) return undefined;
    at = (at as Source)[token.replace(/~1/g, '/').replace(/~0/g, '~')];
  }
  return at;
}

function nonEmpty(v: unknown): string | undefined {
  return typeof v === 'string' && v.length > 0 ? v : undefined;
}
