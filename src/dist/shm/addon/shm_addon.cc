/**
 * The shared-memory data plane of ranks on one host (src/dist/shm/shm-group.ts is its only
 * caller), and the 16-bit wire conversions. Needs only g++ and Node's headers: no oneDNN.
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
 * Sums: each element is folded in the ring's order (src/parallel/allreduce.ts), including where
 * the ring rounds to the wire dtype, so results are bit-identical to the ZeroMQ ring.
 */
#include <errno.h>
#include <fcntl.h>
#include <immintrin.h>
#include <linux/futex.h>
#include <node.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace {

using v8::Exception;
using v8::FunctionCallbackInfo;
using v8::Isolate;
using v8::Local;
using v8::Object;
using v8::String;
using v8::Value;

// ---------------------------------------------------------------------------------------------
// Errors: thrown as C++ exceptions inside, a JS Error with a `code` (SHM_TIMEOUT, SHM_PROTOCOL,
// SHM_CONFIG, SHM_ACCESS, SHM_SYS) and, for timeouts, the `peer` rank at the boundary.

struct ShmError {
  std::string code;
  std::string message;
  int peer;
};

[[noreturn]] void fail(const char *code, const std::string &message, int peer = -1) { throw ShmError{code, message, peer}; }

[[noreturn]] void failSys(const std::string &what) { fail(errno == EACCES || errno == EPERM ? "SHM_ACCESS" : "SHM_SYS", what + ": " + strerror(errno)); }

// ---------------------------------------------------------------------------------------------
// Segment geometry, shared by creator and attachers.

constexpr uint64_t MAGIC = 0x314d48535458454cull;  // "LEXTSHM1"
constexpr size_t PAGE = 4096;
constexpr size_t RANK_BLOCK = 256;  // sync words and descriptor of one rank, cache-line apart
enum Kind : uint32_t { CONTROL = 1, ALLOCATION = 2 };

struct Header {
  uint64_t magic;
  uint32_t version;
  uint32_t worldSize;
  uint64_t slotBytes;
  uint64_t id;  // random: tells allocations apart in descriptors
  uint32_t kind;
  uint32_t ready;     // 1 once the creator wrote the rest (release)
  uint32_t attached;  // ranks mapped; the one that makes it worldSize unlinks the name
  uint32_t rejected;  // rank + 1 of an attacher whose expectations differ
  uint32_t failedBy;  // control: rank + 1 of the first rank that timed out; then the group is broken
  uint32_t failedPeer;  // the rank it waited for
};

size_t roundUp(size_t n, size_t to) { return (n + to - 1) / to * to; }
size_t rankBlocksBytes(uint32_t kind, uint32_t n) { return kind == CONTROL ? roundUp(n * RANK_BLOCK, PAGE) : 0; }
size_t slotStride(uint64_t slotBytes) { return roundUp(std::max<uint64_t>(slotBytes, 64), PAGE); }
size_t totalBytes(uint32_t kind, uint32_t n, uint64_t slotBytes) { return PAGE + rankBlocksBytes(kind, n) + n * slotStride(slotBytes); }

struct Mapping {
  char *base;
  size_t bytes;
  uint32_t worldSize;
  uint32_t kind;
  uint64_t slotBytes;
  uint64_t id;
  char *slot(uint32_t rank) const { return base + PAGE + rankBlocksBytes(kind, worldSize) + rank * slotStride(slotBytes); }
};

/** Every mapping of this process, any thread: collectives find peers' slots from a pointer. */
std::mutex registryMutex;
std::vector<Mapping> registry;

void unmapDeleter(void *data, size_t length, void *) {
  {
    std::lock_guard<std::mutex> lock(registryMutex);
    registry.erase(std::remove_if(registry.begin(), registry.end(), [&](const Mapping &m) { return m.base == data; }), registry.end());
  }
  munmap(data, length);
}

