/**
 * CURVE security for the ring's ZeroMQ sockets (encryption + authentication, libzmq's
 * CurveZMQ). Used for tcp across hosts; on one host the 0700 ipc directory already keeps
 * other users out.
 *
 * Plain CURVE only proves that the *server* holds its secret key: any client that knows the
 * server's public key gets in. So each receiving socket also runs a ZAP handler (RFC 27) that
 * admits only the listed client public keys; since CURVE proves the client holds the secret
 * key of the public key it presents, a peer must hold a cluster secret key to connect.
 * A peer without keys fails the handshake; its messages never reach `recv()`.
 */
import * as zmq from 'zeromq';
import { ConfigError } from '../errors';

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

/**
 * One keypair for the whole cluster, made by the coordinator and handed to every worker over
 * the control plane: every rank is server and client with it, and admits only it.
 */
export function clusterCurveKeys(): CurveKeys {
  const { publicKey, secretKey } = zmq.curveKeyPair();
  return { publicKey, secretKey, serverPublicKey: publicKey, allowedClientKeys: [publicKey] };
}

const Z85_ALPHABET =
  '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#';

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
export async function startZapHandler(
  context: zmq.Context,
  allowedKeys: readonly string[],
): Promise<zmq.Router> {
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
