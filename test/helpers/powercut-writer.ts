/**
 * Child process of the power-cut test's control experiment: opens a SQLite file the way a careless
 * store would — WAL with `synchronous` set from argv[3] (FULL or OFF) — and inserts rows one commit
 * at a time, printing each row's id once its commit returned (acknowledged). It runs until killed.
 * Tresor's own stores never run with synchronous=OFF (test/store/durability-settings.test.ts): this
 * script exists to show that the power-cut test catches a store that does.
 */
import Database from 'better-sqlite3';

const [path, synchronous] = process.argv.slice(2);
if (!path || (synchronous !== 'FULL' && synchronous !== 'OFF')) {
  throw new Error('usage: powercut-writer.ts <path> FULL|OFF');
}
const db = new Database(path);
db.pragma('journal_mode = WAL');
db.pragma(`synchronous = ${synchronous}`);
db.exec('CREATE TABLE IF NOT EXISTS acked (id TEXT PRIMARY KEY, value TEXT NOT NULL)');
const insert = db.prepare('INSERT INTO acked (id, value) VALUES (?, ?)');
for (let i = 0; ; i++) {
  const id = `r${i}`;
  insert.run(id, `value of ${id}`);
  // Synchronous write: the id reaches the pipe before the next commit starts.
  process.stdout.write(`${id}\n`);
  if (i % 50 === 0) await new Promise((resolve) => setImmediate(resolve));
}
