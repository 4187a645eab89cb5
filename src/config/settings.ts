/**
 * The vocabulary the config schemas are written in: a setting is a TypeBox leaf schema carrying
 * its environment variable, its flag, whether it is a path or a secret, and a default. Every
 * other view of the configuration (validation, the environment mapping, flags, redaction, the
 * documentation) is read back from the schema by `settingsOf`, so nothing is listed twice.
 *
 * A secret is declared with `secret(...)`, which also declares its `*File` variant (env `*_FILE`):
 * the value itself comes only from the environment or from that file, never from the config file
 * or a flag (command lines are visible to every user of the machine).
 */
import Type, { type TSchema } from 'typebox';

export interface SettingMeta {
  /** The TRESOR_* variable that sets it. */
  env: string;
  /** The command-line flag (camelCase, as commander gives it); secrets never have one. */
  flag?: string;
  /** Relative paths are resolved against the config file's folder (file) or the working directory. */
  path?: true;
  /** 'value': the secret itself (env only); 'file': a file holding it (trailing newline trimmed). */
  secret?: 'value' | 'file';
  /** For docs, when the default is computed from other settings. */
  defaultText?: string;
}

/** A leaf of a schema as `settingsOf` finds it. */
export interface SettingInfo extends SettingMeta {
  /** JSON pointer (RFC 6901) in the config file, e.g. `/server/port`. */
  pointer: string;
  /** Dotted form of the pointer, e.g. `server.port`. */
  dotted: string;
  schema: TSchema & Record<string, unknown>;
  description: string;
  /** For a `secret: 'file'` setting, the pointer of the secret it holds. */
  secretOf?: string;
}

const META = 'x-tresor';

/** Attaches a setting's metadata to its schema (kept under one extension keyword). */
export function setting<T extends TSchema>(schema: T, meta: SettingMeta): T {
  return Object.assign(schema, { [META]: meta });
}

/** A secret and its `*File` variant, as two properties to spread into a `Type.Object`. */
export function secret(
  name: string,
  env: string,
  description: string,
): Record<string, ReturnType<typeof Type.Optional<ReturnType<typeof Type.String>>>> {
  return {
    [name]: Type.Optional(
      setting(Type.String({ minLength: 1, pattern: '\\S', description }), { env, secret: 'value' }),
    ),
    [`${name}File`]: Type.Optional(
      setting(
        Type.String({ minLength: 1, pattern: '\\S', description: `File holding ${lowerFirst(description)}` }),
        {
          env: `${env}_FILE`,
          path: true,
          secret: 'file',
        },
      ),
    ),
  };
}

/** A closed object (unknown keys are errors: a misspelt setting must not be silently ignored). */
export function section<P extends Parameters<typeof Type.Object>[0]>(properties: P, description: string) {
  return Type.Object(properties, { additionalProperties: false, description });
}

/** Every setting of a schema, in declaration order. */
export function settingsOf(schema: TSchema, pointer = ''): SettingInfo[] {
  const s = schema as Record<string, unknown>;
  const meta = s[META] as SettingMeta | undefined;
  if (meta) {
    const info: SettingInfo = {
      ...meta,
      pointer,
      dotted: dottedOf(pointer),
      schema: s as TSchema & Record<string, unknown>,
      description: typeof s.description === 'string' ? s.description : '',
    };
    if (meta.secret === 'file') info.secretOf = pointer.replace(/File$/, '');
    return [info];
  }
  const properties = s.properties as Record<string, TSchema> | undefined;
  if (s.type !== 'object' || !properties) return [];
  return Object.entries(properties).flatMap(([key, sub]) =>
    settingsOf(sub, `${pointer}/${pointerToken(key)}`),
  );
}

/** The sections (objects) of a schema with their descriptions, for the documentation. */
export function sectionsOf(schema: TSchema, pointer = ''): { pointer: string; description: string }[] {
  const s = schema as Record<string, unknown>;
  const properties = s.properties as Record<string, TSchema> | undefined;
  if (s.type !== 'object' || !properties || s[META]) return [];
  const own = { pointer, description: typeof s.description === 'string' ? s.description : '' };
  return [
    own,
    ...Object.entries(properties).flatMap(([key, sub]) => sectionsOf(sub, `${pointer}/${pointerToken(key)}`)),
  ];
}

/** What a valid value looks like, in words (for problems and the documentation). */
export function expectation(schema: Record<string, unknown>): string {
  if (Array.isArray(schema.enum)) return `one of ${schema.enum.join(', ')}`;
  if (schema.type === 'integer' || schema.type === 'number') {
    const kind = schema.type === 'integer' ? 'an integer' : 'a number';
    const min = schema.minimum as number | undefined;
    const max = schema.maximum as number | undefined;
    if (min !== undefined && max !== undefined) return `${kind} from ${min} to ${max}`;
    if (min !== undefined) return `${kind} of at least ${min}`;
    return kind;
  }
  if (schema.type === 'array' && isListOfObjects(schema))
    return 'a list of objects as the description says (in the environment: JSON)';
  if (schema.type === 'array') return 'a list of non-empty strings (in the environment: comma-separated)';
  if (schema.type === 'boolean') return 'true or false (in the environment also 1 or 0)';
  if (schema.type === 'string') return 'a non-empty string';
  if (schema.type === 'object') return 'an object';
  return 'a valid value';
}

/** A value from the environment or a flag (always text) in the type its setting declares. */
export function fromText(schema: Record<string, unknown>, value: unknown): unknown {
  if (typeof value !== 'string') return value;
  if (schema.type === 'integer' || schema.type === 'number')
    return /^-?\d+(\.\d+)?$/.test(value.trim()) ? Number(value) : value;
  if (schema.type === 'boolean') {
    const t = value.trim().toLowerCase();
    return t === 'true' || t === '1' ? true : t === 'false' || t === '0' ? false : value;
  }
  if (schema.type === 'array' && isListOfObjects(schema)) {
    // A list of objects (backup destinations) comes from the environment as JSON.
    try {
      return JSON.parse(value) as unknown;
    } catch {
      return value;
    }
  }
  if (schema.type === 'array')
    return value
      .split(',')
      .map((v) => v.trim())
      .filter(Boolean);
  return value;
}

/** A list whose items are not plain strings (e.g. objects of a union). */
function isListOfObjects(schema: Record<string, unknown>): boolean {
  const items = schema.items as Record<string, unknown> | undefined;
  return items !== undefined && items.type !== 'string';
}

export function dottedOf(pointer: string): string {
  return pointer
    .split('/')
    .slice(1)
    .map((t) => t.replace(/~1/g, '/').replace(/~0/g, '~'))
    .map((t, i) => (/^\d+$/.test(t) ? `[${t}]` : i === 0 ? t : `.${t}`))
    .join('');
}

export function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

export function pointerToken(token: string): string {
  return token.replace(/~/g, '~0').replace(/\//g, '~1');
}

function lowerFirst(text: string): string {
  return text.charAt(0).toLowerCase() + text.slice(1);
}
