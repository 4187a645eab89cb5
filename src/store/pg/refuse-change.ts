/**
 * PostgreSQL's form of the SQLite triggers that keep tables append-only (`RAISE(ABORT, '…')`): a
 * plpgsql trigger function that RAISEs the message it is given, and the DDL that attaches it.
 *
 * TRUNCATE skips row triggers on PostgreSQL (SQLite has no TRUNCATE), so an append-only table also
 * gets a statement trigger that refuses it. Like the SQLite triggers they stop mistakes, not a
 * superuser: the signed checkpoints and `tresor audit verify` are for that.
 */

/** Creates (or replaces) the function in the schema the migration runs in (its search_path). */
export const REFUSE_CHANGE_FUNCTION = `CREATE OR REPLACE FUNCTION tresor_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'restrict_violation';
END
$$;`;

function literal(message: string): string {
  if (!/^[A-Za-z0-9 ,.-]+$/.test(message)) throw new RangeError('a trigger message is plain words');
  return `'${message}'`;
}

function name(identifier: string): string {
  if (!/^[a-z_][a-z0-9_]*$/.test(identifier))
    throw new RangeError(`not a table or trigger name: ${identifier}`);
  return identifier;
}

/**
 * A row trigger refusing `event` on `table` with `message`, when `when` holds if given (a condition
 * on OLD and NEW, e.g. `NEW.seq < OLD.seq`).
 */
export function refusingTrigger(
  trigger: string,
  table: string,
  event: 'UPDATE' | 'DELETE',
  message: string,
  when?: string,
): string {
  const condition = when === undefined ? '' : ` WHEN (${when})`;
  return `CREATE TRIGGER ${name(trigger)} BEFORE ${event} ON ${name(table)} FOR EACH ROW${condition} EXECUTE FUNCTION tresor_refuse_change(${literal(message)});`;
}

/** The triggers of an append-only table: no UPDATE, no DELETE, no TRUNCATE. */
export function appendOnly(table: string, message: string): string {
  return [
    refusingTrigger(`${table}_no_update`, table, 'UPDATE', message),
    refusingTrigger(`${table}_no_delete`, table, 'DELETE', message),
    `CREATE TRIGGER ${name(table)}_no_truncate BEFORE TRUNCATE ON ${name(table)} FOR EACH STATEMENT EXECUTE FUNCTION tresor_refuse_change(${literal(message)});`,
  ].join('\n');
}
