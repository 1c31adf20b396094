/**
 * The hybrid mode's collectives (all-gather, reduce-scatter over segments of any size) and the
 * 16-bit wire formats, on the in-memory ring with its zero-copy hazard checker on.
 */
import t from 'tap';
import { ConfigError, ProtocolError } from '../../../src/core/errors';
import { ringAllGather, ringAllReduce, ringReduceScatter, segmentsOfSizes } from '../../../src/dist/ring/allreduce';
import { createInMemoryRing, type RingTransport } from '../../../src/dist/ring/transport';
import { shmAddonPath, shmUnavailableReason } from '../../../src/dist/shm/addon';
import {
  WireCodecTransport,
  decodeWire,
  encodeWire,
  useWireKernels,
  fp16ToNumber,
  fp32BitsToBf16,
  fp32BitsToFp16,
  quantizeInPlace,
  roundTrip,
  type WireDtype,
} from '../../../src/dist/ring/wire-codec';

/** Deterministic, distinct values per rank (no two ranks share a value). */
function values(rank: number, length: number): Float32Array {
  return Float32Array.from({ length }, (_, i) => Math.fround(Math.sin(rank * 7919 + i * 0.37) * 3 + rank));
}

function codecRing(n: number, dtype: WireDtype): WireCodecTransport[] {
  return createInMemoryRing(n, { maxDelayMs: 1 }).map((tr) => new WireCodecTransport(tr, dtype));
}

const SIZE_CASES: number[][] = [[5], [3, 0], [0, 4], [2, 3, 4], [1000, 0, 17], [4, 4, 4, 4], [0, 0, 0]];

t.test('all-gather: every rank gets every segment in rank order', async (t) => {
  for (const sizes of SIZE_CASES) {
    for (const chunkBytes of [4, 64, 1 << 20]) {
      const ring = createInMemoryRing(sizes.length, { maxDelayMs: 1 });
      const locals = sizes.map((size, r) => values(r, size));
      const outs = await Promise.all(ring.map((tr) => ringAllGather(locals[tr.rank], sizes, tr, { chunkBytes })));
      const expected = Float32Array.from(locals.flatMap((l) => [...l]));
      for (const out of outs) t.same([...out], [...expected], `sizes ${sizes} chunk ${chunkBytes}`);
    }
  }
});

t.test('reduce-scatter: each rank gets its segment of the sum', async (t) => {
  for (const sizes of SIZE_CASES) {
    const total = sizes.reduce((a, b) => a + b, 0);
    const ring = createInMemoryRing(sizes.length, { maxDelayMs: 1 });
    const inputs = sizes.map((_, r) => values(r, total));
    const before = inputs.map((b) => b.slice());
    const outs = await Promise.all(ring.map((tr) => ringReduceScatter(inputs[tr.rank], sizes, tr, { chunkBytes: 64 })));
    const segments = segmentsOfSizes(sizes);
    outs.forEach((out, r) => {
      t.equal(out.length, sizes[r], `sizes ${sizes}: rank ${r}'s length`);
      for (let i = 0; i < out.length; i++) {
        const exact = inputs.reduce((sum, b) => sum + b[segments[r].start + i], 0);
        if (Math.abs(out[i] - exact) > 1e-5 * (1 + Math.abs(exact)))
          t.fail(`sizes ${sizes}: rank ${r} value ${i}: ${out[i]} vs ${exact}`);
      }
    });
    inputs.forEach((b, r) => t.same([...b], [...before[r]], `sizes ${sizes}: rank ${r}'s input untouched`));
  }
});

t.test('reduce-scatter then all-gather is the all-reduce', async (t) => {
  const sizes = [301, 300, 300];
  const total = 901;
  const ring = createInMemoryRing(3);
  const inputs = sizes.map((_, r) => values(r, total));
  const scattered = await Promise.all(ring.map((tr) => ringReduceScatter(inputs[tr.rank], sizes, tr)));
  const gathered = await Promise.all(ring.map((tr) => ringAllGather(scattered[tr.rank], sizes, tr)));
  const ring2 = createInMemoryRing(3);
  const reduced = inputs.map((b) => b.slice());
  await Promise.all(ring2.map((tr) => ringAllReduce(reduced[tr.rank], tr, tr.rank, 3)));
  for (let i = 0; i < total; i++) {
    if (Math.abs(gathered[0][i] - reduced[0][i]) > 1e-5 * (1 + Math.abs(reduced[0][i]))) t.fail(`value ${i}`);
  }
  t.same([...gathered[1]], [...gathered[0]], 'ranks agree');
  t.same([...gathered[2]], [...gathered[0]], 'ranks agree');
});

