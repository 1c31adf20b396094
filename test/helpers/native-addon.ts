/**
 * The native backend's addon for the tests: built (as `make native` would) when it is missing.
 * `addon` is null only where it cannot be built here, and `skipReason` then says why, in the
 * build script's words.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { addonPath, loadAddon } from '../../src/backend/native/backend';
import type { DnnlAddon } from '../../src/backend/native/kernels';
import { SRC } from './repo';

export function ensureNativeAddon(): { addon: DnnlAddon | null; skipReason: string } {
  const file = addonPath();
  let said = '';
  if (!fs.existsSync(file)) {
    const script = path.join(SRC, 'backend', 'native', 'addon', 'build.sh');
    said = execFileSync(script, [file], { encoding: 'utf8' }).trim().split('\n').pop() ?? '';
  }
  if (!fs.existsSync(file)) return { addon: null, skipReason: `native addon cannot be built here: ${said}` };
  return { addon: loadAddon(file), skipReason: '' };
}
