/**
 * The cluster key file of a multi-host run: one CURVE keypair, made by `alexnet keygen` and
 * copied to every host. Every socket of the run (control plane and ring) is a CURVE server
 * and client with it and admits only it, so a process without the file can neither join nor
 * send gradients. Its secret half is a password: the file is created 0600, and a file that
 * other users can read is refused (as ssh refuses a readable private key).
 *
 *   {
 *     "format": "alexnet-cluster-key",
 *     "version": 1,
 *     "publicKey": "<40 Z85 characters>",
 *     "secretKey": "<40 Z85 characters>"
 *   }
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zmq from 'zeromq';
import { writeAtomic } from '../../core/atomic-write';
import { ConfigError } from '../../core/errors';
import { clusterKeysFrom, curvePublicKeyOf, validateCurveKeys, type CurveKeyPair, type CurveKeys } from './curve-auth';

export const KEY_FILE_FORMAT = 'alexnet-cluster-key';
export const KEY_FILE_VERSION = 1;
const KEY_FILE_MODE = 0o600;

function keyFileText(pair: CurveKeyPair): string {
  const contents = {
    format: KEY_FILE_FORMAT,
    version: KEY_FILE_VERSION,
    publicKey: pair.publicKey,
    secretKey: pair.secretKey,
  };
  return `${JSON.stringify(contents, null, 2)}\n`;
}

/**
 * Writes a new keypair to `file` (mode 0600) and returns it. An existing file is refused
 * unless `force`: overwriting the key of a running cluster locks its hosts out.
 */
export function writeKeyFile(file: string, force: boolean): CurveKeyPair {
  if (fs.existsSync(file) && !force) {
    throw new ConfigError(
      `key file ${file} already exists: pass --force to replace it (every host then needs the new file)`,
    );
  }
  const dir = path.dirname(path.resolve(file));
  if (!fs.existsSync(dir)) throw new ConfigError(`cannot write key file ${file}: folder ${dir} does not exist`);
  const pair = zmq.curveKeyPair();
  // Created 0600 before the secret is written, and swapped in whole: the secret is never
  // readable by others, not even for a moment.
  try {
    writeAtomic(file, keyFileText(pair), { mode: KEY_FILE_MODE });
  } catch (err) {
    throw new ConfigError(`cannot write key file ${file}: ${err instanceof Error ? err.message : String(err)}`);
  }
  return pair;
}

function parseKeyFile(file: string, text: string): CurveKeyPair {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new ConfigError(`key file ${file} is not JSON: make one with 'alexnet keygen --out ${file}'`);
  }
  const record = typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
  if (record.format !== KEY_FILE_FORMAT || record.version !== KEY_FILE_VERSION) {
    throw new ConfigError(
      `key file ${file} is not an alexnet cluster key (format '${KEY_FILE_FORMAT}', version ${KEY_FILE_VERSION})`,
    );
  }
  const { publicKey, secretKey } = record;
  if (typeof publicKey !== 'string' || typeof secretKey !== 'string') {
    throw new ConfigError(`key file ${file}: publicKey and secretKey must be strings`);
  }
  return { publicKey, secretKey };
}

function publicKeyOrNull(secretKey: string): string | null {
  try {
    return curvePublicKeyOf(secretKey);
  } catch {
    return null; // 40 Z85 characters can still overflow 32 bits per block
  }
}

/**
 * Reads and checks a key file: present, private (no group/other permissions), well-formed,
 * and a matching pair. Returns the socket keys of the cluster. ConfigError otherwise.
 */
export function readKeyFile(file: string): CurveKeys {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch {
    throw new ConfigError(
      `key file ${file} does not exist: make one with 'alexnet keygen --out ${file}' and copy it to every host`,
    );
  }
  if ((stat.mode & 0o077) !== 0) {
    const mode = (stat.mode & 0o777).toString(8).padStart(4, '0');
    throw new ConfigError(`key file ${file} is accessible by other users (mode ${mode}): run 'chmod 600 ${file}'`);
  }
  const pair = parseKeyFile(file, fs.readFileSync(file, 'utf8'));
  const keys = clusterKeysFrom(pair);
  validateCurveKeys(keys);
  if (publicKeyOrNull(pair.secretKey) !== pair.publicKey) {
    throw new ConfigError(
      `key file ${file}: publicKey does not belong to secretKey (an edited file?): make a new one with 'alexnet keygen'`,
    );
  }
  return keys;
}
