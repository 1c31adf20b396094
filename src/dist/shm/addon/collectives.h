/**
 * The collectives on a control segment: barriers, the descriptor check, and the folds in the
 * ring's order. Included once, by shm_addon.cc.
 */
#pragma once
#include "segment.h"
#include "wire.h"

namespace shm {

// ---------------------------------------------------------------------------------------------
// Collectives on a control segment.

enum Op : uint32_t { ALL_REDUCE = 1, BROADCAST = 2, ALL_GATHER = 3, REDUCE_SCATTER = 4, BARRIER = 5 };
const char *opName(uint32_t op) {
  switch (op) {
    case ALL_REDUCE: return "allReduce";
    case BROADCAST: return "broadcast";
    case ALL_GATHER: return "allGather";
    case REDUCE_SCATTER: return "reduceScatter";
    default: return "barrier";
  }
}

/** What a rank is about to do; every rank compares all of them before touching a peer's memory. */
struct Descriptor {
  uint32_t op, dtype, root, zeroCopy;
  uint64_t length, offset, allocId, sizesHash;
  bool operator==(const Descriptor &o) const { return std::memcmp(this, &o, sizeof *this) == 0; }
};

struct RankBlock {
  uint32_t arrived;  // barriers this rank has passed into
  uint32_t sleepers;
  char pad[56];
  Descriptor descriptor;
};
static_assert(sizeof(RankBlock) <= RANK_BLOCK, "rank block");

struct Group {
  Mapping ctl;
  uint32_t rank;
  uint32_t n;
  int64_t timeoutMs;
  const char *what;
  RankBlock *block(uint32_t r) const { return reinterpret_cast<RankBlock *>(ctl.base + PAGE + r * RANK_BLOCK); }
  float *staging(uint32_t r) const { return reinterpret_cast<float *>(ctl.slot(r)); }
  size_t stagingElems() const { return ctl.slotBytes / 4; }

  /** Every rank has reached this point. A dead or hung peer: SHM_TIMEOUT naming it. */
  Header *header() const { return reinterpret_cast<Header *>(ctl.base); }

  /**
   * Another rank timed out: the barrier counts no longer match, so this rank stops too, at
   * once rather than after its own timeout, naming the rank that one waited for.
   */
  void throwIfBroken() const {
    const uint32_t by = __atomic_load_n(&header()->failedBy, __ATOMIC_ACQUIRE);
    if (by == 0) return;
    const uint32_t peer = header()->failedPeer;
    fail("SHM_TIMEOUT",
         "rank " + std::to_string(rank) + ": the shared-memory group is broken (" + what + "): rank " + std::to_string(by - 1) + " gave up waiting for rank " +
             std::to_string(peer) + ". Rank " + std::to_string(peer) + " is probably dead or hung: check its log and exit code.",
         static_cast<int>(peer));
  }

  /** Marks the group broken (first failure wins) and wakes every rank's waits. */
  void breakGroup(uint32_t peer) const {
    uint32_t none = 0;
    __atomic_store_n(&header()->failedPeer, peer, __ATOMIC_RELAXED);
    __atomic_compare_exchange_n(&header()->failedBy, &none, rank + 1, false, __ATOMIC_RELEASE, __ATOMIC_RELAXED);
    for (uint32_t p = 0; p < n; p++) futexWake(&block(p)->arrived);
  }

  /** Every rank has reached this point. A dead or hung peer: SHM_TIMEOUT naming it. */
  void barrier() const {
    throwIfBroken();
    RankBlock *mine = block(rank);
    const uint32_t target = __atomic_add_fetch(&mine->arrived, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&mine->sleepers, __ATOMIC_SEQ_CST) != 0) futexWake(&mine->arrived);
    const int64_t deadline = nowNs() + timeoutMs * 1000000;
    uint32_t *failedBy = &header()->failedBy;
    for (uint32_t p = 0; p < n; p++) {
      if (p == rank) continue;
      RankBlock *peer = block(p);
      const auto caughtUp = [&](uint32_t v) { return static_cast<int32_t>(v - target) >= 0; };
      const bool woken = waitWord(&peer->arrived, &peer->sleepers, deadline, [&](uint32_t v) { return caughtUp(v) || __atomic_load_n(failedBy, __ATOMIC_ACQUIRE) != 0; });
      if (woken && caughtUp(loadAcquire(&peer->arrived))) continue;
      if (woken) throwIfBroken();
      breakGroup(p);
      fail("SHM_TIMEOUT",
           "rank " + std::to_string(rank) + ": no progress from rank " + std::to_string(p) + " within " + std::to_string(timeoutMs) + " ms (shared-memory " + what +
               "). Rank " + std::to_string(p) + " is probably dead or hung: check its log and exit code.",
           static_cast<int>(p));
    }
  }

