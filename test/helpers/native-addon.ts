/**
 * The native addons for the tests: built (as `make native` or `make jpeg` would) when missing.
 * `addon` is null only where it cannot be built here, and `skipReason` then says why, in the
 * build script's words.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { addonPath, loadAddon } from '../../src/backend/native/backend';
import type { DnnlAddon } from '../../src/backend/native/kernels';
import { SRC } from './repo';

/**
 * Run an addon's build script (under src/) when `file` is missing, as make would. Returns the
 * script's last line ('' when the file was there): where the file is still missing, it says why.
 */
export function buildAddonIfMissing(scriptUnderSrc: string, file: string): string {
  if (fs.existsSync(file)) return '';
  const said = execFileSync(path.join(SRC, scriptUnderSrc), [file], { encoding: 'utf8' });
  return said.trim().split('\n').pop() ?? '';
}

export function ensureNativeAddon(): { addon: DnnlAddon | null; skipReason: string } {
  const file = addonPath();
  const said = buildAddonIfMissing('backend/native/addon/build.sh', file);
  if (!fs.existsSync(file)) return { addon: null, skipReason: `native addon cannot be built here: ${said}` };
  return { addon: loadAddon(file), skipReason: '' };
}
