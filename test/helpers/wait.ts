/** TEST-ONLY. Polls `probe` until it returns something other than undefined, or fails naming `what`. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  options: { timeoutMs?: number; intervalMs?: number; diagnostics?: () => string } = {},
): Promise<T> {
  const deadline = Date.now() + (options.timeoutMs ?? 15_000);
  for (;;) {
    const got = await probe();
    if (got !== undefined) return got;
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${what}${options.diagnostics?.() ?? ''}`);
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 100));
  }
}
