/**
 * CURVE on the ring: keyed ranks talk; a peer without the cluster's keys can neither connect
 * nor inject data (its messages never reach recv(), which times out instead).
 */
import t from 'tap';
import * as zmq from 'zeromq';
import { CommTimeoutError, ConfigError } from '../../../src/core/errors';
import { ringAllReduce } from '../../../src/dist/ring/allreduce';
import { clusterCurveKeys, validateCurveKeys, z85Encode } from '../../../src/dist/security/curve-auth';
import { ZmqRingTransport } from '../../../src/dist/ring/zmq-ring';
import { connectZmqRing, rankData, sameBits } from '../fixtures/ring';

t.test('z85 matches the RFC 32 test vector', async (t) => {
  t.equal(z85Encode(Uint8Array.of(0x86, 0x4f, 0xd2, 0x6f, 0xb5, 0x59, 0xf7, 0x5b)), 'HelloWorld');
  t.throws(() => z85Encode(new Uint8Array(3)), RangeError);
});

t.test('bad keys are a ConfigError', async (t) => {
  const keys = clusterCurveKeys();
  t.doesNotThrow(() => validateCurveKeys(keys));
  t.throws(() => validateCurveKeys({ ...keys, secretKey: 'short' }), ConfigError);
  t.throws(() => validateCurveKeys({ ...keys, allowedClientKeys: [] }), ConfigError);
});

t.test('a CURVE ring all-reduces', async (t) => {
  const ring = await connectZmqRing(3, 'tcp', { curve: clusterCurveKeys() });
  t.teardown(ring.close);
  const buffers = ring.transports.map((tr) => rankData(tr.rank, 10_001));
  await Promise.all(ring.transports.map((tr, r) => ringAllReduce(buffers[r], tr, r, 3)));
  t.ok(buffers.every((b) => sameBits(b, buffers[0])));
  t.not(buffers[0][5], rankData(0, 10)[5], 'values changed');
});

/** A CURVE-protected rank 1 whose rank 0 is somebody else; resolves with what recv() did. */
async function intruderResult(
  t: { teardown(fn: () => unknown): void },
  setupIntruder: (push: zmq.Push, victimKeys: ReturnType<typeof clusterCurveKeys>) => void,
): Promise<unknown> {
  const keys = clusterCurveKeys();
  const victim = await ZmqRingTransport.bind({
    rank: 1,
    worldSize: 2,
    bindAddress: 'tcp://127.0.0.1:*',
    curve: keys,
  });
  t.teardown(() => victim.close());
  const intruder = new zmq.Push({ linger: 0 });
  t.teardown(() => intruder.close());
  setupIntruder(intruder, keys);
  intruder.connect(victim.endpoint);
  // Anything at all: a forged hello, then gradients.
  const hello = Buffer.alloc(16);
  [0x52494e47, 1, 0, 2].forEach((w, i) => hello.writeUInt32LE(w, i * 4));
  await intruder.send(hello);
  await intruder.send(Buffer.from(new Float32Array(1000).fill(1e9).buffer));
  return victim.recv(500).catch((e: unknown) => e);
}

t.test('a keyless peer is refused: its data never arrives', async (t) => {
  const result = await intruderResult(t, () => undefined);
  t.type(result, CommTimeoutError, 'recv timed out instead of accepting data');
});

t.test('a peer that knows only the public key is refused by the ZAP allow-list', async (t) => {
  const result = await intruderResult(t, (push, victimKeys) => {
    const own = zmq.curveKeyPair();
    push.curveServerKey = victimKeys.publicKey; // the public key leaked, the secret did not
    push.curvePublicKey = own.publicKey;
    push.curveSecretKey = own.secretKey;
  });
  t.type(result, CommTimeoutError);
});

t.test('a peer claiming the cluster public key without its secret is refused', async (t) => {
  const result = await intruderResult(t, (push, victimKeys) => {
    push.curveServerKey = victimKeys.publicKey;
    push.curvePublicKey = victimKeys.publicKey;
    push.curveSecretKey = zmq.curveKeyPair().secretKey;
  });
  t.type(result, CommTimeoutError);
});

t.test('control: the same intruder code with the real keys gets through', async (t) => {
  const result = await intruderResult(t, (push, victimKeys) => {
    push.curveServerKey = victimKeys.publicKey;
    push.curvePublicKey = victimKeys.publicKey;
    push.curveSecretKey = victimKeys.secretKey;
  });
  t.type(result, Float32Array, 'so the refusals above are CURVE, not a broken test');
});
