// N-API addon: oneDNN (Debian's libdnnl 2.6, v2 C++ API) kernels for the tfjs 'native' backend.
//
// Every entry point takes an Int32Array of shape parameters, already validated in JS
// (src/backend/native/kernels.ts), and Float32Arrays that it reads and writes in place: the
// tfjs cpu backend's own buffers, so nothing is copied. The sizes are checked again here, so
// a bad call is a JS exception, never a write out of bounds. Every C++ exception (oneDNN's
// dnnl::error included) is caught at the N-API boundary and rethrown as a JS Error.
//
// Primitives are JIT-compiled, which costs milliseconds, so each one is built once per shape
// and kept in a cache keyed by its parameters (a training run has a few dozen shapes).
// Activations are tfjs's NHWC buffers; a convolution whose channels fill oneDNN's blocks reorders
// them to and from the blocked layout its primitives prefer (ConvGeometry::blocked, measured),
// the others read them in place. Weights go to whatever layout the primitive wants, through a
// cached reorder, since they are small next to the activations.

#include <node_api.h>
#include <oneapi/dnnl/dnnl.hpp>
#include <omp.h>
#include <pthread.h>
#include <signal.h>
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <optional>
#include <stdexcept>
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

// Our own loops (pooling, LRN) are compiled three times on x86-64, for AVX-512, AVX2 and the
// baseline, and the loader picks one per machine (GCC's target_clones): the addon stays portable,
// and wider machines run 16 or 8 floats an instruction instead of 4. The clones give the same
// bits: no FMA in the AVX2 clone, and none contracted into the AVX-512 one (which has it) since
// build.sh passes -ffp-contract=off, so every operation rounds as in the scalar loop.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__GLIBC__)  // ifunc: glibc only
#define SIMD_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SIMD_CLONES
#endif

/** A bad call from JS: thrown as a JS Error with this message. */
struct CallError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

dnnl::engine &cpuEngine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

dnnl::stream &cpuStream() {
  static dnnl::stream s(cpuEngine());
  return s;
}

void check(napi_status status, const char *what) {
  if (status != napi_ok) throw CallError(std::string("N-API call failed: ") + what);
}

struct Ints {
  const int32_t *v;
  size_t n;
  int64_t operator[](size_t i) const { return v[i]; }
};

struct Floats {
  float *data;
  size_t length;
};

Ints intsArg(napi_env env, napi_value value, size_t expected) {
  napi_typedarray_type type;
  size_t length;
  void *data;
  napi_value buffer;
  size_t offset;
  bool isTyped = false;
  check(napi_is_typedarray(env, value, &isTyped), "is_typedarray");
  if (!isTyped) throw CallError("parameters must be an Int32Array");
  check(napi_get_typedarray_info(env, value, &type, &length, &data, &buffer, &offset), "typedarray_info");
  if (type != napi_int32_array || length != expected) {
    throw CallError("parameters must be an Int32Array of length " + std::to_string(expected));
  }
  for (size_t i = 0; i < length; i++) {
    if (static_cast<const int32_t *>(data)[i] < 0) throw CallError("negative shape parameter");
  }
  return {static_cast<const int32_t *>(data), length};
}

/**
 * The data of a typed array of type `type` (called `typeName` in messages) with exactly
 * `expected` elements, or (when `optional`) nullptr for null/undefined.
 */
void *typedArg(napi_env env, napi_value value, napi_typedarray_type type, const char *typeName, size_t expected,
               const char *name, bool optional) {
  napi_valuetype vt;
  check(napi_typeof(env, value, &vt), "typeof");
  if (optional && (vt == napi_null || vt == napi_undefined)) return nullptr;
  bool isTyped = false;
  check(napi_is_typedarray(env, value, &isTyped), "is_typedarray");
  if (!isTyped) throw CallError(std::string(name) + " must be a " + typeName);
  napi_typedarray_type actual;
  size_t length;
  void *data;
  napi_value buffer;
  size_t offset;
  check(napi_get_typedarray_info(env, value, &actual, &length, &data, &buffer, &offset), "typedarray_info");
  if (actual != type) throw CallError(std::string(name) + " must be a " + typeName);
  if (length != expected) {
    throw CallError(std::string(name) + " has " + std::to_string(length) + " elements, expected " + std::to_string(expected));
  }
  return data;
}

/** A Float32Array of exactly `expected` elements, or (when `optional`) null/undefined. */
Floats floatsArg(napi_env env, napi_value value, size_t expected, const char *name, bool optional = false) {
  void *data = typedArg(env, value, napi_float32_array, "Float32Array", expected, name, optional);
  return {static_cast<float *>(data), data != nullptr ? expected : 0};
}

size_t product(const dims &d) {
  size_t p = 1;
  for (auto v : d) p *= static_cast<size_t>(v);
  return p;
}

std::string keyOf(const char *op, const Ints &p, const std::vector<int64_t> &extra = {}) {
  std::string key(op);
  for (size_t i = 0; i < p.n; i++) key += ',' + std::to_string(p[i]);
  for (auto e : extra) key += ';' + std::to_string(e);
  return key;
}

/**
 * One argument of a primitive: the user's layout (the tfjs buffer) and the layout the primitive
 * chose. When they differ, a reorder (built once) moves the data through a scratch buffer.
 */
class Arg {
 public:
  Arg(const memory::desc &user, const memory::desc &want) : user_(user), want_(want), same_(user == want) {}

  /** The memory to hand the primitive; an input is reordered into it now. */
  memory in(float *ptr) {
    memory userMem(user_, cpuEngine(), ptr);
    if (same_) return userMem;
    if (!toWant_) toWant_ = std::make_unique<dnnl::reorder>(userMem, scratch());
    toWant_->execute(cpuStream(), userMem, scratch_);
    return scratch_;
  }

  /** The memory an output is written to; call `out` after the primitive ran. */
  memory outTarget(float *ptr) {
    if (same_) return memory(user_, cpuEngine(), ptr);
    return scratch();
  }

  /** The primitive's own layout (not the user's), for a caller that writes it directly, no reorder. */
  memory &direct() { return scratch(); }
  const memory::desc &want() const { return want_; }

  void out(float *ptr) {
    if (same_) return;
    memory userMem(user_, cpuEngine(), ptr);
    if (!fromWant_) fromWant_ = std::make_unique<dnnl::reorder>(scratch(), userMem);
    fromWant_->execute(cpuStream(), scratch_, userMem);
  }

 private:
  /** Allocated on first use: an Arg whose data comes another way (a shared reorder) holds none. */
  memory &scratch() {
    if (!scratch_) scratch_ = memory(want_, cpuEngine());
    return scratch_;
  }

  memory::desc user_, want_;
  bool same_;
  memory scratch_;
  std::unique_ptr<dnnl::reorder> toWant_, fromWant_;
};

struct Op {
  virtual ~Op() = default;
};

std::unordered_map<std::string, std::unique_ptr<Op>> &cache() {
  static std::unordered_map<std::string, std::unique_ptr<Op>> c;
  return c;
}

template <typename T, typename Make>
T &cached(const std::string &key, Make make) {
  auto &c = cache();
  auto it = c.find(key);
  if (it == c.end()) it = c.emplace(key, make()).first;
  return static_cast<T &>(*it->second);
}

// ---------------------------------------------------------------------------------------------
// Convolution. Parameters (all from tfjs's computeConv2DInfo):
// [N, IH, IW, IC, OH, OW, OC, KH, KW, SH, SW, PT, PL, PB, PR, G, RELU]

constexpr size_t kConvParams = 17;

struct ConvGeometry {
  int64_t n, ih, iw, ic, oh, ow, oc, kh, kw, sh, sw, pt, pl, pb, pr, g;
  bool relu;

  explicit ConvGeometry(const Ints &p)
      : n(p[0]), ih(p[1]), iw(p[2]), ic(p[3]), oh(p[4]), ow(p[5]), oc(p[6]), kh(p[7]), kw(p[8]),
        sh(p[9]), sw(p[10]), pt(p[11]), pl(p[12]), pb(p[13]), pr(p[14]), g(p[15]), relu(p[16] != 0) {
    if (g < 1 || ic % g != 0 || oc % g != 0) throw CallError("channels do not split into the groups");
    if (sh < 1 || sw < 1 || kh < 1 || kw < 1) throw CallError("strides and kernel must be positive");
  }

  memory::desc src() const { return memory::desc({n, ic, ih, iw}, dt::f32, tag::nhwc); }
  memory::desc dst() const { return memory::desc({n, oc, oh, ow}, dt::f32, tag::nhwc); }
  memory::desc bias() const { return memory::desc({oc}, dt::f32, tag::x); }