bool findMapping(const void *p, size_t bytes, Mapping *out) {
  std::lock_guard<std::mutex> lock(registryMutex);
  const char *c = static_cast<const char *>(p);
  for (const Mapping &m : registry) {
    if (c >= m.base && c + bytes <= m.base + m.bytes) {
      *out = m;
      return true;
    }
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Waiting on a word of another process.

uint32_t loadAcquire(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

int64_t nowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

void futexWake(uint32_t *word) { syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0); }

/** Short: 2 cores are shared by the ranks and their main threads. */
constexpr int64_t SPIN_NS = 10000;

/**
 * Set by abort() (the main thread's 'exit' listener): every wait of this process gives up within
 * one sleep slice. Without it, process.exit would wait for a comm thread blocked here.
 */
bool aborted = false;

void checkAborted() {
  if (__atomic_load_n(&aborted, __ATOMIC_RELAXED)) fail("SHM_ABORTED", "shared-memory wait aborted: this process is exiting");
}

/** true once `reached(*word)`, false at `deadlineNs`. `sleepers` counts waiters, so wakers skip the syscall when none sleeps. */
template <typename Reached>
bool waitWord(uint32_t *word, uint32_t *sleepers, int64_t deadlineNs, Reached reached) {
  const int64_t spinEnd = nowNs() + SPIN_NS;
  for (int i = 0;; i++) {
    if (reached(loadAcquire(word))) return true;
    if ((i & 63) == 63) {
      checkAborted();
      if (nowNs() > spinEnd) break;
    }
    _mm_pause();
  }
  for (;;) {
    if (sleepers != nullptr) __atomic_add_fetch(sleepers, 1, __ATOMIC_SEQ_CST);
    const uint32_t seen = __atomic_load_n(word, __ATOMIC_SEQ_CST);
    if (reached(seen)) {
      if (sleepers != nullptr) __atomic_sub_fetch(sleepers, 1, __ATOMIC_SEQ_CST);
      return true;
    }
    const int64_t left = deadlineNs - nowNs();
    if (left <= 0) {
      if (sleepers != nullptr) __atomic_sub_fetch(sleepers, 1, __ATOMIC_SEQ_CST);
      return false;
    }
    // Slices of at most 10 ms: a wake without a change of this word (a rejection) is not lost.
    const int64_t slice = std::min<int64_t>(left, 10000000);
    timespec rel{static_cast<time_t>(slice / 1000000000), static_cast<long>(slice % 1000000000)};
    syscall(SYS_futex, word, FUTEX_WAIT, seen, &rel, nullptr, 0);
    if (sleepers != nullptr) __atomic_sub_fetch(sleepers, 1, __ATOMIC_SEQ_CST);
    checkAborted();
  }
}

// ---------------------------------------------------------------------------------------------
// Creating and attaching.

void makeName(const std::string &name) {
  if (name.size() < 2 || name[0] != '/' || name.find('/', 1) != std::string::npos || name.size() > 250) {
    fail("SHM_CONFIG", "bad segment name '" + name + "'");
  }
}

Mapping mapFd(int fd, size_t bytes) {
  void *p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
  if (p == MAP_FAILED) failSys("mmap");
  Mapping m{};
  m.base = static_cast<char *>(p);
  m.bytes = bytes;
  return m;
}

Mapping createSegment(const std::string &name, uint32_t version, uint32_t n, uint32_t kind, uint64_t slotBytes) {
  makeName(name);
  const size_t bytes = totalBytes(kind, n, slotBytes);
  const int fd = shm_open(name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0) {
    if (errno == EEXIST) fail("SHM_CONFIG", "shared-memory segment " + name + " already exists: another run with the same prefix?");
    failSys("shm_open(" + name + ")");
  }
  const auto cleanup = [&](const std::string &what) {
    const int saved = errno;
    close(fd);
    shm_unlink(name.c_str());
    errno = saved;
    if (saved == ENOSPC) fail("SHM_CONFIG", "no room in /dev/shm for " + std::to_string(bytes >> 20) + " MiB (" + name + "): enlarge it (docker --shm-size)");
    failSys(what);
  };
  // fchmod: the umask may only take bits away, never add; we want exactly 0600.
  if (fchmod(fd, 0600) != 0) cleanup("fchmod");
  if (ftruncate(fd, static_cast<off_t>(bytes)) != 0) cleanup("ftruncate");
  // Reserve the pages now: a full /dev/shm is an error here, not a SIGBUS mid-step.
  const int rc = posix_fallocate(fd, 0, static_cast<off_t>(bytes));
  if (rc != 0) {
    errno = rc;
    cleanup("posix_fallocate");
  }
  Mapping m;
  try {
    m = mapFd(fd, bytes);
  } catch (...) {
    close(fd);
    shm_unlink(name.c_str());
    throw;
  }
  close(fd);
  auto *h = reinterpret_cast<Header *>(m.base);
  h->magic = MAGIC;
  h->version = version;
  h->worldSize = n;
  h->slotBytes = slotBytes;
  if (getrandom(&h->id, sizeof h->id, 0) != sizeof h->id) h->id = static_cast<uint64_t>(nowNs());
  h->kind = kind;
  h->attached = 1;
  h->rejected = 0;
  __atomic_store_n(&h->ready, 1, __ATOMIC_RELEASE);
  futexWake(&h->ready);
  if (n == 1) shm_unlink(name.c_str());
  m.worldSize = n;
  m.kind = kind;
  m.slotBytes = slotBytes;
  m.id = h->id;
  return m;
}

std::string describe(uint32_t version, uint32_t n, uint32_t kind, uint64_t slotBytes) {
  return "version " + std::to_string(version) + ", " + std::to_string(n) + " ranks, " + (kind == CONTROL ? "control" : "buffer") + " of " +
         std::to_string(slotBytes) + " bytes per rank";
}

Mapping attachSegment(const std::string &name, uint32_t version, uint32_t n, uint32_t kind, uint64_t slotBytes, uint32_t rank, int64_t timeoutMs) {
  makeName(name);
  const int64_t deadline = nowNs() + timeoutMs * 1000000;
  int fd = -1;
  struct stat st;
  for (int64_t sleepUs = 200;; sleepUs = std::min<int64_t>(sleepUs * 2, 10000)) {
    fd = shm_open(name.c_str(), O_RDWR, 0);
    if (fd < 0 && errno != ENOENT) failSys("shm_open(" + name + ")");
    if (fd >= 0) {
      if (fstat(fd, &st) != 0) failSys("fstat");
      // The creator's ftruncate may not have happened yet.
      if (static_cast<size_t>(st.st_size) >= PAGE) break;
      close(fd);
    }
    if (nowNs() > deadline) {
      fail("SHM_TIMEOUT", "rank " + std::to_string(rank) + ": shared-memory segment " + name + " did not appear within " + std::to_string(timeoutMs) +
                              " ms: rank 0 is probably dead or not started (check its log)", 0);
    }
    usleep(static_cast<useconds_t>(sleepUs));
  }
  // Refuse a segment another user made under our name, whatever its mode.
  if (st.st_uid != geteuid() || (st.st_mode & 0777) != 0600) {
    close(fd);
    fail("SHM_ACCESS", "shared-memory segment " + name + " belongs to uid " + std::to_string(st.st_uid) + " with mode " + std::to_string(st.st_mode & 0777) +
                           ", expected ours with 0600: refusing it");
  }
  Mapping head = mapFd(fd, PAGE);
  auto *h = reinterpret_cast<Header *>(head.base);
  const bool ready = waitWord(&h->ready, nullptr, deadline, [](uint32_t v) { return v == 1; });
  const auto reject = [&](const std::string &message) {
    if (ready && h->magic == MAGIC) {
      __atomic_store_n(&h->rejected, rank + 1, __ATOMIC_SEQ_CST);
      futexWake(&h->attached);
    }
    munmap(head.base, PAGE);
    close(fd);
    fail("SHM_PROTOCOL", message);
  };
  if (!ready) reject("shared-memory segment " + name + ": its header was never completed (rank 0 died while creating it?)");
  if (h->magic != MAGIC) reject("shared-memory segment " + name + " is not an alexnet-dp segment (bad magic)");
  if (h->version != version || h->worldSize != n || h->kind != kind || h->slotBytes != slotBytes) {
    reject("rank " + std::to_string(rank) + ": shared-memory segment " + name + " was made for " + describe(h->version, h->worldSize, h->kind, h->slotBytes) +
           ", this rank expects " + describe(version, n, kind, slotBytes) + ": do all ranks run the same program and arguments?");
  }
  const size_t bytes = totalBytes(kind, n, slotBytes);
  if (static_cast<size_t>(st.st_size) < bytes) reject("shared-memory segment " + name + " is shorter than its header says");
  const uint64_t id = h->id;
  munmap(head.base, PAGE);
  Mapping m;
  try {
    m = mapFd(fd, bytes);
  } catch (...) {
    close(fd);
    throw;
  }
  close(fd);
  auto *full = reinterpret_cast<Header *>(m.base);
  if (__atomic_add_fetch(&full->attached, 1, __ATOMIC_SEQ_CST) == n) shm_unlink(name.c_str());
  futexWake(&full->attached);
  m.worldSize = n;
  m.kind = kind;
  m.slotBytes = slotBytes;
  m.id = id;
  return m;
}

/** The creator waits for every rank to attach (an allocation is collective), or a rejection. */
void waitAttached(const Mapping &m, const std::string &name, int64_t timeoutMs) {
  auto *h = reinterpret_cast<Header *>(m.base);
  const int64_t deadline = nowNs() + timeoutMs * 1000000;
  const uint32_t n = m.worldSize;
  const bool done = waitWord(&h->attached, nullptr, deadline, [&](uint32_t v) { return v >= n || __atomic_load_n(&h->rejected, __ATOMIC_SEQ_CST) != 0; });
  const uint32_t rejected = __atomic_load_n(&h->rejected, __ATOMIC_SEQ_CST);
  if (rejected != 0) {
    shm_unlink(name.c_str());
    fail("SHM_PROTOCOL", "rank " + std::to_string(rejected - 1) + " rejected shared-memory segment " + name + " (a version or size mismatch: see its log)");
  }
  if (!done) {
    shm_unlink(name.c_str());
    fail("SHM_TIMEOUT", "rank 0: only " + std::to_string(loadAcquire(&h->attached)) + " of " + std::to_string(n) + " ranks attached to " + name + " within " +
                            std::to_string(timeoutMs) + " ms: a rank is probably dead or was not started");
  }
}

// ---------------------------------------------------------------------------------------------
// 16-bit wire formats: the same code as src/backend/native/dnnl_addon.cc (held bit for bit to
// src/parallel/wire-codec.ts's JS reference by the tests). fp16 rounds to nearest even
// (F. Giesen's float_to_half_fast3_rtne); a NaN stays a quiet NaN with its top payload bits,
// as F16C does, which converts 8 at a time where the CPU has it.

inline uint32_t bitsOf(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

inline float floatOf(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline uint16_t toFp16(uint32_t x) {
  const uint32_t sign = x & 0x80000000u;
  const uint32_t f = x ^ sign;
  const uint32_t denormMagic = ((127 - 15) + (23 - 10) + 1) << 23;
  const uint32_t subnormal = bitsOf(floatOf(f) + floatOf(denormMagic)) - denormMagic;
  const uint32_t normal = (f + (static_cast<uint32_t>(15 - 127) << 23) + 0xfff + ((f >> 13) & 1)) >> 13;
  const uint32_t big = f > (255u << 23) ? (0x7e00u | ((f >> 13) & 0x3ffu)) : 0x7c00u;
  const uint32_t h = f >= ((127u + 16) << 23) ? big : f < (113u << 23) ? subnormal : normal;
  return static_cast<uint16_t>(h | (sign >> 16));
}

inline float fromFp16(uint16_t h) {
  const uint32_t magnitude = static_cast<uint32_t>(h & 0x7fff) << 13;
  uint32_t bits = bitsOf(floatOf(magnitude) * floatOf((254u - 15) << 23));
  bits |= bits >= ((127u + 16) << 23) ? (255u << 23) : 0u;
  bits |= (h & 0x7fffu) > 0x7c00u ? 0x400000u : 0u;
  return floatOf(bits | (static_cast<uint32_t>(h & 0x8000) << 16));
}

inline uint16_t toBf16(uint32_t x) {
  const uint32_t rounded = (x + 0x7fffu + ((x >> 16) & 1)) >> 16;
  const uint32_t nan = ((x >> 16) & 0x8000u) | 0x7fc0u;
  return static_cast<uint16_t>((x & 0x7fffffffu) > 0x7f800000u ? nan : rounded);
}

bool hasF16c() {
  static const bool has = __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c");
  return has;
}

__attribute__((target("avx,f16c"))) size_t encodeFp16F16c(const float *in, uint16_t *out, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i *>(out + i), h);
  }
  return i;
}

__attribute__((target("avx,f16c"))) size_t decodeFp16F16c(const uint16_t *in, float *out, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i *>(in + i))));
  return i;
}

