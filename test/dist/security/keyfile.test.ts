// The cluster key file: made private (0600), never silently overwritten, and refused when it is
// readable by others, malformed, or its two halves do not belong together.
import * as fs from 'node:fs';
import * as path from 'node:path';
import t from 'tap';
import * as zmq from 'zeromq';
import { ConfigError } from '../../../src/core/errors';
import { curvePublicKeyOf, z85Decode, z85Encode } from '../../../src/dist/security/curve-auth';
import { KEY_FILE_FORMAT, readKeyFile, writeKeyFile } from '../../../src/dist/security/keyfile';
import { tempDir } from '../../data/fixtures/images';

const dir = tempDir(t, 'alexnet-keyfile-');
const modeOf = (file: string): number => fs.statSync(file).mode & 0o777;

t.test('z85 decodes what it encodes; a CURVE public key is derived from its secret key', async (t) => {
  const bytes = Uint8Array.from({ length: 32 }, (_, i) => (i * 37 + 11) & 0xff);
  t.same(Array.from(z85Decode(z85Encode(bytes))), Array.from(bytes));
  t.same(Array.from(z85Decode('HelloWorld')), [0x86, 0x4f, 0xd2, 0x6f, 0xb5, 0x59, 0xf7, 0x5b], 'RFC 32 test vector');
  t.throws(() => z85Decode('abc'), RangeError);
  t.throws(() => z85Decode('abc d'), RangeError);
  for (let i = 0; i < 3; i++) {
    const pair = zmq.curveKeyPair();
    t.equal(curvePublicKeyOf(pair.secretKey), pair.publicKey, 'the same public key libzmq made');
  }
});

t.test('keygen writes a 0600 JSON key file and refuses to overwrite it without force', async (t) => {
  const file = path.join(dir, 'cluster.key');
  const pair = writeKeyFile(file, false);
  t.equal(modeOf(file), 0o600, 'mode 0600');
  const contents = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  t.same(contents, { format: KEY_FILE_FORMAT, version: 1, publicKey: pair.publicKey, secretKey: pair.secretKey });
  const keys = readKeyFile(file);
  t.same(keys, {
    publicKey: pair.publicKey,
    secretKey: pair.secretKey,
    serverPublicKey: pair.publicKey,
    allowedClientKeys: [pair.publicKey],
  });

  t.throws(() => writeKeyFile(file, false), { name: 'ConfigError', message: /already exists: pass --force/ });
  t.equal(readKeyFile(file).secretKey, pair.secretKey, 'the refused keygen left the file alone');

  fs.chmodSync(file, 0o644);
  const replaced = writeKeyFile(file, true);
  t.not(replaced.secretKey, pair.secretKey, '--force writes a new key');
  t.equal(modeOf(file), 0o600, 'and the replacement is 0600 again');
  t.same(fs.readdirSync(dir), ['cluster.key'], 'no temporary file left behind');
});

t.test('a key file that is missing, readable by others, malformed or mismatched is a ConfigError', async (t) => {
  const write = (name: string, text: string, mode = 0o600): string => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, text, { mode });
    fs.chmodSync(file, mode);
    return file;
  };
  const a = zmq.curveKeyPair();
  const b = zmq.curveKeyPair();
  const json = (o: object): string => JSON.stringify({ format: KEY_FILE_FORMAT, version: 1, ...o });
  const cases: [string, RegExp][] = [
    [path.join(dir, 'missing.key'), /does not exist: make one with 'alexnet keygen/],
    [write('open.key', json(a), 0o644), /accessible by other users \(mode 0644\): run 'chmod 600/],
    [write('text.key', 'not json'), /is not JSON/],
    [write('foreign.key', JSON.stringify({ format: 'zmq-cert', ...a })), /is not an alexnet cluster key/],
    [write('short.key', json({ publicKey: 'abc', secretKey: a.secretKey })), /publicKey is not a 40-character Z85 key/],
    [
      write('mixed.key', json({ publicKey: a.publicKey, secretKey: b.secretKey })),
      /publicKey does not belong to secretKey/,
    ],
  ];
  for (const [file, pattern] of cases)
    t.throws(() => readKeyFile(file), { constructor: ConfigError, message: pattern }, path.basename(file));
});
