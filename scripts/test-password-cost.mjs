// TEST-ONLY, preloaded into every test process by scripts/run-tests.mjs: a low argon2id cost
// (1 MiB, one pass, one lane) for the many passwords the suite hashes, under the global symbol that
// src/identity/passwords.ts reads. Production never loads this file, and nothing in Tresor's
// configuration, environment or command line can set the symbol. Servers the tests start as child
// processes do not inherit it: they hash at the production cost (RFC 9106's second recommended
// option), and test/identity/passwords.test.ts checks that cost with the override lifted.
globalThis[Symbol.for('tresor.test.argon2id-cost')] = Object.freeze({
  memoryCost: 1024,
  timeCost: 1,
  parallelism: 1,
});
