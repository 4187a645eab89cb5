/**
 * Loading one schema file (pg-schema-file.ts) into a schema that its migrations have made, inside
 * the caller's transaction on `client`: the tables a migration seeded with rows (which the file
 * holds too) emptied, each table's rows loaded by `COPY … FROM STDIN (FORMAT binary)` in the
 * file's order (parents first), then each identity or serial column's sequence set at or past both
 * its copied value and the largest value loaded, so the next row drawn never repeats one.
 *
 * A table the file names that the schema lacks, or a column list that differs, fails the load with
 * TRESOR_ERR_BACKUP_INVALID; PostgreSQL refuses rows that do not fit the table's types. After a
 * failure the connection may still be in COPY mode: the caller ends it (the transaction with it).
 */
import { once } from 'node:events';
import { open } from 'node:fs/promises';
import { finished } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { quoteIdent } from '../store/pg/pool.ts';
import { BackupError } from './errors.ts';
import { readPgSchemaFile } from './pg-schema-file.ts';
import { MIGRATION_TABLES } from './pg-snapshot.ts';

export interface LoadedSchema {
  tables: number;
}

export async function loadPgSchemaFile(
  client: pg.ClientBase,
  schema: string,
  path: string,
  name: string,
): Promise<LoadedSchema> {
  const q = quoteIdent(schema);
  const { rows } = await client.query<{ table: string }>(
    `SELECT c.relname AS table FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1 AND c.relkind IN ('r', 'p') AND c.relname <> ALL ($2::text[])`,
    [schema, MIGRATION_TABLES],
  );
  const existing = new Set(rows.map((r) => r.table));
  // Only the tables a migration seeded; some refuse deletes (refuse-change.ts): see below.
  const seeded: string[] = [];
  for (const t of existing) {
    const { rows: any } = await client.query(`SELECT 1 FROM ${q}.${quoteIdent(t)} LIMIT 1`);
    if (any.length > 0) seeded.push(`${q}.${quoteIdent(t)}`);
  }
  for (const table of seeded) {
    // The restore's role made these tables (it owns them): their refusing triggers are set aside in
    // this transaction for the DELETE and the COPY of the file's rows (a seeded row such as the
    // audit_archived cursor's refuses an INSERT too), and set back once the file is loaded.
    await client.query(`ALTER TABLE ${table} DISABLE TRIGGER USER`);
    await client.query(`DELETE FROM ${table}`);
  }
  const file = await open(path, 'r');
  let tables = 0;
  try {
    let copy: ReturnType<typeof copyFrom> | undefined;
    let sequences: { table: string; values: Record<string, number> } | undefined;
    for await (const frame of readPgSchemaFile(file, name)) {
      if (frame.kind === 'table') {
        const { table, columns } = frame.header;
        if (!existing.has(table))
          throw invalid(name, `table ${table} is not in the schema its version makes`);
        await sameColumns(client, schema, table, columns, name);
        copy = client.query(
          copyFrom(
            `COPY ${q}.${quoteIdent(table)} (${columns.map(quoteIdent).join(', ')}) FROM STDIN (FORMAT binary)`,
          ),
        );
        // Its error is met by the next write's drain or by finished(); unheard, it would end the process.
        copy.on('error', () => undefined);
        sequences = { table, values: frame.header.sequences };
      } else if (frame.kind === 'data') {
        if (copy !== undefined && !copy.write(frame.bytes)) await once(copy, 'drain');
      } else if (frame.kind === 'end-table') {
        if (copy === undefined || sequences === undefined) continue;
        copy.end();
        await finished(copy);
        copy = undefined;
        await setSequences(client, schema, sequences.table, sequences.values);
        tables += 1;
      }
    }
  } finally {
    await file.close();
  }
  for (const table of seeded) await client.query(`ALTER TABLE ${table} ENABLE TRIGGER USER`);
  return { tables };
}

async function sameColumns(
  client: pg.ClientBase,
  schema: string,
  table: string,
  columns: readonly string[],
  name: string,
): Promise<void> {
  const { rows } = await client.query<{ column: string }>(
    `SELECT attname AS column FROM pg_attribute
      WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
      ORDER BY attnum`,
    [`${quoteIdent(schema)}.${quoteIdent(table)}`],
  );
  if (rows.map((r) => r.column).join('\0') !== columns.join('\0'))
    throw invalid(name, `the columns of ${table} are not those of the schema its version makes`);
}

async function setSequences(
  client: pg.ClientBase,
  schema: string,
  table: string,
  values: Record<string, number>,
): Promise<void> {
  const qualified = `${quoteIdent(schema)}.${quoteIdent(table)}`;
  for (const [column, copied] of Object.entries(values)) {
    const { rows } = await client.query<{ sequence: string | null }>(
      'SELECT pg_get_serial_sequence($1, $2) AS sequence',
      [qualified, column],
    );
    const sequence = rows[0]?.sequence;
    if (sequence === null || sequence === undefined) continue;
    // setval(seq, n, true): the next value drawn is n + 1; (seq, 1, false): it is 1.
    await client.query(
      `SELECT CASE WHEN m >= 1 THEN setval($1::regclass, m, true) ELSE setval($1::regclass, 1, false) END
         FROM (SELECT greatest($2::bigint, coalesce((SELECT max(${quoteIdent(column)}) FROM ${qualified}), 0)) AS m) s`,
      [sequence, copied],
    );
  }
}

function invalid(name: string, why: string): BackupError {
  return new BackupError('TRESOR_ERR_BACKUP_INVALID', `${name}: ${why}`);
}