t.test('mismatched sizes are a clear error', async (t) => {
  const [tr] = createInMemoryRing(1);
  await t.rejects(ringAllGather(new Float32Array(3), [2], tr), ConfigError);
  await t.rejects(ringReduceScatter(new Float32Array(3), [2, 1], tr), ConfigError);
});

t.test('fp16 conversion: every half value round-trips; rounding ties go to even', async (t) => {
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  let bad = 0;
  for (let h = 0; h < 65536; h++) {
    const v = fp16ToNumber(h);
    if (Number.isNaN(v)) continue;
    f[0] = v;
    if (fp32BitsToFp16(u[0]) !== h) bad++;
  }
  t.equal(bad, 0, 'all non-NaN halves survive fp32 -> fp16');
  t.equal(roundTrip('fp16', 65504), 65504, 'largest finite half');
  t.equal(roundTrip('fp16', 65520), Infinity, 'halfway past the largest finite rounds to Inf');
  t.equal(roundTrip('fp16', 1 + 2 ** -11), 1, 'tie rounds to even (down)');
  t.equal(roundTrip('fp16', 1 + 3 * 2 ** -11), 1 + 2 ** -9, 'tie rounds to even (up)');
  t.equal(roundTrip('fp16', 2 ** -24), 2 ** -24, 'smallest subnormal');
  t.equal(roundTrip('fp16', 2 ** -25), 0, 'half the smallest subnormal ties to zero');
  t.equal(roundTrip('fp16', 1.5 * 2 ** -25), 2 ** -24, 'above the tie rounds up to the subnormal');
  t.ok(Number.isNaN(roundTrip('fp16', NaN)), 'NaN stays NaN');
  t.equal(roundTrip('fp16', -Infinity), -Infinity);
  t.equal(Object.is(roundTrip('fp16', -0), -0), true, 'signed zero');
});

t.test('fp16 fast path equals the reference conversion on random bit patterns', async (t) => {
  const n = 200_000;
  const src = new Float32Array(n);
  const bits = new Uint32Array(src.buffer);
  let seed = 12345;
  for (let i = 0; i < n; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    // Exponents around fp16's range, so both paths and the boundaries are hit.
    bits[i] = (seed & 0x807fffff) | ((100 + (seed % 50)) << 23);
  }
  const q = src.slice();
  quantizeInPlace('fp16', q);
  let bad = 0;
  for (let i = 0; i < n; i++) if (!Object.is(q[i], fp16ToNumber(fp32BitsToFp16(bits[i])))) bad++;
  t.equal(bad, 0);
});

t.test('bf16 conversion: round to nearest even, NaN stays NaN', async (t) => {
  t.equal(roundTrip('bf16', 1 + 2 ** -8), 1, 'tie to even (down)');
  t.equal(roundTrip('bf16', 1 + 3 * 2 ** -8), 1 + 2 ** -6, 'tie to even (up)');
  t.ok(Math.abs(roundTrip('bf16', 3e38) / 3e38 - 1) <= 2 ** -9, 'fp32 range kept (3e38 within half an ulp)');
  t.ok(Number.isNaN(roundTrip('bf16', NaN)));
  t.equal(fp32BitsToBf16(0x7f7fffff), 0x7f80, 'rounding the largest float overflows to Inf');
});