  /**
   * Whether the primitives get their activations in the layout they choose (oneDNN's blocked
   * nChw8c on AVX2), reordered from and to tfjs's NHWC around each call: where every group's
   * channels fill whole 8-channel blocks. Measured on the paper layers, reorders paid: alone
   * (caches evicted) conv3-5 forward and conv2-5 backward ran 10-25% faster; inside training steps
   * (bench/kernels-ab.ts against the NHWC build) conv3-5 forward 6-13% and conv2's backward 8%
   * faster, conv2's forward 4% and conv3-5's backward 1-3% slower: a small net gain (~30 ms of a
   * 2 s step's conv + FC time). conv1's 3 input channels would be padded to 8: it stays NHWC.
   * The backward's relu-masked gradient skips its reorder: convLayerBackward writes it in the
   * blocked layout directly.
   */
  bool blocked() const { return (ic / g) % 8 == 0 && (oc / g) % 8 == 0; }
  memory::desc srcAct() const { return memory::desc({n, ic, ih, iw}, dt::f32, blocked() ? tag::any : tag::nhwc); }
  memory::desc dstAct() const { return memory::desc({n, oc, oh, ow}, dt::f32, blocked() ? tag::any : tag::nhwc); }

  /** tfjs's filter [KH, KW, IC/G, OC]; output channel o is in group o / (OC/G). */
  memory::desc userWeights() const {
    const int64_t icg = ic / g, ocg = oc / g;
    if (g == 1) return memory::desc({oc, ic, kh, kw}, dt::f32, tag::hwio);
    return memory::desc({g, ocg, icg, kh, kw}, dt::f32, dims{ocg, 1, oc, kw * icg * oc, icg * oc});
  }

  memory::desc anyWeights() const {
    if (g == 1) return memory::desc({oc, ic, kh, kw}, dt::f32, tag::any);
    return memory::desc({g, oc / g, ic / g, kh, kw}, dt::f32, tag::any);
  }

  dims strides() const { return {sh, sw}; }
  dims padL() const { return {pt, pl}; }
  dims padR() const { return {pb, pr}; }
  size_t srcSize() const { return product({n, ih, iw, ic}); }
  size_t dstSize() const { return product({n, oh, ow, oc}); }
  size_t weightsSize() const { return product({kh, kw, ic / g, oc}); }

  dnnl::convolution_forward::primitive_desc forwardPd(bool withBias) const {
    dnnl::primitive_attr attr;
    if (relu) {
      dnnl::post_ops ops;
      ops.append_eltwise(1.f, algorithm::eltwise_relu, 0.f, 0.f);
      attr.set_post_ops(ops);
    }
    auto d = withBias
                 ? dnnl::convolution_forward::desc(prop_kind::forward_training, algorithm::convolution_direct,
                                                   srcAct(), anyWeights(), bias(), dstAct(), strides(), padL(), padR())
                 : dnnl::convolution_forward::desc(prop_kind::forward_training, algorithm::convolution_direct,
                                                   srcAct(), anyWeights(), dstAct(), strides(), padL(), padR());
    return dnnl::convolution_forward::primitive_desc(d, attr, cpuEngine());
  }
};

struct ConvFwdOp : Op {
  dnnl::convolution_forward::primitive_desc pd;
  dnnl::convolution_forward prim;
  Arg weights, src, dst;
  ConvFwdOp(const ConvGeometry &c, bool withBias)
      : pd(c.forwardPd(withBias)), prim(pd), weights(c.userWeights(), pd.weights_desc()), src(c.src(), pd.src_desc()),
        dst(c.dst(), pd.dst_desc()) {}
};

struct ConvBwdDataOp : Op {
  dnnl::convolution_backward_data::primitive_desc pd;
  dnnl::convolution_backward_data prim;
  Arg weights, diffDst, diffSrc;
  explicit ConvBwdDataOp(const ConvGeometry &c)
      : pd(dnnl::convolution_backward_data::desc(algorithm::convolution_direct, c.srcAct(), c.anyWeights(), c.dstAct(),
                                                 c.strides(), c.padL(), c.padR()),
           cpuEngine(), c.forwardPd(false)),
        prim(pd),
        weights(c.userWeights(), pd.weights_desc()), diffDst(c.dst(), pd.diff_dst_desc()), diffSrc(c.src(), pd.diff_src_desc()) {}
};

struct ConvBwdWeightsOp : Op {
  dnnl::convolution_backward_weights::primitive_desc pd;
  dnnl::convolution_backward_weights prim;
  Arg weights, src, diffDst;
  explicit ConvBwdWeightsOp(const ConvGeometry &c)
      : pd(dnnl::convolution_backward_weights::desc(algorithm::convolution_direct, c.srcAct(), c.anyWeights(), c.dstAct(),
                                                    c.strides(), c.padL(), c.padR()),
           cpuEngine(), c.forwardPd(false)),
        prim(pd),
        weights(c.userWeights(), pd.diff_weights_desc()), src(c.src(), pd.src_desc()), diffDst(c.dst(), pd.diff_dst_desc()) {}
};

void execute(dnnl::primitive &prim, const std::unordered_map<int, memory> &args) {
  prim.execute(cpuStream(), args);
  cpuStream().wait();
}

/** conv2dForward(params, x, w, bias | null, y) */
void conv2dForward(napi_env env, napi_value *argv) {
  const Ints p = intsArg(env, argv[0], kConvParams);
  const ConvGeometry c(p);
  Floats x = floatsArg(env, argv[1], c.srcSize(), "x");
  Floats w = floatsArg(env, argv[2], c.weightsSize(), "filter");
  Floats b = floatsArg(env, argv[3], c.oc, "bias", true);
  Floats y = floatsArg(env, argv[4], c.dstSize(), "y");
  const bool withBias = b.data != nullptr;
  auto &op = cached<ConvFwdOp>(keyOf("convF", p, {withBias}), [&] { return std::make_unique<ConvFwdOp>(c, withBias); });
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, op.src.in(x.data)},
      {DNNL_ARG_WEIGHTS, op.weights.in(w.data)},
      {DNNL_ARG_DST, op.dst.outTarget(y.data)},
  };
  if (withBias) args.emplace(DNNL_ARG_BIAS, memory(c.bias(), cpuEngine(), b.data));
  execute(op.prim, args);
  op.dst.out(y.data);
}

/** conv2dBackwardData(params, dy, w, dx) */
void conv2dBackwardData(napi_env env, napi_value *argv) {
  const Ints p = intsArg(env, argv[0], kConvParams);
  const ConvGeometry c(p);
  Floats dy = floatsArg(env, argv[1], c.dstSize(), "dy");
  Floats w = floatsArg(env, argv[2], c.weightsSize(), "filter");
  Floats dx = floatsArg(env, argv[3], c.srcSize(), "dx");
  auto &op = cached<ConvBwdDataOp>(keyOf("convD", p), [&] { return std::make_unique<ConvBwdDataOp>(c); });
  execute(op.prim, {
                       {DNNL_ARG_DIFF_DST, op.diffDst.in(dy.data)},
                       {DNNL_ARG_WEIGHTS, op.weights.in(w.data)},
                       {DNNL_ARG_DIFF_SRC, op.diffSrc.outTarget(dx.data)},
                   });
  op.diffSrc.out(dx.data);
}

/** conv2dBackwardFilter(params, x, dy, dw) */
void conv2dBackwardFilter(napi_env env, napi_value *argv) {
  const Ints p = intsArg(env, argv[0], kConvParams);
  const ConvGeometry c(p);
  Floats x = floatsArg(env, argv[1], c.srcSize(), "x");
  Floats dy = floatsArg(env, argv[2], c.dstSize(), "dy");
  Floats dw = floatsArg(env, argv[3], c.weightsSize(), "dw");
  auto &op = cached<ConvBwdWeightsOp>(keyOf("convW", p), [&] { return std::make_unique<ConvBwdWeightsOp>(c); });
  execute(op.prim, {
                       {DNNL_ARG_SRC, op.src.in(x.data)},
                       {DNNL_ARG_DIFF_DST, op.diffDst.in(dy.data)},
                       {DNNL_ARG_DIFF_WEIGHTS, op.weights.outTarget(dw.data)},
                   });
  op.weights.out(dw.data);
}

/**
 * run(begin, end) over [0, count) in blocks of `block`, the blocks spread over oneDNN's OpenMP
 * threads (one block runs on the calling thread alone). The blocks depend on count and block,
 * not on the number of threads, so a run whose work per block depends only on its range gives
 * the same bits on any number of threads.
 */
template <typename Run>
void forBlocks(size_t count, size_t block, Run run) {
  const int64_t blocks = static_cast<int64_t>((count + block - 1) / block);
#pragma omp parallel for schedule(static) if (blocks > 1)
  for (int64_t b = 0; b < blocks; b++) {
    const size_t begin = static_cast<size_t>(b) * block;
    run(begin, std::min(count, begin + block));
  }
}

/**
 * g = dy where y > 0, else 0: relu's gradient. dy is loaded whether or not it is kept, so the
 * select has no branch and the loop vectorises: written `y > 0 ? dy : 0` (a conditional load)
 * it stayed scalar and branchy, ~50 ms for conv1's 9.3M elements of random sign, ~7 ms now.
 */
