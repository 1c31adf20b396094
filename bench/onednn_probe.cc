// oneDNN alone: the conv and FC layers of a training step timed in plain C++ (no tfjs, no N-API),
// the ceiling the native backend's kernels are measured against (bench/kernels.ts).
//
//   onednn_probe THREADS REPS < layers        (built and run by bench/onednn-probe.ts)
//
// One layer a line, tab-separated, labels as bench/kernels.ts prints them:
//   conv <fwd label> <bwd label> N IH IW IC OH OW OC KH KW SH SW PT PL PB PR G RELU WITH_DATA
//     (the addon's conv parameters, then whether the layer's input gradient is computed)
//   fc <fwd label> <dx label> <dW label> M K N RELU
// Prints one JSON line: for each label its GFLOP and, per way of computing it, the best-of-REPS
// milliseconds; `best` is the fastest of all, `ours` the fastest that reads and writes the
// layouts the addon has (NHWC activations, tfjs's row-major [in, out] FC weights) without a
// reorder. Conv weights are in the layout each primitive asks for, as in the addon, whose
// reorders are not timed here. Threads: omp_set_num_threads, as the addon's setThreads.

#include <oneapi/dnnl/dnnl.hpp>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <iostream>
#include <list>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

using dnnl::algorithm;
using dnnl::memory;
using dnnl::prop_kind;
using dims = memory::dims;
using tag = memory::format_tag;
using dt = memory::data_type;
using Args = std::unordered_map<int, memory>;

dnnl::engine &eng() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

dnnl::stream &strm() {
  static dnnl::stream s(eng());
  return s;
}

int gReps = 3;

/**
 * Evicts the caches (L3 here: 32 MiB) before each timed call: in a training step a layer's
 * weights were last touched by the previous step's update, tens of megabytes of activations ago,
 * so a warm-cache figure would flatter oneDNN for the layers that fit (fc8's 16 MB).
 */
void evictCaches() {
  static std::vector<char> junk(64 << 20);
  for (size_t i = 0; i < junk.size(); i += 64) junk[i]++;
}

