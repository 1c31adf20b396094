/**
 * The shared-memory data plane of ranks on one host (typed in src/dist/shm/addon.ts, used by
 * shm-group.ts), and the 16-bit wire conversions. Needs only g++ and Node's headers: no oneDNN.
 * This file holds the JS bindings; segment.h, wire.h and collectives.h the rest.
 *
 * Segments: POSIX shm objects (/dev/shm), created O_CREAT|O_EXCL mode 0600 by rank 0 and
 * unlinked by the last rank to attach, so none outlives the run even under SIGKILL. Each holds
 * a header page, then (control segment only) one block of sync words per rank, then one slot
 * per rank. JS sees a segment as a real SharedArrayBuffer over the mapping (posted to worker
 * threads like any other; munmap once every isolate dropped it).
 *
 * Synchronisation: each rank counts the barriers it passed in its own 32-bit word; a barrier
 * waits until every peer's count caught up, spinning briefly, then FUTEX_WAIT (shared, not
 * private: the word is in another process's mapping too). Atomics.wait cannot do this: V8
 * emulates futexes per process.
 *
 * Sums: each element is folded in the ring's order (src/dist/ring/allreduce.ts), including where
 * the ring rounds to the wire dtype, so results are bit-identical to the ZeroMQ ring.
 */
#include <node.h>

#include <memory>
#include <string>

#include "collectives.h"
#include "segment.h"
#include "wire.h"

namespace {

using namespace shm;  // the addon is one translation unit: shm_addon.cc and its headers
using v8::Exception;
using v8::FunctionCallbackInfo;
using v8::Isolate;
using v8::Local;
using v8::Object;
using v8::String;
using v8::Value;

// ---------------------------------------------------------------------------------------------
// JS bindings.

class Args {
 public:
  explicit Args(const FunctionCallbackInfo<Value> &info) : info_(info), isolate_(info.GetIsolate()) {}

  void need(int count) const {
    if (info_.Length() < count) fail("SHM_CONFIG", "expected " + std::to_string(count) + " arguments, got " + std::to_string(info_.Length()));
  }
  double number(int i, const char *name) const {
    if (!info_[i]->IsNumber()) fail("SHM_CONFIG", std::string(name) + " must be a number");
    return info_[i].As<v8::Number>()->Value();
  }
  uint32_t uint(int i, const char *name) const {
    const double v = number(i, name);
    if (!(v >= 0 && v <= 4294967295.0) || v != static_cast<double>(static_cast<uint64_t>(v))) fail("SHM_CONFIG", std::string(name) + " must be a whole number");
    return static_cast<uint32_t>(v);
  }
  std::string string(int i, const char *name) const {
    if (!info_[i]->IsString()) fail("SHM_CONFIG", std::string(name) + " must be a string");
    String::Utf8Value s(isolate_, info_[i]);
    return std::string(*s, s.length());
  }
  template <typename T>
  T *typed(int i, const char *name, bool ok, size_t *length) const {
    if (!ok) fail("SHM_CONFIG", std::string(name) + " has the wrong type");
    Local<v8::TypedArray> a = info_[i].As<v8::TypedArray>();
    *length = a->Length();
    return reinterpret_cast<T *>(static_cast<char *>(a->Buffer()->GetBackingStore()->Data()) + a->ByteOffset());
  }
  float *floats(int i, const char *name, size_t *length) const { return typed<float>(i, name, info_[i]->IsFloat32Array(), length); }
  uint16_t *halves(int i, const char *name, size_t *length) const { return typed<uint16_t>(i, name, info_[i]->IsUint16Array(), length); }
  int32_t *ints(int i, const char *name, size_t *length) const { return typed<int32_t>(i, name, info_[i]->IsInt32Array(), length); }
  uint32_t *uints(int i, const char *name, size_t *length) const { return typed<uint32_t>(i, name, info_[i]->IsUint32Array(), length); }
  void *shared(int i, size_t *bytes) const {
    if (!info_[i]->IsSharedArrayBuffer()) fail("SHM_CONFIG", "expected the group's control SharedArrayBuffer");
    auto store = info_[i].As<v8::SharedArrayBuffer>()->GetBackingStore();
    *bytes = store->ByteLength();
    return store->Data();
  }