void reluGrad(const float *__restrict y, const float *__restrict dy, float *__restrict g, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const float d = dy[i];
    g[i] = y[i] > 0.f ? d : 0.f;
  }
}

/** sum[c] += v[px][c] over `pixels` pixels of `channels` values. */
void channelSums(const float *__restrict v, double *__restrict sum, size_t pixels, size_t channels) {
  for (size_t px = 0; px < pixels; px++)
    for (size_t c = 0; c < channels; c++) sum[c] += v[px * channels + c];
}

/** Where a conv's gradient goes: NHWC, or oneDNN's [N, C/B, H, W, B] (nChw16c, nChw8c) with B > 0. */
struct GradLayout {
  size_t block = 0;
  /** Pixels an image (H x W): the blocked layout's stride between channel blocks. */
  size_t imagePixels = 0;
};

/** The layout `d` ([N, C, H, W]) as a GradLayout where it is one of whole B-channel blocks, else nullopt. */
std::optional<GradLayout> channelBlocks(const memory::desc &d, int64_t n, int64_t c, int64_t h, int64_t w) {
  for (const auto &[t, b] : {std::pair<tag, int64_t>{tag::nChw16c, 16}, std::pair<tag, int64_t>{tag::nChw8c, 8}})
    if (c % b == 0 && d == memory::desc({n, c, h, w}, dt::f32, t))
      return GradLayout{static_cast<size_t>(b), static_cast<size_t>(h * w)};
  return std::nullopt;
}

/** Pixels [first, first + count) of an NHWC run (`count` x C) to their places in a blocked tensor. */
void toChannelBlocks(const float *run, float *out, size_t first, size_t count, size_t channels, const GradLayout &l) {
  const size_t perPixel = channels / l.block;
  for (size_t i = 0; i < count; i++) {
    const size_t q = first + i, image = q / l.imagePixels, p = q % l.imagePixels;
    for (size_t cb = 0; cb < perPixel; cb++)
      std::memcpy(out + ((image * perPixel + cb) * l.imagePixels + p) * l.block, run + i * channels + cb * l.block,
                  l.block * sizeof(float));
  }
}

/**
 * A conv layer's output gradient and bias gradient, spread over the threads in blocks of
 * pixels: g = dy where y > 0, else 0 (relu's gradient; with `relu` false g is dy and is not
 * written), and db[c] = the sum of g over every pixel of channel c. Each block sums its pixels in
 * double and the blocks' sums are added in block order, so the result is the same on any number
 * of threads. With a blocked `layout` (relu only), g is written in it: the mask goes to a run of
 * pixels in cache, is summed there, then copied to its blocks; the same values and sums, and the
 * reorder oneDNN would otherwise run on g is not needed.
 */
void reluGradAndBiasSum(const float *y, const float *dy, float *g, size_t pixels, size_t channels, bool relu,
                        float *db, const GradLayout &layout = {}) {
  constexpr size_t kPixels = 1024, kRun = 64;
  const size_t blocks = (pixels + kPixels - 1) / kPixels;
  std::vector<double> partial(blocks * channels, 0.0);
  forBlocks(pixels, kPixels, [&](size_t begin, size_t end) {
    double *sums = partial.data() + (begin / kPixels) * channels;
    if (relu && layout.block > 0) {
      thread_local std::vector<float> run;
      run.resize(kRun * channels);
      for (size_t first = begin; first < end; first += kRun) {
        const size_t count = std::min(kRun, end - first), at = first * channels;
        reluGrad(y + at, dy + at, run.data(), count * channels);
        channelSums(run.data(), sums, count, channels);
        toChannelBlocks(run.data(), g, first, count, channels, layout);
      }
      return;
    }
    // The mask, then the sums over the block just written (in cache): one loop doing both, with
    // its float store and double sums, compiled to branchy scalar code (conv1's backward +40 ms).
    const size_t at = begin * channels, n = (end - begin) * channels;
    if (relu) reluGrad(y + at, dy + at, g + at, n);
    channelSums((relu ? g : dy) + at, sums, end - begin, channels);
  });
  for (size_t c = 0; c < channels; c++) {
    double total = 0.0;
    for (size_t b = 0; b < blocks; b++) total += partial[b * channels + c];
    db[c] = static_cast<float>(total);
  }
}

/**
 * convLayerBackward(params, x, w, y, dy, dx | null, dw, db): the gradients of a whole conv layer
 * y = act(conv(x, w) + b) (params as conv2dForward's; RELU says act). The relu's mask (y > 0)
 * is applied to dy here, the bias gradient summed here, then oneDNN's two backward passes:
 * one op instead of tfjs's Step, Multiply, Sum, and the split/concat of a grouped layer.
 */
void convLayerBackward(napi_env env, napi_value *argv) {
  const Ints p = intsArg(env, argv[0], kConvParams);
  ConvGeometry c(p);
  Floats x = floatsArg(env, argv[1], c.srcSize(), "x");
  Floats w = floatsArg(env, argv[2], c.weightsSize(), "filter");
  Floats y = floatsArg(env, argv[3], c.dstSize(), "y");
  Floats dy = floatsArg(env, argv[4], c.dstSize(), "dy");
  // dx null: the input needs no gradient (the images), and its pass is skipped.
  Floats dx = floatsArg(env, argv[5], c.srcSize(), "dx", true);
  Floats dw = floatsArg(env, argv[6], c.weightsSize(), "dw");
  Floats db = floatsArg(env, argv[7], c.oc, "db");
  const size_t n = c.dstSize();
  const size_t oc = static_cast<size_t>(c.oc);
  const bool relu = c.relu;
  // The backward primitives do not depend on the activation: share them with the plain kernels.
  Ints linear = p;
  std::vector<int32_t> copy(p.v, p.v + p.n);
  copy[16] = 0;
  linear.v = copy.data();
  c.relu = false;
  auto &bw = cached<ConvBwdWeightsOp>(keyOf("convW", linear), [&] { return std::make_unique<ConvBwdWeightsOp>(c); });
  ConvBwdDataOp *bd = dx.data == nullptr ? nullptr : &cached<ConvBwdDataOp>(keyOf("convD", linear), [&] {
    return std::make_unique<ConvBwdDataOp>(c);
  });
  // The gradient goes to the weights pass in its layout; the data pass reads the same copy when it
  // wants the same layout (it does, blocked or not). Where that layout is oneDNN's channel blocks,
  // the relu mask writes it there directly (into the weights pass's reorder buffer), else the mask
  // is written NHWC and reordered.
  const bool oneLayout = bd == nullptr || bd->pd.diff_dst_desc() == bw.pd.diff_dst_desc();
  const auto blocks = relu && oneLayout ? channelBlocks(bw.diffDst.want(), c.n, c.oc, c.oh, c.ow) : std::nullopt;
  memory gIn;
  float *g = dy.data;
  if (blocks) {
    gIn = bw.diffDst.direct();
    reluGradAndBiasSum(y.data, dy.data, static_cast<float *>(gIn.get_data_handle()), n / oc, oc, true, db.data,
                       *blocks);
  } else {
    // Reused across calls (JS calls in from one thread): a fresh buffer of the layer's size each
    // call would page-fault its way in every step.
    static std::vector<float> masked;
    if (relu && masked.size() < n) masked.resize(n);
    if (relu) g = masked.data();
    reluGradAndBiasSum(y.data, dy.data, relu ? g : nullptr, n / oc, oc, relu, db.data);
    gIn = bw.diffDst.in(g);
  }
  if (bd != nullptr) {
    execute(bd->prim, {
                          {DNNL_ARG_DIFF_DST, oneLayout ? gIn : bd->diffDst.in(g)},
                          {DNNL_ARG_WEIGHTS, bd->weights.in(w.data)},
                          {DNNL_ARG_DIFF_SRC, bd->diffSrc.outTarget(dx.data)},
                      });
    bd->diffSrc.out(dx.data);
  }
  execute(bw.prim, {
                       {DNNL_ARG_SRC, bw.src.in(x.data)},
                       {DNNL_ARG_DIFF_DST, gIn},
                       {DNNL_ARG_DIFF_WEIGHTS, bw.weights.outTarget(dw.data)},
                   });
  bw.weights.out(dw.data);
}

// ---------------------------------------------------------------------------------------------
// Matrix products, batched: C[b] = op(A[b]) op(B[b]) (+ bias, relu).
// Parameters: [BA, BB, M, K, N, TRANSPOSE_A, TRANSPOSE_B, RELU]; a batch of 1 broadcasts.
//
// Two ways, chosen by the product's form, never by timing (a run repeats bit for bit):
// - A as stored (the FC forward, y = x W, and dx = dy W^T): oneDNN's matmul primitive, built
//   once per shape, B's transpose given as strides. On AVX-512 oneDNN runs it as brgemm, which
//   beat sgemm by 10-30% on fc6/fc7 forward and dx (bench/onednn_probe.cc on the AMX Xeon,
//   docs/measurements.md, "FC products"); on AVX2 it runs on the same jit gemm as sgemm, at the
//   same speed (the probe with ONEDNN_MAX_CPU_ISA=AVX2).
// - A transposed (the weight gradient, dW = x^T dy): sgemm with 'T'. brgemm took twice as long
//   there (a strided A); sgemm was within a few percent of the fastest way on every machine
//   measured.
// The bias and relu of _FusedMatMul are one pass over C afterwards (M x N, small next to the
// product's K x N weights), the same pass for both ways.

