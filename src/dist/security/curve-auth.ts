/**
 * CURVE security for the ZeroMQ sockets of a multi-host run, the ring's and the control
 * plane's (encryption + authentication, libzmq's CurveZMQ). Used for tcp across hosts; on one
 * host the 0700 ipc directory already keeps other users out.
 *
 * Plain CURVE only proves that the *server* holds its secret key: any client that knows the
 * server's public key gets in. So each receiving socket also runs a ZAP handler (RFC 27) that
 * admits only the listed client public keys; since CURVE proves the client holds the secret
 * key of the public key it presents, a peer must hold a cluster secret key to connect.
 * A peer without keys fails the handshake; its messages never reach `recv()`.
 */
import * as crypto from 'node:crypto';
import * as zmq from 'zeromq';
import { ConfigError } from '../../core/errors';

export interface CurveKeys {
  /** This rank's public key (Z85, 40 chars): server key of its receiving socket and client
   * key of its sending socket. */
  publicKey: string;
  /** This rank's secret key (Z85, 40 chars). Never leaves the cluster. */
  secretKey: string;
  /** Public key of rank+1's receiving socket. */
  serverPublicKey: string;
  /** Client public keys this rank's receiving socket admits (normally rank-1's publicKey). */
  allowedClientKeys: readonly string[];
}

/** A CURVE keypair in Z85, as libzmq makes them and `alexnet keygen` stores them. */
export interface CurveKeyPair {
  publicKey: string;
  secretKey: string;
}

/**
 * The socket keys of a cluster that shares one keypair (the key file copied to every host):
 * every socket is server and client with it, and admits only it.
 */
export function clusterKeysFrom(pair: CurveKeyPair): CurveKeys {
  const { publicKey, secretKey } = pair;
  return { publicKey, secretKey, serverPublicKey: publicKey, allowedClientKeys: [publicKey] };
}

/** A fresh cluster keypair (tests; users make one with `alexnet keygen`). */
export function clusterCurveKeys(): CurveKeys {
  return clusterKeysFrom(zmq.curveKeyPair());
}

const Z85_ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#';

/** Z85 encoding (ZeroMQ RFC 32) of bytes whose length is a multiple of 4. */
export function z85Encode(bytes: Uint8Array): string {
  if (bytes.length % 4 !== 0) throw new RangeError('z85Encode: length must be a multiple of 4');
  let out = '';
  for (let i = 0; i < bytes.length; i += 4) {
    let value = ((bytes[i] << 24) | (bytes[i + 1] << 16) | (bytes[i + 2] << 8) | bytes[i + 3]) >>> 0;
    let block = '';
    for (let d = 0; d < 5; d++) {
      block = Z85_ALPHABET[value % 85] + block;
      value = Math.floor(value / 85);
    }
    out += block;
  }
  return out;
}

/** Decodes Z85 (the inverse of z85Encode); RangeError for a malformed string. */
export function z85Decode(text: string): Uint8Array {
  if (text.length % 5 !== 0) throw new RangeError('z85Decode: length must be a multiple of 5');
  const out = new Uint8Array((text.length / 5) * 4);
  for (let i = 0; i < text.length; i += 5) {
    let value = 0;
    for (let d = 0; d < 5; d++) {
      const digit = Z85_ALPHABET.indexOf(text[i + d]);
      if (digit < 0) throw new RangeError(`z85Decode: '${text[i + d]}' is not a Z85 character`);
      value = value * 85 + digit;
    }
    if (value > 0xffffffff) throw new RangeError('z85Decode: a 5-character block exceeds 32 bits');
    new DataView(out.buffer).setUint32((i / 5) * 4, value);
  }
  return out;
}

/** PKCS#8 DER prefix of a raw 32-byte X25519 private key (RFC 8410). */
const X25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

/**
 * The public key of a CURVE secret key. CurveZMQ keys are Curve25519 (X25519) keys, so node's
 * crypto derives it; a key file whose halves do not match would otherwise only show up as
 * peers silently refusing each other.
 */
export function curvePublicKeyOf(secretKey: string): string {
  const raw = z85Decode(secretKey);
  const privateKey = crypto.createPrivateKey({
    key: Buffer.concat([X25519_PKCS8_PREFIX, raw]),
    format: 'der',
    type: 'pkcs8',
  });
  const spki = crypto.createPublicKey(privateKey).export({ type: 'spki', format: 'der' });
  return z85Encode(spki.subarray(spki.length - 32));
}

const Z85_KEY = /^[0-9a-zA-Z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/;

/** Throws a ConfigError unless every key looks like a Z85 CURVE key. */
export function validateCurveKeys(keys: CurveKeys): void {
  const named: [string, string][] = [
    ['publicKey', keys.publicKey],
    ['secretKey', keys.secretKey],
    ['serverPublicKey', keys.serverPublicKey],
    ...keys.allowedClientKeys.map((k, i): [string, string] => [`allowedClientKeys[${i}]`, k]),
  ];
  for (const [name, key] of named) {
    if (!Z85_KEY.test(key)) throw new ConfigError(`CURVE ${name} is not a 40-character Z85 key`);
  }
  if (keys.allowedClientKeys.length === 0) {
    throw new ConfigError('CURVE allowedClientKeys is empty: no peer could connect');
  }
}

/** ZeroMQ looks for a context's ZAP handler at this fixed inproc address. */
const ZAP_ENDPOINT = 'inproc://zeromq.zap.01';

/**
 * Starts a ZAP handler in `context` that admits CURVE clients whose public key is in
 * `allowedKeys`. Returns the router socket; closing it stops the handler.
 */
export async function startZapHandler(context: zmq.Context, allowedKeys: readonly string[]): Promise<zmq.Router> {
  const router = new zmq.Router({ context, linger: 0 });
  await router.bind(ZAP_ENDPOINT);
  const allowed = new Set(allowedKeys);
  void (async () => {
    try {
      for await (const frames of router) {
        // [routing id, empty, version, request id, domain, address, identity, mechanism, key]
        const [routingId, delimiter, version, requestId, , , , mechanism, clientKey] = frames;
        const ok =
          version?.toString() === '1.0' &&
          mechanism?.toString() === 'CURVE' &&
          clientKey?.length === 32 &&
          allowed.has(z85Encode(clientKey));
        const status = ok ? ['200', 'OK'] : ['400', 'client key not allowed'];
        await router.send([routingId, delimiter, '1.0', requestId ?? '', ...status, '', '']);
      }
    } catch {
      // The router was closed while replying: the transport is shutting down.
    }
  })();
  return router;
}

/** Options that make `socket` a CURVE server with `keys`. */
export function applyCurveServer(socket: zmq.Socket, keys: CurveKeys): void {
  socket.curveServer = true;
  socket.curvePublicKey = keys.publicKey;
  socket.curveSecretKey = keys.secretKey;
}

/** Options that make `socket` a CURVE client of the server whose key is in `keys`. */
export function applyCurveClient(socket: zmq.Socket, keys: CurveKeys): void {
  socket.curveServerKey = keys.serverPublicKey;
  socket.curvePublicKey = keys.publicKey;
  socket.curveSecretKey = keys.secretKey;
}
