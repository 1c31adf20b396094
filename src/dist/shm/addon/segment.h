/**
 * Shared segments: their header and geometry, creating and attaching them, and waiting on a
 * 32-bit word that another process changes (futex). Included once, by shm_addon.cc.
 */
#pragma once
#include <errno.h>
#include <fcntl.h>
#include <immintrin.h>
#include <linux/futex.h>
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
#include <mutex>
#include <string>
#include <vector>

namespace shm {

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
    if (saved == ENOSPC) fail("SHM_CONFIG", "no room in /dev/shm for " + std::to_string(bytes >> 20) + " MiB (" + name + "): enlarge it (docker --shm-size), or run with --transport zmq");
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

}  // namespace shm