constexpr size_t kMatMulParams = 8;

/** c[r][j] = act(c[r][j] + bias[j]) over `rows` rows of `n`; bias may be null. */
void biasRelu(float *c, size_t rows, size_t n, const float *bias, bool relu) {
  for (size_t r = 0; r < rows; r++) {
    float *row = c + r * n;
    if (bias != nullptr)
      for (size_t j = 0; j < n; j++) row[j] += bias[j];
    if (relu)
      // max(0, x) keeping NaN, as the unary relu.
      for (size_t j = 0; j < n; j++) row[j] = row[j] < 0.f ? 0.f : row[j];
  }
}

/** A row-major [rows, cols] matrix, or (transposed) one stored as [cols, rows] and read across. */
memory::desc rowMajor(int64_t rows, int64_t cols, bool transposed = false) {
  return transposed ? memory::desc({rows, cols}, dt::f32, dims{1, rows}) : memory::desc({rows, cols}, dt::f32, dims{cols, 1});
}

/** C [m, n] = A [m, k] B, B stored as [k, n] or (transposed) [n, k]: the matmul primitive. */
struct MatMulOp : Op {
  memory::desc aDesc, bDesc, cDesc;
  dnnl::matmul prim;
  MatMulOp(int64_t m, int64_t k, int64_t n, bool transposeB)
      : aDesc(rowMajor(m, k)), bDesc(rowMajor(k, n, transposeB)), cDesc(rowMajor(m, n)),
        prim(dnnl::matmul::primitive_desc(dnnl::matmul::desc(aDesc, bDesc, cDesc), cpuEngine())) {}

  void run(const float *a, const float *b, float *c) {
    // oneDNN takes a non-const handle; the primitive only reads A and B.
    execute(prim, {{DNNL_ARG_SRC, memory(aDesc, cpuEngine(), const_cast<float *>(a))},
                   {DNNL_ARG_WEIGHTS, memory(bDesc, cpuEngine(), const_cast<float *>(b))},
                   {DNNL_ARG_DST, memory(cDesc, cpuEngine(), c)}});
  }
};

/** matMul(params, a, b, bias | null, c) */
void matMul(napi_env env, napi_value *argv) {
  const Ints p = intsArg(env, argv[0], kMatMulParams);
  const int64_t ba = p[0], bb = p[1], m = p[2], k = p[3], n = p[4];
  const bool ta = p[5] != 0, tb = p[6] != 0, relu = p[7] != 0;
  if (ba != bb && ba != 1 && bb != 1) throw CallError("batch sizes must match or be 1");
  const int64_t batch = ba > bb ? ba : bb;
  Floats a = floatsArg(env, argv[1], product({ba, m, k}), "a");
  Floats b = floatsArg(env, argv[2], product({bb, k, n}), "b");
  Floats bias = floatsArg(env, argv[3], n, "bias", true);
  Floats c = floatsArg(env, argv[4], product({batch, m, n}), "c");
  // Stored row-major: A is [m, k] or, transposed, [k, m]; B is [k, n] or [n, k]. A row's length
  // is the leading dimension.
  const int64_t lda = ta ? m : k, ldb = tb ? k : n;
  if (m == 0 || n == 0) return;
  if (k == 0) {
    // An empty sum (sgemm rejects a leading dimension of 0).
    std::fill(c.data, c.data + c.length, 0.f);
  }
  // The primitive is per shape (keyed by every parameter; the batch and relu only add an entry).
  MatMulOp *op = ta || k == 0 ? nullptr
                              : &cached<MatMulOp>(keyOf("matmul", p), [&] { return std::make_unique<MatMulOp>(m, k, n, tb); });
  for (int64_t i = 0; i < batch && k > 0; i++) {
    const float *ai = a.data + (ba == 1 ? 0 : i) * m * k;
    const float *bi = b.data + (bb == 1 ? 0 : i) * k * n;
    float *ci = c.data + i * m * n;
    if (op != nullptr) {
      op->run(ai, bi, ci);
    } else {
      const auto status = dnnl::sgemm('T', tb ? 'T' : 'N', m, n, k, 1.f, ai, lda, bi, ldb, 0.f, ci, n);
      if (status != dnnl::status::success) throw CallError("oneDNN sgemm failed (status " + std::to_string(static_cast<int>(status)) + ")");
    }
  }
  if (bias.data != nullptr || relu) biasRelu(c.data, static_cast<size_t>(batch * m), static_cast<size_t>(n), bias.data, relu);
}

// ---------------------------------------------------------------------------------------------
// Max pooling over NHWC. Parameters: [N, IH, IW, C, OH, OW, KH, KW, SH, SW, PT, PL, PB, PR].
//
// Our own loops, not oneDNN's: its jit:avx2 NHWC max pooling took 5.8 ms forward and 5.1 ms
// backward for a small-preset step's first pool (64x28x28x32, 3/2), a tenth of the step;
// these take a fraction of that (docs/measurements.md, "Pooling and LRN loops"). Each output
// pixel's channels are one contiguous run, so every loop below runs across channels and
// vectorises.
//
// tfjs's semantics: a window's maximum is its first largest value in row-major window order
// (strict >, from -Infinity, so NaNs are passed over), padding is outside every window, and the
// gradient goes to that one position. The forward records the position (kh * KW + kw, or -1 for
// a window with no value above -Infinity) in the argmax workspace, one int32 per output
// element, which tfjs's MaxPoolGrad does not pass: the JS side keeps it (kernels.ts) and hands
// it back; without it the backward runs the forward again to get it.

constexpr size_t kPoolParams = 14;

struct PoolShape {
  int64_t n, ih, iw, c, oh, ow, kh, kw, sh, sw, pt, pl;
  explicit PoolShape(const Ints &p)
      : n(p[0]), ih(p[1]), iw(p[2]), c(p[3]), oh(p[4]), ow(p[5]), kh(p[6]), kw(p[7]), sh(p[8]), sw(p[9]),
        pt(p[10]), pl(p[11]) {
    if (sh < 1 || sw < 1 || kh < 1 || kw < 1) throw CallError("strides and window must be positive");
  }
  size_t srcSize() const { return product({n, ih, iw, c}); }
  size_t dstSize() const { return product({n, oh, ow, c}); }
  size_t workspaceBytes() const { return dstSize() * sizeof(int32_t); }
};

/** ceil(a / b) for b > 0 and any a. */
int64_t ceilDiv(int64_t a, int64_t b) { return a >= 0 ? (a + b - 1) / b : -((-a) / b); }

/**
 * One output row (row oy of an image) of the forward, into that row's y and argmax: the value
 * and window position of each maximum. window[u] is the input row oy * SH - PT + u, for the u
 * inside the image (the others are padding and never read): rows of x, or rows computed just
 * before (the LRN's, in lrnMaxPoolForward).
 */
SIMD_CLONES void maxPoolRow(const PoolShape &s, int64_t oy, const float *const *window, float *__restrict y,
                            int32_t *__restrict arg) {
  const int64_t c = s.c, y0 = oy * s.sh - s.pt;
  const int64_t khLo = std::max<int64_t>(0, -y0), khHi = std::min(s.kh, s.ih - y0);
  for (int64_t ox = 0; ox < s.ow; ox++) {
    const int64_t x0 = ox * s.sw - s.pl;
    const int64_t kwLo = std::max<int64_t>(0, -x0), kwHi = std::min(s.kw, s.iw - x0);
    float *__restrict yo = y + ox * c;
    int32_t *__restrict ao = arg + ox * c;
    for (int64_t j = 0; j < c; j++) {
      yo[j] = -INFINITY;
      ao[j] = -1;
    }
    for (int64_t u = khLo; u < khHi; u++) {
      for (int64_t v = kwLo; v < kwHi; v++) {
        const float *__restrict xp = window[u] + (x0 + v) * c;
        const int32_t pos = static_cast<int32_t>(u * s.kw + v);
        // Loads first and the position through a mask: written so, GCC vectorises the loop.
        for (int64_t j = 0; j < c; j++) {
          const float xv = xp[j], m = yo[j];
          const int32_t a = ao[j], larger = -static_cast<int32_t>(xv > m);
          yo[j] = xv > m ? xv : m;
          ao[j] = (pos & larger) | (a & ~larger);
        }
      }
    }
  }
}

/**
 * The forward's output rows r = (image, oy), shared among the threads of the enclosing parallel
 * region in contiguous runs (an orphaned `omp for`: each thread calls this, with its own rowOf).
 * rowOf(b, iy) gives input row iy of image b, for rows inside the image only.
 */