/** Best-of-gReps milliseconds of `run`, after one untimed call (JIT, page faults). */
double bestMs(const std::function<void()> &run) {
  run();
  double best = 1e300;
  for (int r = 0; r < gReps; r++) {
    evictCaches();
    const auto t0 = std::chrono::steady_clock::now();
    run();
    best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

double timePrimitive(const dnnl::primitive &prim, const Args &args) {
  return bestMs([&] {
    prim.execute(strm(), args);
    strm().wait();
  });
}

/**
 * The buffers of the layer being timed, from malloc as tfjs's are (V8's ArrayBuffers come from
 * glibc's calloc: a large one is mmap'd at a page + 16 bytes). Placement alone changes speed:
 * fc6's forward product (150 MB of weights, a row every 16 KiB) ran ~1.5x faster there than at
 * oneDNN's own 64-byte-aligned allocation on this EPYC. So every way gets the addon's kind of
 * buffer, and the ways differ only in how they compute.
 */
std::list<std::vector<float>> &arena() {
  static std::list<std::vector<float>> buffers;
  return buffers;
}

/** `n` small pseudo-random floats (zeros could let a kernel take shortcuts). */
float *filledFloats(size_t n) {
  std::vector<float> &v = arena().emplace_back(n);
  uint32_t s = 12345;
  for (auto &x : v) {
    s = s * 1664525u + 1013904223u;
    x = static_cast<float>(s >> 9) / 8388608.f - 0.5f;
  }
  return v.data();
}

memory filled(const memory::desc &md) { return memory(md, eng(), filledFloats(md.get_size() / sizeof(float))); }

/** Frees the arena when one way has been timed: fc6's ways together would hold gigabytes. */
struct ArenaScope {
  ArenaScope() = default;
  ArenaScope(const ArenaScope &) = delete;
  ArenaScope &operator=(const ArenaScope &) = delete;
  ~ArenaScope() { arena().clear(); }
};

dnnl::primitive_attr reluAttr(bool relu) {
  dnnl::primitive_attr attr;
  if (relu) {
    dnnl::post_ops ops;
    ops.append_eltwise(1.f, algorithm::eltwise_relu, 0.f, 0.f);
    attr.set_post_ops(ops);
  }
  return attr;
}

/** One way of computing a row and its time; `ours` when it uses the addon's layouts. */
struct Way {
  std::string how;
  double ms;
  bool ours;
};

struct Row {
  std::string label;
  double gflop;
  std::vector<Way> ways;
};

// ---------------------------------------------------------------------------------------------
// Convolutions: forward with bias and relu fused; backward data (unless the layer's input is the
// images) plus backward weights with the bias gradient. Activations NHWC (ours) or in the layout
// oneDNN picks (`any`, blocked: its own choice when a whole net is oneDNN's).

struct Conv {
  int64_t n, ih, iw, ic, oh, ow, oc, kh, kw, sh, sw, pt, pl, pb, pr, g;
  bool relu, withData;

  memory::desc act(int64_t c, int64_t h, int64_t w, tag t) const { return memory::desc({n, c, h, w}, dt::f32, t); }
  memory::desc weights() const {
    if (g == 1) return memory::desc({oc, ic, kh, kw}, dt::f32, tag::any);
    return memory::desc({g, oc / g, ic / g, kh, kw}, dt::f32, tag::any);
  }
  double forwardGflop() const { return 2.0 * n * oh * ow * oc * kh * kw * (ic / g) / 1e9; }
};

/** Forward, and backward (data + weights) milliseconds, with activations in layout `t`. */
std::pair<double, double> timeConv(const Conv &c, tag t) {
  const ArenaScope scope;
  const auto src = c.act(c.ic, c.ih, c.iw, t), dst = c.act(c.oc, c.oh, c.ow, t);
  const memory::desc bias({c.oc}, dt::f32, tag::x);
  const dims strides{c.sh, c.sw}, padL{c.pt, c.pl}, padR{c.pb, c.pr};
  const dnnl::convolution_forward::primitive_desc fwd(
      dnnl::convolution_forward::desc(prop_kind::forward_training, algorithm::convolution_direct, src, c.weights(),
                                      bias, dst, strides, padL, padR),
      reluAttr(c.relu), eng());
  memory x = filled(fwd.src_desc()), w = filled(fwd.weights_desc()), b = filled(fwd.bias_desc());
  memory y = filled(fwd.dst_desc());
  const double fwdMs = timePrimitive(dnnl::convolution_forward(fwd),
                                     {{DNNL_ARG_SRC, x}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_BIAS, b}, {DNNL_ARG_DST, y}});

  const dnnl::convolution_backward_weights::primitive_desc bw(
      dnnl::convolution_backward_weights::desc(algorithm::convolution_direct, src, c.weights(), bias, dst, strides,
                                               padL, padR),
      eng(), fwd);
  memory dy = filled(bw.diff_dst_desc()), dw = filled(bw.diff_weights_desc()), db = filled(bw.diff_bias_desc());
  memory xw = filled(bw.src_desc());
  double bwdMs = timePrimitive(dnnl::convolution_backward_weights(bw), {{DNNL_ARG_SRC, xw},
                                                                        {DNNL_ARG_DIFF_DST, dy},
                                                                        {DNNL_ARG_DIFF_WEIGHTS, dw},
                                                                        {DNNL_ARG_DIFF_BIAS, db}});
  if (c.withData) {
    const dnnl::convolution_backward_data::primitive_desc bd(
        dnnl::convolution_backward_data::desc(algorithm::convolution_direct, src, c.weights(), dst, strides, padL,
                                              padR),
        eng(), fwd);
    memory dx = filled(bd.diff_src_desc()), wd = filled(bd.weights_desc()), dyd = filled(bd.diff_dst_desc());
    bwdMs += timePrimitive(dnnl::convolution_backward_data(bd),
                           {{DNNL_ARG_DIFF_DST, dyd}, {DNNL_ARG_WEIGHTS, wd}, {DNNL_ARG_DIFF_SRC, dx}});
  }
  return {fwdMs, bwdMs};
}

std::vector<Row> convRows(const Conv &c, const std::string &fwdLabel, const std::string &bwdLabel) {
  const auto ours = timeConv(c, tag::nhwc);
  const auto own = timeConv(c, tag::any);
  const double gflop = c.forwardGflop();
  return {
      {fwdLabel, gflop, {{"nhwc", ours.first, true}, {"any", own.first, false}}},
      {bwdLabel, c.withData ? 2 * gflop : gflop, {{"nhwc", ours.second, true}, {"any", own.second, false}}},
  };
}

// ---------------------------------------------------------------------------------------------
// FC layers, x [M, K] times W [K, N] (tfjs's row-major layouts): forward y = relu(x W + b),
// dx = dy W^T, dW = x^T dy. Each through inner_product (weights `any`, or `io`: W as tfjs has
// it), through matmul with the transposes as strides (the addon's way for the forward and dx),
// and sgemm (the addon's way for dW).

struct Fc {
  int64_t m, k, n;
  bool relu;
  double gflop() const { return 2.0 * m * k * n / 1e9; }
};

/** A [rows, cols] operand read as its transpose when `transposed`. */
memory::desc plain(int64_t rows, int64_t cols, bool transposed = false) {
  if (!transposed) return memory::desc({rows, cols}, dt::f32, dims{cols, 1});
  return memory::desc({cols, rows}, dt::f32, dims{1, cols});
}

struct FcTimes {
  double fwd, dx, dW;
};

FcTimes timeInnerProduct(const Fc &f, tag weightsTag) {
  const ArenaScope scope;
  const memory::desc src({f.m, f.k}, dt::f32, tag::nc), dst({f.m, f.n}, dt::f32, tag::nc);
  const memory::desc w({f.n, f.k}, dt::f32, weightsTag), bias({f.n}, dt::f32, tag::x);
  const dnnl::inner_product_forward::primitive_desc fwd(
      dnnl::inner_product_forward::desc(prop_kind::forward_training, src, w, bias, dst), reluAttr(f.relu), eng());
  memory x = filled(src), wm = filled(fwd.weights_desc()), b = filled(bias), y = filled(dst), dy = filled(dst);
  const dnnl::inner_product_backward_data::primitive_desc bd(dnnl::inner_product_backward_data::desc(src, w, dst),
                                                             eng(), fwd);
  const dnnl::inner_product_backward_weights::primitive_desc bw(
      dnnl::inner_product_backward_weights::desc(src, w, bias, dst), eng(), fwd);
  memory wd = filled(bd.weights_desc()), dx = filled(src), dw = filled(bw.diff_weights_desc()), db = filled(bias);
  return {
      timePrimitive(dnnl::inner_product_forward(fwd),
                    {{DNNL_ARG_SRC, x}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_BIAS, b}, {DNNL_ARG_DST, y}}),
      timePrimitive(dnnl::inner_product_backward_data(bd),
                    {{DNNL_ARG_DIFF_DST, dy}, {DNNL_ARG_WEIGHTS, wd}, {DNNL_ARG_DIFF_SRC, dx}}),
      timePrimitive(dnnl::inner_product_backward_weights(bw), {{DNNL_ARG_SRC, x},
                                                               {DNNL_ARG_DIFF_DST, dy},
                                                               {DNNL_ARG_DIFF_WEIGHTS, dw},
                                                               {DNNL_ARG_DIFF_BIAS, db}}),
  };
}

