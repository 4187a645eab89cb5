/**
 * SQLite implementation of DataKeyStore: wrapped data keys beside the tenant's data, in the
 * tenant's own store file. Only wrapped keys are stored; the table cannot hold a plaintext key.
 */
import type Database from 'better-sqlite3';
import type { DataKeyRecord, DataKeyStore } from '../../vault/data-keys.ts';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS data_keys (
  key_id     TEXT PRIMARY KEY,
  tenant     TEXT NOT NULL,
  purpose    TEXT NOT NULL,
  wrapped    BLOB NOT NULL,
  state      TEXT NOT NULL CHECK (state IN ('active', 'decrypt-only')),
  created_at TEXT NOT NULL,
  reserved   INTEGER NOT NULL CHECK (reserved >= 0)
) STRICT;
CREATE UNIQUE INDEX IF NOT EXISTS data_keys_one_active ON data_keys (tenant, purpose) WHERE state = 'active';
`;

interface Row {
  key_id: string;
  tenant: string;
  purpose: string;
  wrapped: Buffer;
  state: string;
  created_at: string;
  reserved: number;
}

function toRecord(row: Row): DataKeyRecord {
  return {
    keyId: row.key_id,
    tenant: row.tenant,
    purpose: row.purpose as DataKeyRecord['purpose'],
    wrapped: row.wrapped,
    state: row.state as DataKeyRecord['state'],
    createdAt: row.created_at,
    reserved: row.reserved,
  };
}

export function createSqliteDataKeyStore(db: Database.Database): DataKeyStore {
  db.exec(SCHEMA);
  const selectActive = db.prepare<[string, string], Row>(
    "SELECT * FROM data_keys WHERE tenant = ? AND purpose = ? AND state = 'active'",
  );
  const selectOne = db.prepare<[string, string], Row>(
    'SELECT * FROM data_keys WHERE tenant = ? AND key_id = ?',
  );
  const selectAll = db.prepare<[string], Row>(
    'SELECT * FROM data_keys WHERE tenant = ? ORDER BY created_at, key_id',
  );
  const demote = db.prepare(
    "UPDATE data_keys SET state = 'decrypt-only' WHERE tenant = ? AND purpose = ? AND state = 'active'",
  );
  const insert = db.prepare(
    'INSERT INTO data_keys (key_id, tenant, purpose, wrapped, state, created_at, reserved) VALUES (?, ?, ?, ?, ?, ?, ?)',
  );
  const reserve = db.prepare('UPDATE data_keys SET reserved = max(reserved, ?) WHERE key_id = ?');
  const rewrap = db.prepare('UPDATE data_keys SET wrapped = ? WHERE key_id = ?');
  const insertActive = db.transaction((r: DataKeyRecord) => {
    demote.run(r.tenant, r.purpose);
    insert.run(r.keyId, r.tenant, r.purpose, r.wrapped, 'active', r.createdAt, r.reserved);
  });

  return {
    async active(tenant, purpose) {
      const row = selectActive.get(tenant, purpose);
      return row ? toRecord(row) : undefined;
    },
    async get(tenant, keyId) {
      const row = selectOne.get(tenant, keyId);
      return row ? toRecord(row) : undefined;
    },
    async list(tenant) {
      return selectAll.all(tenant).map(toRecord);
    },
    async insertActive(record) {
      insertActive(record);
    },
    async reserve(keyId, reserved) {
      reserve.run(reserved, keyId);
    },
    async replaceWrapped(keyId, wrapped) {
      rewrap.run(wrapped, keyId);
    },
  };
}