template <typename RowOf>
void maxPoolRows(const PoolShape &s, float *y, int32_t *arg, RowOf rowOf) {
  const int64_t rows = s.n * s.oh, outRow = s.ow * s.c;
  std::vector<const float *> window(static_cast<size_t>(s.kh));
#pragma omp for schedule(static)
  for (int64_t r = 0; r < rows; r++) {
    const int64_t b = r / s.oh, oy = r % s.oh, y0 = oy * s.sh - s.pt;
    for (int64_t u = 0; u < s.kh; u++)
      window[u] = y0 + u >= 0 && y0 + u < s.ih ? rowOf(b, y0 + u) : nullptr;
    maxPoolRow(s, oy, window.data(), y + r * outRow, arg + r * outRow);
  }
}

void maxPoolForward(const PoolShape &s, const float *x, float *y, int32_t *arg) {
  const int64_t inRow = s.iw * s.c;
#pragma omp parallel
  maxPoolRows(s, y, arg, [&](int64_t b, int64_t iy) { return x + (b * s.ih + iy) * inRow; });
}

/**
 * One input row (image b, row iy) of the backward, into that row of dx, each value written once:
 * the sum of dy over the windows that cover the pixel and whose maximum it was (a gather, so rows
 * run in parallel).
 * Summed in floats: where three or four windows share a pixel (3/2 pooling) the sum can differ
 * from tfjs's (doubles, rounded once) in the last bit. Summing in doubles made this loop 1.5-2x
 * slower (docs/measurements.md, "Pooling and LRN loops").
 */
SIMD_CLONES void maxPoolGradRow(const PoolShape &s, int64_t b, int64_t iy, const int32_t *__restrict arg,
                                const float *__restrict dy, float *__restrict dxRow) {
  const int64_t c = s.c;
  const int64_t oyLo = std::max<int64_t>(0, ceilDiv(iy + s.pt - s.kh + 1, s.sh));
  const int64_t oyHi = std::min(s.oh - 1, (iy + s.pt) / s.sh);
  for (int64_t ix = 0; ix < s.iw; ix++) {
    const int64_t oxLo = std::max<int64_t>(0, ceilDiv(ix + s.pl - s.kw + 1, s.sw));
    const int64_t oxHi = std::min(s.ow - 1, (ix + s.pl) / s.sw);
    float *__restrict d = dxRow + ix * c;
    for (int64_t j = 0; j < c; j++) d[j] = 0.f;
    for (int64_t oy = oyLo; oy <= oyHi; oy++) {
      for (int64_t ox = oxLo; ox <= oxHi; ox++) {
        const int32_t pos = static_cast<int32_t>((iy + s.pt - oy * s.sh) * s.kw + (ix + s.pl - ox * s.sw));
        const size_t at = static_cast<size_t>(((b * s.oh + oy) * s.ow + ox) * c);
        const int32_t *__restrict a = arg + at;
        const float *__restrict g = dy + at;
        for (int64_t j = 0; j < c; j++) {
          const float gj = g[j];
          const int32_t aj = a[j];
          d[j] += aj == pos ? gj : 0.f;
        }
      }
    }
  }
}

void maxPoolBackward(const PoolShape &s, const int32_t *arg, const float *dy, float *dx) {
  const int64_t rows = s.n * s.ih;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; r++) maxPoolGradRow(s, r / s.ih, r % s.ih, arg, dy, dx + r * s.iw * s.c);
}

/** The caller's argmax workspace (a Uint8Array of maxPoolWorkspaceBytes), or nullptr for null. */
int32_t *argmaxOf(napi_env env, napi_value value, const PoolShape &s) {
  void *bytes = typedArg(env, value, napi_uint8_array, "Uint8Array", s.workspaceBytes(), "workspace", true);
  if (reinterpret_cast<uintptr_t>(bytes) % alignof(int32_t) != 0) throw CallError("workspace must be 4-byte aligned");
  return static_cast<int32_t *>(bytes);
}

/**
 * A gradient call's argmax: the workspace it was handed, or for null one computed now by
 * forward(y, argmax) into scratch buffers (`scratch` keeps it alive for the call).
 */
template <typename Forward>
const int32_t *argmaxOrForward(const PoolShape &s, const int32_t *given, std::vector<int32_t> &scratch,
                               Forward forward) {
  if (given != nullptr) return given;
  std::vector<float> y(s.dstSize());
  scratch.resize(s.dstSize());
  forward(y.data(), scratch.data());
  return scratch.data();
}

/** maxPoolWorkspaceBytes(params): the size of the argmax workspace maxPool fills. */
napi_value maxPoolWorkspaceBytes(napi_env env, napi_value *argv) {
  const PoolShape s(intsArg(env, argv[0], kPoolParams));
  napi_value v;
  check(napi_create_double(env, static_cast<double>(s.workspaceBytes()), &v), "create_double");
  return v;
}

/** maxPool(params, x, y, workspace | null) */
void maxPool(napi_env env, napi_value *argv) {
  const PoolShape s(intsArg(env, argv[0], kPoolParams));
  Floats x = floatsArg(env, argv[1], s.srcSize(), "x");
  Floats y = floatsArg(env, argv[2], s.dstSize(), "y");
  int32_t *arg = argmaxOf(env, argv[3], s);
  std::vector<int32_t> scratch(arg == nullptr ? s.dstSize() : 0);
  maxPoolForward(s, x.data, y.data, arg != nullptr ? arg : scratch.data());
}

/**
 * maxPoolGrad(params, x, dy, dx, workspace | null): with the workspace maxPool filled for this
 * x, the backward alone; without, the forward first, to get it.
 */
void maxPoolGrad(napi_env env, napi_value *argv) {
  const PoolShape s(intsArg(env, argv[0], kPoolParams));
  Floats x = floatsArg(env, argv[1], s.srcSize(), "x");
  Floats dy = floatsArg(env, argv[2], s.dstSize(), "dy");
  Floats dx = floatsArg(env, argv[3], s.srcSize(), "dx");
  std::vector<int32_t> scratch;
  const int32_t *arg = argmaxOrForward(s, argmaxOf(env, argv[4], s), scratch,
                                       [&](float *y, int32_t *a) { maxPoolForward(s, x.data, y, a); });
  maxPoolBackward(s, arg, dy.data, dx.data);
}

// ---------------------------------------------------------------------------------------------
// Local response normalisation across channels, tfjs's definition: with the window
// W(c) = [c - r, c + r] clipped to the channels and norm_c = bias + alpha sum_{j in W(c)} x_j^2,
// y_c = x_c norm_c^-beta. Parameters: [N, H, W, C, DEPTH_RADIUS]; floats: [bias, alpha, beta].
//
// Our own loops, not oneDNN's: for NHWC (channels innermost) oneDNN 2.6 runs LRN in its
// reference implementation, 5-6 ns an element here (13 of a small-preset step's 45 ms). Here
// each pixel's channels are one contiguous run: the squares go into a buffer padded with r
// zeros at both ends, so every window is the same 2r + 1 adds (in tfjs's order) and the loops
// vectorise across channels; beta 0.75 (the paper's) and 0.5 use square roots, not pow.

constexpr size_t kLrnParams = 5;

struct LrnShape {
  size_t pixels, channels, radius;
  float bias, alpha, beta;
  LrnShape(const Ints &p, const Floats &f)
      : pixels(product({p[0], p[1], p[2]})), channels(static_cast<size_t>(p[3])), radius(static_cast<size_t>(p[4])),
        bias(f.data[0]), alpha(f.data[1]), beta(f.data[2]) {
    if (p[3] < 1) throw CallError("LRN needs at least one channel");
  }
  size_t elements() const { return pixels * channels; }
};

/** out_j = norm_j^-beta: square roots for the common betas (the branch outside the loops, so they vectorise). */
[[gnu::always_inline]] inline void powMinusBeta(const float *norm, float *out, size_t c, float beta) {
  if (beta == 0.75f) {
    for (size_t j = 0; j < c; j++) {
      const float q = std::sqrt(norm[j]);
      out[j] = 1.f / (q * std::sqrt(q));
    }
  } else if (beta == 0.5f) {
    for (size_t j = 0; j < c; j++) out[j] = 1.f / std::sqrt(norm[j]);
  } else {
    for (size_t j = 0; j < c; j++) out[j] = std::pow(norm[j], -beta);
  }
}

/**
 * sum_j = the 2r + 1 values padded[j .. j + 2r], added from 0 in that order (tfjs's), for the C
 * channels. The paper's radius 2 in one pass, its five terms in registers; any other radius in
 * 2r + 1 passes over `sum`. The same additions in the same order either way.
 */
[[gnu::always_inline]] inline void windowSums(const float *padded, float *sum, size_t c, size_t r) {
  if (r == 2) {
    for (size_t j = 0; j < c; j++)
      sum[j] = (((0.f + padded[j]) + padded[j + 1]) + padded[j + 2] + padded[j + 3]) + padded[j + 4];
    return;
  }
  for (size_t j = 0; j < c; j++) sum[j] = 0.f;
  for (size_t d = 0; d <= 2 * r; d++)
    for (size_t j = 0; j < c; j++) sum[j] += padded[j + d];
}

