/**
 * Whether the webgpu tests can run here: Dawn (npm's `webgpu`) and a Vulkan adapter, software
 * ones included (Mesa's lavapipe, which `make test` installs from bookworm-backports where it
 * can: scripts/ensure-vulkan.sh). Where they cannot, each webgpu test file skips with one loud
 * line; in CI (CI=true, as .ci/run runs) or with ALEXNET_REQUIRE_WEBGPU=1 that is a failure
 * instead, so a missing install step cannot pass unnoticed.
 */
import type { Test } from 'tap';
import { describeAdapter, probeAdapter } from '../../src/backend/webgpu/backend';

/** Null when a webgpu adapter is there, else why not. */
export async function webgpuMissing(): Promise<string | null> {
  try {
    const adapter = await probeAdapter();
    return adapter == null
      ? 'Dawn found no Vulkan adapter (run scripts/ensure-vulkan.sh as root: Mesa lavapipe from bookworm-backports)'
      : null;
  } catch (err) {
    return err instanceof Error ? err.message.split('\n')[0] : String(err);
  }
}

/** The adapter's one-line description, for the tests' first assertion. */
export async function adapterLine(): Promise<string> {
  const adapter = await probeAdapter();
  return adapter == null ? 'none' : describeAdapter(adapter);
}

/**
 * True when the file's webgpu tests should run. Otherwise it has planned the file away with one
 * loud line (a skip), or failed it where webgpu is required (CI).
 */
export async function requireWebgpu(t: Test, what: string): Promise<boolean> {
  const missing = await webgpuMissing();
  if (missing === null) return true;
  if (process.env.CI === 'true' || process.env.ALEXNET_REQUIRE_WEBGPU === '1') {
    t.fail(`${what}: webgpu is required here (CI) but not available: ${missing}`);
    return false;
  }
  process.stderr.write(`WARNING: ${what} SKIPPED: no webgpu adapter: ${missing}\n`);
  t.plan(0, `${what} skipped: ${missing}`);
  return false;
}