t.test('16-bit wire: sums in fp32, identical bits on every rank, half the bytes', async (t) => {
  for (const dtype of ['fp16', 'bf16'] as const) {
    for (const n of [2, 3]) {
      const length = 5003;
      const ring = codecRing(n, dtype);
      const inputs = ring.map((tr) => values(tr.rank, length));
      const exact = Float64Array.from({ length }, (_, i) => inputs.reduce((s, b) => s + b[i], 0));
      const reduced = inputs.map((b) => b.slice());
      await Promise.all(ring.map((tr) => ringAllReduce(reduced[tr.rank], tr, tr.rank, n, { chunkBytes: 4096 })));
      for (const r of reduced.slice(1)) t.same([...r], [...reduced[0]], `${dtype} n=${n}: ranks identical`);
      // Each hop rounds once: error within (n) half-ulps of the 16-bit format, relative to the magnitudes.
      const ulp = dtype === 'fp16' ? 2 ** -11 : 2 ** -8;
      let worst = 0;
      for (let i = 0; i < length; i++) {
        const scale = inputs.reduce((s, b) => s + Math.abs(b[i]), 0);
        worst = Math.max(worst, Math.abs(reduced[0][i] - exact[i]) / scale);
      }
      t.ok(worst <= n * ulp, `${dtype} n=${n}: worst relative error ${worst.toExponential(2)} <= ${n} ulps`);
      const sent = ring[0].bytesSent;
      const fp32Bytes = ((2 * (n - 1)) / n) * length * 4;
      t.ok(
        sent < 0.52 * fp32Bytes && sent > 0.45 * fp32Bytes,
        `${dtype} n=${n}: ${sent} bytes vs ${fp32Bytes} in fp32`,
      );
    }
  }
});

t.test('all-gather on a 16-bit wire: the owner keeps the rounded values too', async (t) => {
  const sizes = [100, 50];
  const ring = codecRing(2, 'fp16');
  const locals = sizes.map((s, r) => values(r, s));
  const outs = await Promise.all(ring.map((tr) => ringAllGather(locals[tr.rank], sizes, tr)));
  t.same([...outs[0]], [...outs[1]], 'identical on both ranks');
  t.not(outs[0][1], locals[0][1], 'values were rounded');
});

t.test('a rank on another wire dtype is a clear error, not garbage', async (t) => {
  const [a, b] = createInMemoryRing(2);
  const ring: RingTransport[] = [new WireCodecTransport(a, 'fp32'), new WireCodecTransport(b, 'fp16')];
  const results = await Promise.allSettled(
    ring.map((tr) => ringAllReduce(values(tr.rank, 64), tr, tr.rank, 2, { timeoutMs: 500 })),
  );
  t.ok(
    results.some((r) => r.status === 'rejected' && r.reason instanceof ProtocolError),
    'ProtocolError',
  );
});

// The native conversions come from the shared-memory addon (g++ only); test/dist/shm/wire-kernels.test.ts
// holds them to the JS loops on edge values.
const shmUnavailable = shmUnavailableReason();

t.test(
  'the native wire kernels equal the JS loops bit for bit on random values',
  { skip: shmUnavailable ?? false },
  async (t) => {
    const n = 1 << 21;
    const src = new Float32Array(n);
    const bits = new Uint32Array(src.buffer);
    let seed = 99;
    for (let i = 0; i < n; i++) {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      // Half the values at fp16's exponents (normal, subnormal, overflow), half anywhere (NaN, Inf too).
      bits[i] = i % 2 === 0 ? (seed & 0x807fffff) | ((95 + (seed % 60)) << 23) : seed;
    }
    const halves = Uint16Array.from({ length: 65536 }, (_, h) => h);
    for (const dtype of ['fp16', 'bf16'] as const) {
      const js = new Uint16Array(n);
      t.match(useWireKernels(null), /^js/);
      const tJs = performance.now();
      encodeWire(dtype, src, js);
      const jsMs = performance.now() - tJs;
      const jsDecoded = new Float32Array(65536);
      decodeWire(dtype, halves, jsDecoded);
      t.equal(useWireKernels(shmAddonPath()), 'native');
      const native = new Uint16Array(n);
      const tNative = performance.now();
      encodeWire(dtype, src, native);
      const nativeMs = performance.now() - tNative;
      const nativeDecoded = new Float32Array(65536);
      decodeWire(dtype, halves, nativeDecoded);
      useWireKernels(null);
      let bad = 0;
      for (let i = 0; i < n; i++) if (js[i] !== native[i]) bad++;
      t.equal(bad, 0, `${dtype} encode: the same bits`);
      const u = (a: Float32Array) => new Uint32Array(a.buffer);
      let badDecode = 0;
      for (let h = 0; h < 65536; h++) if (u(jsDecoded)[h] !== u(nativeDecoded)[h]) badDecode++;
      t.equal(badDecode, 0, `${dtype} decode: every 16-bit pattern the same`);
      t.comment(`${dtype} encode of ${n} values: JS ${jsMs.toFixed(1)} ms, native ${nativeMs.toFixed(1)} ms`);
    }
  },
);