/** norm_c for one pixel's channels, into `norm`; `padded` has C + 2r floats, its ends zero. */
[[gnu::always_inline]] inline void lrnNorms(const LrnShape &s, const float *x, float *padded, float *norm) {
  const size_t c = s.channels, r = s.radius;
  for (size_t j = 0; j < c; j++) padded[r + j] = x[j] * x[j];
  windowSums(padded, norm, c, r);
  for (size_t j = 0; j < c; j++) norm[j] = s.bias + s.alpha * norm[j];
}

/** y for pixels [begin, end). */
SIMD_CLONES void lrnPixels(const LrnShape &s, const float *x, float *y, size_t begin, size_t end) {
  const size_t c = s.channels;
  std::vector<float> padded(c + 2 * s.radius, 0.f), norm(c), scale(c);
  for (size_t px = begin; px < end; px++) {
    const float *xp = x + px * c;
    float *yp = y + px * c;
    lrnNorms(s, xp, padded.data(), norm.data());
    powMinusBeta(norm.data(), scale.data(), c, s.beta);
    for (size_t j = 0; j < c; j++) yp[j] = xp[j] * scale[j];
  }
}

/** dx for pixels [begin, end): see lrnGrad. */
SIMD_CLONES void lrnGradPixels(const LrnShape &s, const float *x, const float *dy, float *dx, size_t begin,
                               size_t end) {
  const size_t c = s.channels, r = s.radius;
  const float twoAlphaBeta = 2.f * s.alpha * s.beta;
  std::vector<float> padded(c + 2 * r, 0.f), norm(c), scale(c), tPadded(c + 2 * r, 0.f), tSum(c);
  for (size_t px = begin; px < end; px++) {
    const float *xp = x + px * c;
    const float *dyp = dy + px * c;
    float *dxp = dx + px * c;
    lrnNorms(s, xp, padded.data(), norm.data());
    powMinusBeta(norm.data(), scale.data(), c, s.beta);
    for (size_t j = 0; j < c; j++) tPadded[r + j] = dyp[j] * (xp[j] * scale[j]) / norm[j];
    windowSums(tPadded.data(), tSum.data(), c, r);
    for (size_t j = 0; j < c; j++) dxp[j] = dyp[j] * scale[j] - twoAlphaBeta * xp[j] * tSum[j];
  }
}

/** LRN's pixels go in blocks of 256 (a pixel's channels are one run). */
constexpr size_t kPixelBlock = 256;

/** lrn(params, [bias, alpha, beta], x, y) */
void lrn(napi_env env, napi_value *argv) {
  const Ints p = intsArg(env, argv[0], kLrnParams);
  const LrnShape s(p, floatsArg(env, argv[1], 3, "lrn constants"));
  Floats x = floatsArg(env, argv[2], s.elements(), "x");
  Floats y = floatsArg(env, argv[3], s.elements(), "y");
  forBlocks(s.pixels, kPixelBlock, [&](size_t begin, size_t end) { lrnPixels(s, x.data, y.data, begin, end); });
}

/**
 * lrnGrad(params, [bias, alpha, beta], x, dy, dx): with t_i = dy_i y_i / norm_i,
 * dx_k = dy_k norm_k^-beta - 2 alpha beta x_k sum_{i in W(k)} t_i (the windows are symmetric).
 */
void lrnGrad(napi_env env, napi_value *argv) {
  const Ints p = intsArg(env, argv[0], kLrnParams);
  const LrnShape s(p, floatsArg(env, argv[1], 3, "lrn constants"));
  Floats x = floatsArg(env, argv[2], s.elements(), "x");
  Floats dy = floatsArg(env, argv[3], s.elements(), "dy");
  Floats dx = floatsArg(env, argv[4], s.elements(), "dx");
  forBlocks(s.pixels, kPixelBlock,
            [&](size_t begin, size_t end) { lrnGradPixels(s, x.data, dy.data, dx.data, begin, end); });
}

// ---------------------------------------------------------------------------------------------
// LRN and the max pool after it as one op (the paper's conv1 and conv2): the same loops as the
// two ops, so the same bits, without the LRN's output. Unfused, the LRN wrote a tensor the size
// of the conv's output (37 MB for the paper's conv1 at batch 32) for the pool to read back, and
// the pool's gradient wrote one as large for LRNGrad to read. Here the forward normalises the
// input rows each output row's windows need, into a ring of KH rows per thread (each row once
// per thread), and pools from them; the backward gathers each input row's pooled gradient into
// one row buffer and takes the LRN's gradient of it at once.

/**
 * A thread's normalised input rows, kept for its next output rows: slot iy % KH holds one, and
 * held_ says which (b * IH + iy for row iy of image b; -1 before the first). An output row's KH
 * input rows are consecutive, so they never share a slot.
 */
class LrnRowRing {
 public:
  LrnRowRing(const LrnShape &l, const PoolShape &s, const float *x)
      : l_(l), s_(s), x_(x), rowFloats_(static_cast<size_t>(s.iw * s.c)),
        rows_(static_cast<size_t>(s.kh) * rowFloats_), held_(static_cast<size_t>(s.kh), -1) {}

  /** Row iy (inside the image) of image b, normalised. */
  const float *row(int64_t b, int64_t iy) {
    const int64_t key = b * s_.ih + iy;
    const size_t slot = static_cast<size_t>(iy % s_.kh);
    float *dst = rows_.data() + slot * rowFloats_;
    if (held_[slot] != key) {
      lrnPixels(l_, x_ + static_cast<size_t>(key) * rowFloats_, dst, 0, static_cast<size_t>(s_.iw));
      held_[slot] = key;
    }
    return dst;
  }

 private:
  const LrnShape &l_;
  const PoolShape &s_;
  const float *x_;
  size_t rowFloats_;
  std::vector<float> rows_;
  std::vector<int64_t> held_;
};

void lrnMaxPoolForward(const LrnShape &l, const PoolShape &s, const float *x, float *y, int32_t *arg) {
#pragma omp parallel
  {
    LrnRowRing ring(l, s, x);
    maxPoolRows(s, y, arg, [&](int64_t b, int64_t iy) { return ring.row(b, iy); });
  }
}

void lrnMaxPoolBackward(const LrnShape &l, const PoolShape &s, const float *x, const int32_t *arg, const float *dy,
                        float *dx) {
  const int64_t rows = s.n * s.ih, rowFloats = s.iw * s.c;
#pragma omp parallel
  {
    std::vector<float> pooled(static_cast<size_t>(rowFloats));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
      maxPoolGradRow(s, r / s.ih, r % s.ih, arg, dy, pooled.data());
      lrnGradPixels(l, x + r * rowFloats, pooled.data(), dx + r * rowFloats, 0, static_cast<size_t>(s.iw));
    }
  }
}

/** The LRN's and the pool's parameters, checked to describe the same input. */
struct LrnPool {
  LrnShape lrn;
  PoolShape pool;
  LrnPool(napi_env env, napi_value *argv)
      : lrn(intsArg(env, argv[0], kLrnParams), floatsArg(env, argv[1], 3, "lrn constants")),
        pool(intsArg(env, argv[2], kPoolParams)) {
    if (lrn.pixels != static_cast<size_t>(pool.n * pool.ih * pool.iw) || lrn.channels != static_cast<size_t>(pool.c))
      throw CallError("the LRN and the pool after it must have the same input shape");
  }
};

/** lrnMaxPool(lrnParams, lrnConstants, poolParams, x, y, workspace | null): y = maxPool(lrn(x)). */
void lrnMaxPool(napi_env env, napi_value *argv) {
  const LrnPool p(env, argv);
  Floats x = floatsArg(env, argv[3], p.pool.srcSize(), "x");
  Floats y = floatsArg(env, argv[4], p.pool.dstSize(), "y");
  int32_t *arg = argmaxOf(env, argv[5], p.pool);
  std::vector<int32_t> scratch(arg == nullptr ? p.pool.dstSize() : 0);
  lrnMaxPoolForward(p.lrn, p.pool, x.data, y.data, arg != nullptr ? arg : scratch.data());
}

/**
 * lrnMaxPoolGrad(lrnParams, lrnConstants, poolParams, x, dy, dx, workspace | null): with the
 * workspace lrnMaxPool filled for this x, the backward alone; without, the forward first.
 */
void lrnMaxPoolGrad(napi_env env, napi_value *argv) {
  const LrnPool p(env, argv);
  Floats x = floatsArg(env, argv[3], p.pool.srcSize(), "x");
  Floats dy = floatsArg(env, argv[4], p.pool.dstSize(), "dy");
  Floats dx = floatsArg(env, argv[5], p.pool.srcSize(), "dx");
  std::vector<int32_t> scratch;
  const int32_t *arg = argmaxOrForward(p.pool, argmaxOf(env, argv[6], p.pool), scratch,
                                       [&](float *y, int32_t *a) { lrnMaxPoolForward(p.lrn, p.pool, x.data, y, a); });
  lrnMaxPoolBackward(p.lrn, p.pool, x.data, arg, dy.data, dx.data);
}