  /** Publishes `d`, passes a barrier, and checks that every rank published the same. */
  void agree(const Descriptor &d) const {
    block(rank)->descriptor = d;
    barrier();
    for (uint32_t p = 0; p < n; p++) {
      const Descriptor &o = block(p)->descriptor;
      if (o == d) continue;
      fail("SHM_PROTOCOL", "rank " + std::to_string(rank) + ": rank " + std::to_string(p) + " called " + opName(o.op) + " (" + std::to_string(o.length) +
                               " floats, wire dtype " + std::to_string(o.dtype) + ", in a segment: " + (o.zeroCopy ? "yes" : "no") + ") while this rank called " +
                               opName(d.op) + " (" + std::to_string(d.length) + " floats, wire dtype " + std::to_string(d.dtype) + ", in a segment: " +
                               (d.zeroCopy ? "yes" : "no") + "): every rank must call the same collectives in the same order on the same views");
    }
  }
};

/** Segment `s` of `length` elements split over `n` ranks: src/dist/ring/ring-schedule.ts's segmentRange. */
void segmentRange(uint64_t length, uint32_t n, uint32_t s, uint64_t *start, uint64_t *end) {
  const uint64_t base = length / n, extra = length % n;
  *start = s * base + std::min<uint64_t>(s, extra);
  *end = *start + base + (s < extra ? 1 : 0);
}

uint32_t segmentOf(uint64_t g, uint64_t length, uint32_t n) {
  const uint64_t base = length / n, extra = length % n;
  if (g < extra * (base + 1)) return static_cast<uint32_t>(g / (base + 1));
  return static_cast<uint32_t>(extra + (g - extra * (base + 1)) / base);
}

constexpr size_t BLOCK = 2048;

/**
 * acc = x[first]; then for each next rank acc = Q(acc) + x[rank]; finally Q(acc) if `roundLast`
 * (Q: what the wire delivers; nothing in fp32). The ring's hops, element by element. Written to
 * every pointer in `outs` at element i. `in[p]` and `outs` point at element 0 of the range.
 */
void fold(float *const *in, uint32_t n, uint32_t first, int dtype, bool roundLast, size_t count, float *const *outs, size_t nOuts) {
  alignas(64) float acc[BLOCK];
  for (size_t b = 0; b < count; b += BLOCK) {
    const size_t m = std::min(BLOCK, count - b);
    std::memcpy(acc, in[first] + b, m * 4);
    for (uint32_t k = 1; k < n; k++) {
      quantize(dtype, acc, m);
      const float *x = in[(first + k) % n] + b;
      for (size_t j = 0; j < m; j++) acc[j] += x[j];
    }
    if (roundLast) quantize(dtype, acc, m);
    for (size_t o = 0; o < nOuts; o++) std::memcpy(outs[o] + b, acc, m * 4);
  }
}

/**
 * All-reduce of one chunk that every rank holds at ptr[rank] (its slot or its staging): this
 * rank folds its share [lo, hi) and writes the sums into every rank's chunk. `chunkStart` and
 * `length` place the chunk in the whole buffer, whose segments decide each element's order.
 */
void allReduceChunk(const Group &g, float *const *ptr, uint64_t chunkStart, uint64_t chunkLen, uint64_t length, int dtype) {
  uint64_t lo, hi;
  segmentRange(chunkLen, g.n, g.rank, &lo, &hi);
  while (lo < hi) {
    const uint32_t s = segmentOf(chunkStart + lo, length, g.n);
    uint64_t segStart, segEnd;
    segmentRange(length, g.n, s, &segStart, &segEnd);
    const uint64_t end = std::min<uint64_t>(hi, segEnd - chunkStart);
    float *in[64], *outs[64];
    for (uint32_t p = 0; p < g.n; p++) in[p] = outs[p] = ptr[p] + lo;
    fold(in, g.n, s, dtype, true, end - lo, outs, g.n);
    lo = end;
  }
}

/** Where `values` sits in an allocation of this group (zero-copy), or false: staging. */
bool inAllocation(const Group &g, const float *values, uint64_t length, Mapping *alloc, uint64_t *offset) {
  if (!findMapping(values, length * 4, alloc) || alloc->kind != ALLOCATION || alloc->worldSize != g.n) return false;
  const char *mine = alloc->slot(g.rank);
  const char *p = reinterpret_cast<const char *>(values);
  if (p < mine || p + length * 4 > mine + alloc->slotBytes) return false;
  *offset = static_cast<uint64_t>(p - mine);
  return true;
}

/*
 * Every collective ends with a barrier after its last access to a peer's memory. So between
 * collectives no rank touches another's slots or staging, and a rank may fill its own staging
 * (or its slot: backward's copy-out) before the first barrier of the next one.
 */

