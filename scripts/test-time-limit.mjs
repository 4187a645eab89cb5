// Preloaded into every test process by run-tests.mjs: gives each test and hook a time limit
// (TRESOR_TEST_TIMEOUT_MS), so a hang fails with the test's name. Node 20's --test-timeout only
// limits whole files, and a hook has no limit at all unless it is given one.
// An explicit `timeout` option in a test still wins. Covers the named exports (`test`, `it`, their
// .skip/.only/.todo, and the hooks); this repository imports nothing else from node:test.
import { createRequire, syncBuiltinESMExports } from 'node:module';

const limit = Number(process.env.TRESOR_TEST_TIMEOUT_MS);
if (Number.isSafeInteger(limit) && limit > 0) {
  const nodeTest = createRequire(import.meta.url)('node:test');

  const withTestLimit = (fn) => (name, options, body) => {
    if (typeof name === 'function') return fn({ timeout: limit }, name);
    if (typeof name === 'object' && name !== null) return fn({ timeout: limit, ...name }, options);
    if (typeof options === 'function') return fn(name, { timeout: limit }, options);
    return fn(name, { timeout: limit, ...options }, body);
  };
  for (const key of ['test', 'it']) {
    const original = nodeTest[key];
    const limited = withTestLimit(original);
    for (const variant of ['skip', 'todo', 'only']) limited[variant] = withTestLimit(original[variant]);
    nodeTest[key] = limited;
  }

  for (const key of ['before', 'after', 'beforeEach', 'afterEach']) {
    const original = nodeTest[key];
    nodeTest[key] = (fn, options) => original(fn, { timeout: limit, ...options });
  }

  // ESM `import { it } from 'node:test'` reads these bindings: make them the limited ones.
  syncBuiltinESMExports();
}