// ---------------------------------------------------------------------------------------------
// Element-wise ops: plain loops the compiler vectorises; memory-bound, so one pass each.
// binary(params [OP, MODE, N, C], a, b, out): OP 0 add, 1 sub, 2 mul, 3 div. MODE says how b
// (or a) broadcasts: 0 same shape (all N), 1 b is one value, 2 a is one value, 3 b is a vector
// of C repeated over a (N = k C), 4 a is that vector, 5 b is one value per row of C (a softmax's
// max or sum against its logits, N / C values), 6 a is that. out has N elements.
// unary(params [OP, N], alpha, x, out): OP 0 relu, 1 step (x > 0 ? 1 : alpha, NaN kept),
// 2 sqrt, 3 square.

constexpr size_t kBinaryParams = 4;
constexpr size_t kUnaryParams = 2;

template <typename F>
void binaryLoop(F f, int64_t mode, size_t n, size_t c, const float *a, const float *b, float *out) {
  switch (mode) {
    case 0:
      for (size_t i = 0; i < n; i++) out[i] = f(a[i], b[i]);
      break;
    case 1: {
      const float s = b[0];
      for (size_t i = 0; i < n; i++) out[i] = f(a[i], s);
      break;
    }
    case 2: {
      const float s = a[0];
      for (size_t i = 0; i < n; i++) out[i] = f(s, b[i]);
      break;
    }
    case 3:
      for (size_t base = 0; base < n; base += c)
        for (size_t j = 0; j < c; j++) out[base + j] = f(a[base + j], b[j]);
      break;
    case 4:
      for (size_t base = 0; base < n; base += c)
        for (size_t j = 0; j < c; j++) out[base + j] = f(a[j], b[base + j]);
      break;
    case 5:
      for (size_t base = 0, row = 0; base < n; base += c, row++) {
        const float s = b[row];
        for (size_t j = 0; j < c; j++) out[base + j] = f(a[base + j], s);
      }
      break;
    case 6:
      for (size_t base = 0, row = 0; base < n; base += c, row++) {
        const float s = a[row];
        for (size_t j = 0; j < c; j++) out[base + j] = f(s, b[base + j]);
      }
      break;
    default:
      throw CallError("unknown broadcast mode");
  }
}

/** binary(params, a, b, out) */
void binary(napi_env env, napi_value *argv) {
  const Ints p = intsArg(env, argv[0], kBinaryParams);
  const int64_t op = p[0], mode = p[1];
  const size_t n = static_cast<size_t>(p[2]), c = static_cast<size_t>(p[3]);
  if (mode < 0 || mode > 6) throw CallError("unknown broadcast mode");
  if (mode >= 3 && (c == 0 || n % c != 0)) throw CallError("row length must divide the size");
  const size_t aLen = mode == 2 ? 1 : mode == 4 ? c : mode == 6 ? n / c : n;
  const size_t bLen = mode == 1 ? 1 : mode == 3 ? c : mode == 5 ? n / c : n;
  Floats a = floatsArg(env, argv[1], aLen, "a");
  Floats b = floatsArg(env, argv[2], bLen, "b");
  Floats out = floatsArg(env, argv[3], n, "out");
  switch (op) {
    case 0: binaryLoop([](float x, float y) { return x + y; }, mode, n, c, a.data, b.data, out.data); break;
    case 1: binaryLoop([](float x, float y) { return x - y; }, mode, n, c, a.data, b.data, out.data); break;
    case 2: binaryLoop([](float x, float y) { return x * y; }, mode, n, c, a.data, b.data, out.data); break;
    case 3: binaryLoop([](float x, float y) { return x / y; }, mode, n, c, a.data, b.data, out.data); break;
    default: throw CallError("unknown binary op");
  }
}

/** unary(params, [alpha], x, out) */
void unary(napi_env env, napi_value *argv) {
  const Ints p = intsArg(env, argv[0], kUnaryParams);
  const size_t n = static_cast<size_t>(p[1]);
  Floats alpha = floatsArg(env, argv[1], 1, "alpha");
  Floats x = floatsArg(env, argv[2], n, "x");
  Floats out = floatsArg(env, argv[3], n, "out");
  const float al = alpha.data[0];
  const float *xs = x.data;
  float *ys = out.data;
  switch (p[0]) {
    case 0:
      // max(0, x) keeping NaN, as tfjs's Math.max(0, x).
      for (size_t i = 0; i < n; i++) ys[i] = xs[i] < 0.f ? 0.f : xs[i];
      break;
    case 1:
      for (size_t i = 0; i < n; i++) ys[i] = xs[i] > 0.f ? 1.f : (xs[i] != xs[i] ? xs[i] : al);
      break;
    case 2:
      for (size_t i = 0; i < n; i++) ys[i] = std::sqrt(xs[i]);
      break;
    case 3:
      for (size_t i = 0; i < n; i++) ys[i] = xs[i] * xs[i];
      break;
    default:
      throw CallError("unknown unary op");
  }
}

/**
 * The output buffers of an update: the state itself when the caller passes it as the output (in
 * place, the usual case: see storage-pool.ts), else a copy of the state into fresh outputs first.
 * Either way the loop below then updates the outputs in place, with no pointer aliasing another
 * (so the compiler vectorises it).
 */
float *updateTarget(const Floats &state, Floats &out) {
  if (out.data != state.data) std::memcpy(out.data, state.data, state.length * sizeof(float));
  return out.data;
}

/**
 * The updates are memory-bound (fc6 alone streams 151 MB of weights, 3 states read and 2 written
 * for SGD): on more than one thread they run in blocks of 64 Ki elements across the team, so a
 * worker with 2 threads updates at both cores' bandwidth. Small tensors (biases) stay one block.
 */
constexpr size_t kUpdateBlock = size_t{1} << 16;

/** The update loops assume no two of these overlap: the same buffer twice is a caller's bug. */
void requireDistinct(std::initializer_list<const float *> buffers, const char *names) {
  for (auto a = buffers.begin(); a != buffers.end(); ++a)
    for (auto b = a + 1; b != buffers.end(); ++b)
      if (*a == *b) throw CallError(std::string(names) + " must be distinct buffers");
}

/**
 * sgdMomentum(params [N], [momentum, lrScaled, decayLr], w, v, g, wOut, vOut): the paper's
 * update in one pass: v' = momentum v - decayLr w - lrScaled g; w' = w + v'. wOut, vOut may be
 * w, v themselves.
 */
void sgdStep(float *__restrict w, float *__restrict v, const float *__restrict g, size_t n, float momentum, float lrScaled, float decayLr) {
  for (size_t i = 0; i < n; i++) {
    const float vn = momentum * v[i] - lrScaled * g[i] - decayLr * w[i];
    v[i] = vn;
    w[i] = w[i] + vn;
  }
}

void sgdMomentum(napi_env env, napi_value *argv) {
  const Ints p = intsArg(env, argv[0], 1);
  const size_t n = static_cast<size_t>(p[0]);
  Floats k = floatsArg(env, argv[1], 3, "constants");
  Floats w = floatsArg(env, argv[2], n, "w");
  Floats v = floatsArg(env, argv[3], n, "v");
  Floats g = floatsArg(env, argv[4], n, "g");
  Floats wOut = floatsArg(env, argv[5], n, "wOut");
  Floats vOut = floatsArg(env, argv[6], n, "vOut");
  requireDistinct({w.data, v.data, g.data}, "w, v and g");
  float *wt = updateTarget(w, wOut), *vt = updateTarget(v, vOut);
  forBlocks(n, kUpdateBlock, [&](size_t begin, size_t end) {
    sgdStep(wt + begin, vt + begin, g.data + begin, end - begin, k.data[0], k.data[1], k.data[2]);
  });
}

/**
 * adam(params [N], [beta1, 1 - beta1, beta2, 1 - beta2, epsilon, stepSize, gradScale, decay],
 * w, m, v, g, wOut, mOut, vOut): Adam with L2 decay in the gradient, in one pass, in the order
 * of the tfjs ops it replaces (src/train/optimizer.ts): g' = g gradScale + decay w;
 * m' = beta1 m + (1 - beta1) g'; v' = beta2 v + (1 - beta2) g'^2; w' = w - m' stepSize /
 * (sqrt(v') + epsilon). The outputs may be the state itself.
 */
void adamStep(float *__restrict w, float *__restrict m, float *__restrict v, const float *__restrict g, size_t n, const float *k) {
  const float b1 = k[0], c1 = k[1], b2 = k[2], c2 = k[3], eps = k[4], step = k[5], scale = k[6], decay = k[7];
  for (size_t i = 0; i < n; i++) {
    float gi = scale == 1.f ? g[i] : g[i] * scale;
    if (decay > 0.f) gi = gi + w[i] * decay;
    const float mi = m[i] * b1 + gi * c1;
    const float vi = v[i] * b2 + (gi * gi) * c2;
    m[i] = mi;
    v[i] = vi;
    w[i] = w[i] - (mi * step) / (std::sqrt(vi) + eps);
  }
}