/** Both directions at once: the value the wire delivers, in place. */
__attribute__((target("avx,f16c"))) size_t quantizeFp16F16c(float *v, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(v + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(v + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
  return i;
}

enum Dtype : int { FP32 = 0, FP16 = 1, BF16 = 2 };

void encode(int dtype, const float *src, uint16_t *dst, size_t n) {
  const uint32_t *in = reinterpret_cast<const uint32_t *>(src);
  if (dtype == FP16) {
    const size_t done = hasF16c() ? encodeFp16F16c(src, dst, n) : 0;
    for (size_t i = done; i < n; i++) dst[i] = toFp16(in[i]);
  } else {
    for (size_t i = 0; i < n; i++) dst[i] = toBf16(in[i]);
  }
}

void decode(int dtype, const uint16_t *src, float *dst, size_t n) {
  if (dtype == FP16) {
    const size_t done = hasF16c() ? decodeFp16F16c(src, dst, n) : 0;
    for (size_t i = done; i < n; i++) dst[i] = fromFp16(src[i]);
  } else {
    uint32_t *out = reinterpret_cast<uint32_t *>(dst);
    for (size_t i = 0; i < n; i++) out[i] = static_cast<uint32_t>(src[i]) << 16;
  }
}

void quantize(int dtype, float *v, size_t n) {
  if (dtype == FP32) return;
  if (dtype == FP16) {
    const size_t done = hasF16c() ? quantizeFp16F16c(v, n) : 0;
    for (size_t i = done; i < n; i++) v[i] = fromFp16(toFp16(bitsOf(v[i])));
  } else {
    uint32_t *u = reinterpret_cast<uint32_t *>(v);
    for (size_t i = 0; i < n; i++) u[i] = static_cast<uint32_t>(toBf16(u[i])) << 16;
  }
}

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

/** Segment `s` of `length` elements split over `n` ranks: src/parallel/ring-schedule.ts's segmentRange. */
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