double timeMatMul(const memory::desc &a, const memory::desc &b, const memory::desc *bias, const memory::desc &c,
                  bool relu) {
  const ArenaScope scope;
  const auto d = bias ? dnnl::matmul::desc(a, b, *bias, c) : dnnl::matmul::desc(a, b, c);
  const dnnl::matmul::primitive_desc pd(d, reluAttr(relu), eng());
  Args args{{DNNL_ARG_SRC, filled(a)}, {DNNL_ARG_WEIGHTS, filled(b)}, {DNNL_ARG_DST, filled(c)}};
  if (bias) args.emplace(DNNL_ARG_BIAS, filled(*bias));
  return timePrimitive(dnnl::matmul(pd), args);
}

FcTimes timeStridedMatMul(const Fc &f) {
  const memory::desc bias({1, f.n}, dt::f32, dims{f.n, 1});
  return {
      timeMatMul(plain(f.m, f.k), plain(f.k, f.n), &bias, plain(f.m, f.n), f.relu),
      timeMatMul(plain(f.m, f.n), plain(f.k, f.n, true), nullptr, plain(f.m, f.k), false),
      timeMatMul(plain(f.m, f.k, true), plain(f.m, f.n), nullptr, plain(f.k, f.n), false),
  };
}

/** sgemm, row-major; the forward adds the bias and applies the relu in a second pass. */
FcTimes timeSgemm(const Fc &f) {
  const ArenaScope scope;
  float *x = filledFloats(f.m * f.k), *w = filledFloats(f.k * f.n), *b = filledFloats(f.n);
  float *y = filledFloats(f.m * f.n), *dy = filledFloats(f.m * f.n), *dx = filledFloats(f.m * f.k);
  float *dw = filledFloats(f.k * f.n);
  const auto fwd = [&] {
    dnnl::sgemm('N', 'N', f.m, f.n, f.k, 1.f, x, f.k, w, f.n, 0.f, y, f.n);
    for (int64_t i = 0; i < f.m; i++)
      for (int64_t j = 0; j < f.n; j++) {
        const float v = y[i * f.n + j] + b[j];
        y[i * f.n + j] = f.relu && v < 0.f ? 0.f : v;
      }
  };
  return {
      bestMs(fwd),
      bestMs([&] { dnnl::sgemm('N', 'T', f.m, f.k, f.n, 1.f, dy, f.n, w, f.n, 0.f, dx, f.k); }),
      bestMs([&] { dnnl::sgemm('T', 'N', f.k, f.n, f.m, 1.f, x, f.k, dy, f.n, 0.f, dw, f.n); }),
  };
}