void adam(napi_env env, napi_value *argv) {
  const Ints p = intsArg(env, argv[0], 1);
  const size_t n = static_cast<size_t>(p[0]);
  Floats k = floatsArg(env, argv[1], 8, "constants");
  Floats w = floatsArg(env, argv[2], n, "w");
  Floats m = floatsArg(env, argv[3], n, "m");
  Floats v = floatsArg(env, argv[4], n, "v");
  Floats g = floatsArg(env, argv[5], n, "g");
  Floats wOut = floatsArg(env, argv[6], n, "wOut");
  Floats mOut = floatsArg(env, argv[7], n, "mOut");
  Floats vOut = floatsArg(env, argv[8], n, "vOut");
  requireDistinct({w.data, m.data, v.data, g.data}, "w, m, v and g");
  float *wt = updateTarget(w, wOut), *mt = updateTarget(m, mOut), *vt = updateTarget(v, vOut);
  forBlocks(n, kUpdateBlock, [&](size_t begin, size_t end) {
    adamStep(wt + begin, mt + begin, vt + begin, g.data + begin, end - begin, k.data);
  });
}

// ---------------------------------------------------------------------------------------------
// Denormals. Training drives some values below FLT_MIN (Adam's squared gradients, gradients of
// dying units), and x86 computes with such subnormal floats through a microcode assist, each
// operation many times slower than a normal one. A small-preset step took 55 ms on a fresh
// model and 78 ms once they appeared, 53 ms throughout with them flushed (docs/measurements.md,
// "Denormals"). So every call into this addon flushes them to zero (MXCSR's FTZ and DAZ), as
// TensorFlow's CPU kernels do by default, and puts the caller's MXCSR back on return:
// JavaScript's own arithmetic on this thread keeps IEEE subnormals. OpenMP's threads run only
// kernels and keep the flush for good (setThreads). Elsewhere than x86 this is a no-op.

#if defined(__x86_64__) || defined(__i386__)
constexpr unsigned kFlushToZero = 0x8000, kDenormalsAreZero = 0x0040;

/** Sets FTZ and DAZ on this thread for its lifetime; the previous MXCSR comes back after. */
class FlushDenormals {
 public:
  FlushDenormals() : previous_(_mm_getcsr()) { _mm_setcsr(previous_ | kFlushToZero | kDenormalsAreZero); }
  ~FlushDenormals() { _mm_setcsr(previous_); }
  FlushDenormals(const FlushDenormals &) = delete;
  FlushDenormals &operator=(const FlushDenormals &) = delete;

 private:
  unsigned previous_;
};

void flushDenormalsForGood() { _mm_setcsr(_mm_getcsr() | kFlushToZero | kDenormalsAreZero); }
#else
struct FlushDenormals {};
void flushDenormalsForGood() {}
#endif

// ---------------------------------------------------------------------------------------------
// Process settings and identity.

/** setThreads(n): oneDNN's OpenMP threads for calls from this (the JS) thread. */
void setThreads(napi_env env, napi_value *argv) {
  int32_t n = 0;
  check(napi_get_value_int32(env, argv[0], &n), "threads must be a number");
  if (n < 1) throw CallError("threads must be at least 1");
  omp_set_num_threads(n);
  // The team's threads, created now or before, flush denormals like this thread in a call.
#pragma omp parallel
  flushDenormalsForGood();
}

napi_value makeString(napi_env env, const std::string &s) {
  napi_value v;
  check(napi_create_string_utf8(env, s.c_str(), s.size(), &v), "create_string");
  return v;
}

/** version(): the oneDNN this addon was compiled against and the one loaded now. */
napi_value version(napi_env env, napi_callback_info) {
  napi_value obj;
  check(napi_create_object(env, &obj), "create_object");
  const dnnl_version_t *v = dnnl_version();
  const std::string compiled = std::to_string(DNNL_VERSION_MAJOR) + "." + std::to_string(DNNL_VERSION_MINOR) + "." +
                               std::to_string(DNNL_VERSION_PATCH);
  const std::string runtime = std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
  check(napi_set_named_property(env, obj, "compiled", makeString(env, compiled)), "set compiled");
  check(napi_set_named_property(env, obj, "runtime", makeString(env, runtime)), "set runtime");
  return obj;
}

/** The number of cached primitives (tests: a leak would grow it at fixed shapes). */
napi_value cacheSize(napi_env env, napi_callback_info) {
  napi_value v;
  check(napi_create_uint32(env, static_cast<uint32_t>(cache().size()), &v), "create_uint32");
  return v;
}

// ---------------------------------------------------------------------------------------------
// Signals. oneDNN's JIT f32 gemm kernels (sgemm, and the gemm-based convolutions) point the stack
// pointer into a heap buffer while they run (uxlfoundation/oneDNN#4845, fixed upstream by #4855
// after the libdnnl that Debian ships). A signal handled on that thread pushes its frame onto
// the heap: Ctrl-C's SIGINT, or a profiler's SIGPROF (`node --cpu-prof` aborted in the first FC
// product with "corrupted size vs. prev_size"). So every call into this addon runs with the
// asynchronous signals blocked on its thread. A signal sent to the process (Ctrl-C, kill) is
// taken at once by another thread; one sent to this thread (V8's profiler's SIGPROF) waits for
// the call to return. OpenMP's threads, created inside a call, inherit the block for good.

/** Blocks the asynchronous signals on this thread for its lifetime (not faults: they must kill). */
class DeferredSignals {
 public:
  DeferredSignals() {
    sigset_t deferred;
    sigfillset(&deferred);
    for (int fault : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGABRT, SIGSYS}) sigdelset(&deferred, fault);
    pthread_sigmask(SIG_BLOCK, &deferred, &previous_);
  }
  ~DeferredSignals() { pthread_sigmask(SIG_SETMASK, &previous_, nullptr); }
  DeferredSignals(const DeferredSignals &) = delete;
  DeferredSignals &operator=(const DeferredSignals &) = delete;

 private:
  sigset_t previous_;
};

using Body = void (*)(napi_env, napi_value *);
using ValueBody = napi_value (*)(napi_env, napi_value *);

/**
 * Runs a body with its arguments (signals deferred) and returns its value, turning every C++
 * exception into a JS Error.
 */
template <ValueBody body, size_t argc>
napi_value guardedValue(napi_env env, napi_callback_info info) {
  const DeferredSignals deferred;
  const FlushDenormals flush;
  napi_value argv[argc];
  size_t n = argc;
  try {
    check(napi_get_cb_info(env, info, &n, argv, nullptr, nullptr), "get_cb_info");
    if (n < argc) throw CallError("expected " + std::to_string(argc) + " arguments, got " + std::to_string(n));
    return body(env, argv);
  } catch (const dnnl::error &e) {
    napi_throw_error(env, "ERR_DNNL", (std::string("oneDNN: ") + e.what() + " (status " + std::to_string(e.status) + ")").c_str());
  } catch (const std::exception &e) {
    napi_throw_error(env, "ERR_NATIVE_KERNEL", e.what());
  } catch (...) {
    napi_throw_error(env, "ERR_NATIVE_KERNEL", "unknown C++ exception");
  }
  return nullptr;
}

template <Body body>
napi_value returningUndefined(napi_env env, napi_value *argv) {
  body(env, argv);
  return nullptr;
}

/** A kernel body (it writes its outputs, returns nothing), guarded as guardedValue. */
template <Body body, size_t argc>
napi_value guarded(napi_env env, napi_callback_info info) {
  return guardedValue<returningUndefined<body>, argc>(env, info);
}

napi_value init(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      {"conv2dForward", nullptr, guarded<conv2dForward, 5>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"conv2dBackwardData", nullptr, guarded<conv2dBackwardData, 4>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"conv2dBackwardFilter", nullptr, guarded<conv2dBackwardFilter, 4>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"convLayerBackward", nullptr, guarded<convLayerBackward, 8>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"matMul", nullptr, guarded<matMul, 5>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"maxPool", nullptr, guarded<maxPool, 4>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"maxPoolGrad", nullptr, guarded<maxPoolGrad, 5>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"maxPoolWorkspaceBytes", nullptr, guardedValue<maxPoolWorkspaceBytes, 1>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"lrn", nullptr, guarded<lrn, 4>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"lrnGrad", nullptr, guarded<lrnGrad, 5>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"lrnMaxPool", nullptr, guarded<lrnMaxPool, 6>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"lrnMaxPoolGrad", nullptr, guarded<lrnMaxPoolGrad, 7>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"binary", nullptr, guarded<binary, 4>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"unary", nullptr, guarded<unary, 4>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"sgdMomentum", nullptr, guarded<sgdMomentum, 7>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"adam", nullptr, guarded<adam, 9>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"setThreads", nullptr, guarded<setThreads, 1>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"version", nullptr, version, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"cacheSize", nullptr, cacheSize, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return nullptr;
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