 private:
  const FunctionCallbackInfo<Value> &info_;
  Isolate *isolate_;
};

using Body = void (*)(const FunctionCallbackInfo<Value> &, const Args &);

template <Body body>
void guarded(const FunctionCallbackInfo<Value> &info) {
  Isolate *isolate = info.GetIsolate();
  try {
    body(info, Args(info));
  } catch (const ShmError &e) {
    Local<v8::Context> context = isolate->GetCurrentContext();
    Local<Object> error = Exception::Error(String::NewFromUtf8(isolate, e.message.c_str()).ToLocalChecked()).As<Object>();
    error->Set(context, String::NewFromUtf8Literal(isolate, "code"), String::NewFromUtf8(isolate, e.code.c_str()).ToLocalChecked()).FromMaybe(false);
    if (e.peer >= 0) error->Set(context, String::NewFromUtf8Literal(isolate, "peer"), v8::Integer::New(isolate, e.peer)).FromMaybe(false);
    isolate->ThrowException(error);
  } catch (const std::exception &e) {
    isolate->ThrowException(Exception::Error(String::NewFromUtf8(isolate, e.what()).ToLocalChecked()));
  }
}

Local<v8::SharedArrayBuffer> toShared(Isolate *isolate, const Mapping &m) {
  {
    std::lock_guard<std::mutex> lock(registryMutex);
    registry.push_back(m);
  }
  std::shared_ptr<v8::BackingStore> store = v8::SharedArrayBuffer::NewBackingStore(m.base, m.bytes, unmapDeleter, nullptr);
  return v8::SharedArrayBuffer::New(isolate, std::move(store));
}

Group groupOf(const Args &a, int ctlArg, int rankArg, int timeoutArg, const char *what) {
  size_t bytes;
  const void *base = a.shared(ctlArg, &bytes);
  Group g{};
  if (!findMapping(base, bytes, &g.ctl) || g.ctl.kind != CONTROL) fail("SHM_CONFIG", "not a control segment of this process");
  g.rank = a.uint(rankArg, "rank");
  g.n = g.ctl.worldSize;
  if (g.rank >= g.n || g.n > 64) fail("SHM_CONFIG", "bad rank or world size");
  g.timeoutMs = static_cast<int64_t>(a.number(timeoutArg, "timeoutMs"));
  g.what = what;
  return g;
}

int dtypeArg(const Args &a, int i) {
  const uint32_t d = a.uint(i, "dtype");
  if (d > BF16) fail("SHM_CONFIG", "dtype must be 0 (fp32), 1 (fp16) or 2 (bf16)");
  return static_cast<int>(d);
}

/** create(name, version, worldSize, kind, slotBytes, timeoutMs): rank 0; returns once all attached. */
void jsCreate(const FunctionCallbackInfo<Value> &info, const Args &a) {
  a.need(6);
  const std::string name = a.string(0, "name");
  const uint32_t n = a.uint(2, "worldSize");
  if (n < 1 || n > 64) fail("SHM_CONFIG", "worldSize must be 1..64");
  const Mapping m = createSegment(name, a.uint(1, "version"), n, a.uint(3, "kind"), static_cast<uint64_t>(a.number(4, "slotBytes")));
  Local<v8::SharedArrayBuffer> sab = toShared(info.GetIsolate(), m);  // unmapped by GC even if the wait fails
  waitAttached(m, name, static_cast<int64_t>(a.number(5, "timeoutMs")));
  info.GetReturnValue().Set(sab);
}

/** attach(name, version, worldSize, kind, slotBytes, rank, timeoutMs). */
void jsAttach(const FunctionCallbackInfo<Value> &info, const Args &a) {
  a.need(7);
  const uint32_t n = a.uint(2, "worldSize");
  if (n < 1 || n > 64) fail("SHM_CONFIG", "worldSize must be 1..64");
  const Mapping m = attachSegment(a.string(0, "name"), a.uint(1, "version"), n, a.uint(3, "kind"), static_cast<uint64_t>(a.number(4, "slotBytes")), a.uint(5, "rank"),
                                  static_cast<int64_t>(a.number(6, "timeoutMs")));
  info.GetReturnValue().Set(toShared(info.GetIsolate(), m));
}

/** slotOffset(sab, rank): byte offset of `rank`'s slot in a segment's SharedArrayBuffer. */
void jsSlotOffset(const FunctionCallbackInfo<Value> &info, const Args &a) {
  a.need(2);
  size_t bytes;
  const void *base = a.shared(0, &bytes);
  Mapping m;
  if (!findMapping(base, bytes, &m)) fail("SHM_CONFIG", "not a segment of this process");
  const uint32_t rank = a.uint(1, "rank");
  if (rank >= m.worldSize) fail("SHM_CONFIG", "rank out of range");
  info.GetReturnValue().Set(static_cast<double>(m.slot(rank) - m.base));
}

/** allReduce(ctl, rank, values, dtype, timeoutMs). */
void jsAllReduce(const FunctionCallbackInfo<Value> &, const Args &a) {
  a.need(5);
  const Group g = groupOf(a, 0, 1, 4, "allReduce");
  size_t length;
  float *values = a.floats(2, "values", &length);
  if (g.n > 1) allReduce(g, values, length, dtypeArg(a, 3));
}

/** broadcast(ctl, rank, values, root, dtype, timeoutMs). */
void jsBroadcast(const FunctionCallbackInfo<Value> &, const Args &a) {
  a.need(6);
  const Group g = groupOf(a, 0, 1, 5, "broadcast");
  size_t length;
  float *values = a.floats(2, "values", &length);
  const uint32_t root = a.uint(3, "root");
  if (root >= g.n) fail("SHM_CONFIG", "broadcast root must be a rank in [0, " + std::to_string(g.n) + "), got " + std::to_string(root));
  if (g.n > 1) broadcast(g, values, length, root, dtypeArg(a, 4));
}

/** allGather(ctl, rank, local, sizes: Uint32Array, out, dtype, timeoutMs). */
void jsAllGather(const FunctionCallbackInfo<Value> &, const Args &a) {
  a.need(7);
  const Group g = groupOf(a, 0, 1, 6, "allGather");
  size_t localLength, count, outLength;
  const float *local = a.floats(2, "local", &localLength);
  const uint32_t *sizes = a.uints(3, "sizes", &count);
  float *out = a.floats(4, "out", &outLength);
  uint64_t total = 0;
  for (size_t i = 0; i < count; i++) total += sizes[i];
  if (count != g.n || localLength != sizes[g.rank] || outLength != total) fail("SHM_CONFIG", "allGather: sizes, local and out do not agree");
  allGather(g, local, sizes, out, dtypeArg(a, 5));
}

/** reduceScatter(ctl, rank, values, sizes: Uint32Array, out, dtype, timeoutMs). */
void jsReduceScatter(const FunctionCallbackInfo<Value> &, const Args &a) {
  a.need(7);
  const Group g = groupOf(a, 0, 1, 6, "reduceScatter");
  size_t length, count, outLength;
  const float *values = a.floats(2, "values", &length);
  const uint32_t *sizes = a.uints(3, "sizes", &count);
  float *out = a.floats(4, "out", &outLength);
  uint64_t total = 0;
  for (size_t i = 0; i < count; i++) total += sizes[i];
  if (count != g.n || length != total || outLength != sizes[g.rank]) fail("SHM_CONFIG", "reduceScatter: sizes, values and out do not agree");
  reduceScatter(g, values, sizes, out, dtypeArg(a, 5));
}

/** barrier(ctl, rank, timeoutMs). */
void jsBarrier(const FunctionCallbackInfo<Value> &, const Args &a) {
  a.need(3);
  const Group g = groupOf(a, 0, 1, 2, "barrier");
  g.agree({BARRIER, 0, 0, 0, 0, 0, 0, 0});
  g.barrier();
}

/** abort(): makes every blocked and later wait of this process throw (SHM_ABORTED). */
void jsAbort(const FunctionCallbackInfo<Value> &, const Args &) { __atomic_store_n(&aborted, true, __ATOMIC_RELAXED); }

/** wireEncode(kind: Int32Array [0 fp16 | 1 bf16], src: Float32Array, dst: Uint16Array): wire-codec.ts's WireKernels. */
void jsWireEncode(const FunctionCallbackInfo<Value> &, const Args &a) {
  a.need(3);
  size_t k, n, m;
  const int32_t *kind = a.ints(0, "kind", &k);
  const float *src = a.floats(1, "src", &n);
  uint16_t *dst = a.halves(2, "dst", &m);
  if (k < 1 || n != m) fail("SHM_CONFIG", "wireEncode: src and dst lengths differ");
  encode(kind[0] == 0 ? FP16 : BF16, src, dst, n);
}

void jsWireDecode(const FunctionCallbackInfo<Value> &, const Args &a) {
  a.need(3);
  size_t k, n, m;
  const int32_t *kind = a.ints(0, "kind", &k);
  const uint16_t *src = a.halves(1, "src", &n);
  float *dst = a.floats(2, "dst", &m);
  if (k < 1 || n != m) fail("SHM_CONFIG", "wireDecode: src and dst lengths differ");
  decode(kind[0] == 0 ? FP16 : BF16, src, dst, n);
}

}  // namespace

// Context-aware: the comm thread (a worker_thread) loads it too.
NODE_MODULE_INIT(/* exports, module, context */) {
  NODE_SET_METHOD(exports, "create", guarded<jsCreate>);
  NODE_SET_METHOD(exports, "attach", guarded<jsAttach>);
  NODE_SET_METHOD(exports, "slotOffset", guarded<jsSlotOffset>);
  NODE_SET_METHOD(exports, "allReduce", guarded<jsAllReduce>);
  NODE_SET_METHOD(exports, "broadcast", guarded<jsBroadcast>);
  NODE_SET_METHOD(exports, "allGather", guarded<jsAllGather>);
  NODE_SET_METHOD(exports, "reduceScatter", guarded<jsReduceScatter>);
  NODE_SET_METHOD(exports, "barrier", guarded<jsBarrier>);
  NODE_SET_METHOD(exports, "abort", guarded<jsAbort>);
  NODE_SET_METHOD(exports, "wireEncode", guarded<jsWireEncode>);
  NODE_SET_METHOD(exports, "wireDecode", guarded<jsWireDecode>);
}