std::vector<Row> fcRows(const Fc &f, const std::string labels[3]) {
  const FcTimes any = timeInnerProduct(f, tag::any), io = timeInnerProduct(f, tag::io);
  const FcTimes mm = timeStridedMatMul(f), gemm = timeSgemm(f);
  const auto row = [&](const std::string &label, double FcTimes::*pass) {
    return Row{label,
               f.gflop(),
               {{"inner_product(any)", any.*pass, false},
                {"inner_product(io)", io.*pass, true},
                {"matmul(strided)", mm.*pass, true},
                {"sgemm", gemm.*pass, true}}};
  };
  return {row(labels[0], &FcTimes::fwd), row(labels[1], &FcTimes::dx), row(labels[2], &FcTimes::dW)};
}

// ---------------------------------------------------------------------------------------------
// Input and output.

std::vector<std::string> splitTabs(const std::string &line) {
  std::vector<std::string> parts;
  std::stringstream ss(line);
  std::string part;
  while (std::getline(ss, part, '\t')) parts.push_back(part);
  return parts;
}

std::vector<int64_t> integers(const std::string &text) {
  std::vector<int64_t> v;
  std::stringstream ss(text);
  int64_t x;
  while (ss >> x) v.push_back(x);
  return v;
}

std::vector<Row> rowsOf(const std::string &line) {
  const auto parts = splitTabs(line);
  if (parts.size() == 4 && parts[0] == "conv") {
    const auto p = integers(parts[3]);
    if (p.size() != 18) throw std::runtime_error("conv needs 18 numbers: " + line);
    const Conv c{p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11], p[12], p[13], p[14], p[15],
                 p[16] != 0, p[17] != 0};
    return convRows(c, parts[1], parts[2]);
  }
  if (parts.size() == 5 && parts[0] == "fc") {
    const auto p = integers(parts[4]);
    if (p.size() != 4) throw std::runtime_error("fc needs 4 numbers: " + line);
    const std::string labels[3] = {parts[1], parts[2], parts[3]};
    return fcRows(Fc{p[0], p[1], p[2], p[3] != 0}, labels);
  }
  throw std::runtime_error("not a layer line: " + line);
}

std::string quoted(const std::string &s) {
  std::string q = "\"";
  for (char ch : s) q += (ch == '"' || ch == '\\') ? std::string("\\") + ch : std::string(1, ch);
  return q + "\"";
}

std::string wayJson(const Way &w, double gflop) {
  std::ostringstream o;
  o << "{\"how\":" << quoted(w.how) << ",\"ms\":" << w.ms << ",\"gflops\":" << gflop / (w.ms / 1000) << "}";
  return o.str();
}

/** The fastest way, among those with `ours` set when `oursOnly`. */
const Way &fastest(const Row &r, bool oursOnly) {
  const Way *best = nullptr;
  for (const auto &w : r.ways)
    if ((!oursOnly || w.ours) && (best == nullptr || w.ms < best->ms)) best = &w;
  return *best;
}

std::string rowJson(const Row &r) {
  std::ostringstream o;
  o << quoted(r.label) << ":{\"gflop\":" << r.gflop << ",\"best\":" << wayJson(fastest(r, false), r.gflop)
    << ",\"ours\":" << wayJson(fastest(r, true), r.gflop) << ",\"ways\":{";
  for (size_t i = 0; i < r.ways.size(); i++)
    o << (i ? "," : "") << quoted(r.ways[i].how) << ":" << r.ways[i].ms;
  o << "}}";
  return o.str();
}

std::string isaName() {
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    default: return "other";
  }
}

}  // namespace

int main(int argc, char **argv) {
  try {
    const int threads = argc > 1 ? std::stoi(argv[1]) : 1;
    gReps = argc > 2 ? std::stoi(argv[2]) : 3;
    omp_set_num_threads(threads);
    std::vector<Row> rows;
    for (std::string line; std::getline(std::cin, line);) {
      if (line.empty()) continue;
      for (auto &r : rowsOf(line)) rows.push_back(std::move(r));
    }
    const dnnl_version_t *v = dnnl_version();
    std::cout << "{\"oneDNN\":\"" << v->major << '.' << v->minor << '.' << v->patch << "\",\"isa\":\"" << isaName()
              << "\",\"threads\":" << threads << ",\"reps\":" << gReps << ",\"rows\":{";
    for (size_t i = 0; i < rows.size(); i++) std::cout << (i ? "," : "") << rowJson(rows[i]);
    std::cout << "}}" << std::endl;
    return 0;
  } catch (const std::exception &e) {
    std::cerr << "onednn_probe: " << e.what() << std::endl;
    return 1;
  }
}
