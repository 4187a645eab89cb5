/**
 * The backup bench's record (backup.ts, backup-tresor-child.ts): one collection of 1 KiB records
 * (UTF-8 bytes of field values, as the HTTPS bench writes), each with an email unique to its number.
 */

export const BENCH_COLLECTION = 'people';
/** A 1 KiB record (UTF-8 bytes of field values) whose email is unique to `n`. */
export function benchRecord(n: number): Record<string, string> {
  const email = `customer${String(n).padStart(10, '0')}@bench.example.com`;
  const fixed = {
    name: 'Ada Augusta King, Countess of Lovelace',
    phone: '+44 20 7946 0958',
    street: '12 St James Square, Westminster',
    city: 'London SW1Y 4LB, United Kingdom',
  };
  const used = Object.values(fixed).reduce((sum, v) => sum + v.length, 0) + email.length;
  return { ...fixed, email, notes: 'Prefers contact by letter. '.repeat(40).slice(0, 1024 - used) };
}

export const BENCH_DECLARATION = {
  fields: {
    name: { type: 'string', classification: 'personal', required: true },
    email: { type: 'string', classification: 'personal', required: true, searchable: true },
    phone: { type: 'string', classification: 'personal' },
    street: { type: 'string', classification: 'personal' },
    city: { type: 'string', classification: 'personal' },
    notes: { type: 'string', classification: 'confidential' },
  },
};
