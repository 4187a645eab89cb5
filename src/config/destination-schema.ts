/**
 * One backup destination as a config file writes it (`server.backup.destinations`,
 * `keyd.backup.destinations`): a folder or S3-compatible storage, each with an optional retention.
 * The shapes src/objects/configured-destinations.ts makes destinations from.
 */
import Type from 'typebox';

const RETENTION_DAYS = (fallback: number, description: string) =>
  Type.Optional(Type.Integer({ minimum: 0, maximum: 36_500, default: fallback, description }));
const DESTINATION_NAME = Type.String({
  pattern: '^[a-z0-9][a-z0-9-]{0,31}$',
  description: 'A short unique name (lower-case letters, digits, `-`), shown in reports.',
});
const RETENTION = Type.Optional(
  Type.Object(
    {
      keepAllDays: RETENTION_DAYS(2, 'Every backup is kept this many days.'),
      keepDailyDays: RETENTION_DAYS(35, 'The newest backup of each day is kept this many days.'),
    },
    { additionalProperties: false },
  ),
);
const NON_EMPTY = Type.String({ minLength: 1, pattern: '\\S' });

export const BACKUP_DESTINATION = Type.Union([
  Type.Object(
    {
      name: DESTINATION_NAME,
      kind: Type.Literal('folder'),
      path: NON_EMPTY,
      retention: RETENTION,
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      name: DESTINATION_NAME,
      kind: Type.Literal('s3'),
      endpoint: Type.Optional(NON_EMPTY),
      region: NON_EMPTY,
      bucket: NON_EMPTY,
      prefix: Type.Optional(Type.String({ maxLength: 256 })),
      forcePathStyle: Type.Optional(Type.Boolean()),
      accessKeyIdFile: NON_EMPTY,
      secretAccessKeyFile: NON_EMPTY,
      timeoutSeconds: Type.Optional(
        Type.Integer({
          minimum: 1,
          maximum: 3600,
          default: 60,
          description:
            'Seconds one request may take (a stalled or very slow server fails the attempt; 3 attempts per object), then the destination is reported failed and retried.',
        }),
      ),
      retention: RETENTION,
    },
    { additionalProperties: false },
  ),
]);