void allReduce(const Group &g, float *values, uint64_t length, int dtype) {
  Mapping alloc{};
  uint64_t offset = 0;
  const bool zeroCopy = inAllocation(g, values, length, &alloc, &offset);
  const Descriptor d{ALL_REDUCE, static_cast<uint32_t>(dtype), 0, zeroCopy, length, offset, zeroCopy ? alloc.id : 0, 0};
  float *ptr[64];
  if (zeroCopy) {
    for (uint32_t p = 0; p < g.n; p++) ptr[p] = reinterpret_cast<float *>(alloc.slot(p) + offset);
    g.agree(d);
    allReduceChunk(g, ptr, 0, length, length, dtype);
    g.barrier();
    return;
  }
  for (uint32_t p = 0; p < g.n; p++) ptr[p] = g.staging(p);
  const size_t chunk = g.stagingElems();
  for (uint64_t start = 0; start == 0 || start < length; start += chunk) {
    const uint64_t len = std::min<uint64_t>(chunk, length - start);
    std::memcpy(g.staging(g.rank), values + start, len * 4);
    if (start == 0) g.agree(d);
    else g.barrier();
    allReduceChunk(g, ptr, start, len, length, dtype);
    g.barrier();
    std::memcpy(values + start, g.staging(g.rank), len * 4);
  }
}

/** Non-roots get the root's values as the wire delivers them; the root keeps its own. */
void broadcast(const Group &g, float *values, uint64_t length, uint32_t root, int dtype) {
  Mapping alloc{};
  uint64_t offset = 0;
  const bool zeroCopy = inAllocation(g, values, length, &alloc, &offset);
  const Descriptor d{BROADCAST, static_cast<uint32_t>(dtype), root, zeroCopy, length, offset, zeroCopy ? alloc.id : 0, 0};
  if (zeroCopy) {
    g.agree(d);
    if (g.rank != root) {
      std::memcpy(values, alloc.slot(root) + offset, length * 4);
      quantize(dtype, values, length);
    }
    g.barrier();  // then the root may write its buffer again
    return;
  }
  const size_t chunk = g.stagingElems();
  for (uint64_t start = 0; start == 0 || start < length; start += chunk) {
    const uint64_t len = std::min<uint64_t>(chunk, length - start);
    if (g.rank == root) std::memcpy(g.staging(root), values + start, len * 4);
    if (start == 0) g.agree(d);
    else g.barrier();
    if (g.rank != root) {
      std::memcpy(values + start, g.staging(root), len * 4);
      quantize(dtype, values + start, len);
    }
    g.barrier();
  }
}

uint64_t hashSizes(const uint32_t *sizes, uint32_t n) {
  uint64_t h = 1469598103934665603ull;
  for (uint32_t i = 0; i < n; i++) h = (h ^ sizes[i]) * 1099511628211ull;
  return h;
}

/** out = every rank's `local` in rank order, each as the wire delivers it (ringAllGather). */
void allGather(const Group &g, const float *local, const uint32_t *sizes, float *out, int dtype) {
  uint64_t total = 0, longest = 0, starts[64];
  for (uint32_t p = 0; p < g.n; p++) starts[p] = total, total += sizes[p], longest = std::max<uint64_t>(longest, sizes[p]);
  const Descriptor d{ALL_GATHER, static_cast<uint32_t>(dtype), 0, 0, total, 0, 0, hashSizes(sizes, g.n)};
  const size_t chunk = g.stagingElems();
  for (uint64_t start = 0; start == 0 || start < longest; start += chunk) {
    if (start < sizes[g.rank]) {
      const uint64_t len = std::min<uint64_t>(chunk, sizes[g.rank] - start);
      std::memcpy(g.staging(g.rank), local + start, len * 4);
      quantize(dtype, g.staging(g.rank), len);
    }
    if (start == 0) g.agree(d);
    else g.barrier();
    for (uint32_t p = 0; p < g.n; p++) {
      if (start < sizes[p]) std::memcpy(out + starts[p] + start, g.staging(p), std::min<uint64_t>(chunk, sizes[p] - start) * 4);
    }
    g.barrier();
  }
}

/**
 * This rank's segment of the sum of every rank's `values`: the ring starts segment s at rank
 * s+1 and ends it at rank s, rounding each hop but not the last (ringReduceScatter).
 */
void reduceScatter(const Group &g, const float *values, const uint32_t *sizes, float *out, int dtype) {
  uint64_t total = 0, own = 0;
  for (uint32_t p = 0; p < g.n; p++) {
    if (p == g.rank) own = total;
    total += sizes[p];
  }
  const uint64_t ownEnd = own + sizes[g.rank];
  const Descriptor d{REDUCE_SCATTER, static_cast<uint32_t>(dtype), 0, 0, total, 0, 0, hashSizes(sizes, g.n)};
  const size_t chunk = g.stagingElems();
  for (uint64_t start = 0; start == 0 || start < total; start += chunk) {
    const uint64_t len = std::min<uint64_t>(chunk, total - start);
    std::memcpy(g.staging(g.rank), values + start, len * 4);
    if (start == 0) g.agree(d);
    else g.barrier();
    const uint64_t lo = std::max(own, start), hi = std::min(ownEnd, start + len);
    if (lo < hi) {
      float *in[64];
      for (uint32_t p = 0; p < g.n; p++) in[p] = g.staging(p) + (lo - start);
      float *dst = out + (lo - own);
      fold(in, g.n, (g.rank + 1) % g.n, dtype, false, hi - lo, &dst, 1);
    }
    g.barrier();
  }
}

}  // namespace shm
