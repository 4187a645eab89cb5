import assert from 'node:assert/strict';

/** The error a promise is refused with (fails the test if it resolves): its code, message and details. */
export async function refusal(
  promise: Promise<unknown>,
): Promise<{ code: unknown; message: unknown; details?: unknown }> {
  try {
    await promise;
  } catch (error) {
    const e = error as { code?: unknown; message?: unknown; details?: unknown };
    return { code: e.code, message: e.message, ...(e.details === undefined ? {} : { details: e.details }) };
  }
  assert.fail('expected a refusal');
}
