/**
 * The fast path for plain JPEGs (typed in src/data/decode/jpeg-addon.ts, used by decode.ts on
 * every thread; in training, the decode threads): libjpeg-turbo decodes at the smallest M/8
 * scale whose shorter side still covers the square (its DCT-domain scaling, which libvips uses
 * only for 2x and more), then the square is resampled with taps the caller computed
 * (src/data/decode/resample.ts), in the same order and in the same double arithmetic as
 * resample.ts, so both give the same bytes.
 *
 * It takes only the plain files: 8-bit, gray or YCbCr/RGB, no ICC profile, no decoder warning;
 * the caller reads the EXIF orientation, and the image is turned upright as sharp turns it. For
 * anything else it returns a reason and decode.ts uses sharp, which then decides (colour
 * management, truncated data refused, benign warnings kept). Synchronous: it runs on the
 * calling thread (a decode thread, in training).
 *
 * The resample alone (resampleSquare) also serves images decoded elsewhere: plain PNGs, which
 * png.ts decodes in JS; the same bytes as resample.ts, in a fraction of its time.
 */
#include <node_api.h>

#include <algorithm>
#include <csetjmp>
#include <cstdint>
#include <cstdio>  // jpeglib.h needs FILE
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include <jpeglib.h>

namespace {

// ---------------------------------------------------------------------------------------------
// libjpeg with errors as a return value: its error_exit longjmps back here. Nothing between
// setjmp and the libjpeg calls owns a destructor (longjmp would skip it).

struct Decoder {
  jpeg_decompress_struct cinfo;
  jpeg_error_mgr err;
  jmp_buf escape;
  int warnings = 0;
  char message[JMSG_LENGTH_MAX] = {0};
};

void onError(j_common_ptr cinfo) {
  Decoder *d = reinterpret_cast<Decoder *>(cinfo->client_data);
  (*cinfo->err->format_message)(cinfo, d->message);
  longjmp(d->escape, 1);
}

void onMessage(j_common_ptr cinfo, int level) {
  if (level < 0) reinterpret_cast<Decoder *>(cinfo->client_data)->warnings++;  // corrupt data, not trace output
}

// Why sharp must take this file, or nullptr when the fast path can.
const char *unsupported(const jpeg_decompress_struct &c) {
  if (c.data_precision != 8) return "not 8-bit";
  const bool gray = c.num_components == 1 && c.jpeg_color_space == JCS_GRAYSCALE;
  const bool colour = c.num_components == 3 && (c.jpeg_color_space == JCS_YCbCr || c.jpeg_color_space == JCS_RGB);
  if (!gray && !colour) return "not gray, YCbCr or RGB (CMYK/YCCK need colour management)";
  for (jpeg_saved_marker_ptr m = c.marker_list; m; m = m->next) {
    if (m->marker == JPEG_APP0 + 2 && m->data_length >= 12 && std::memcmp(m->data, "ICC_PROFILE\0", 12) == 0)
      return "has an ICC profile";
  }
  return nullptr;
}

// The resample's loops, not inlined (GCC 12 drops restrict when it inlines them, and leaves them
// scalar), and on x86-64 compiled twice, for AVX2 and for the baseline, chosen at load time: the
// addon is built without -march, for any x86-64. Without FMA contraction both give the same bytes.
#if defined(__x86_64__) && defined(__GNUC__) && defined(__GLIBC__)  // target_clones needs glibc's ifunc
#define NOINLINE_SIMD __attribute__((noinline, target_clones("avx2", "default")))
#else
#define NOINLINE_SIMD __attribute__((noinline))
#endif

// ---------------------------------------------------------------------------------------------
// The separable resample, as resample.ts's resampleSquare: a horizontal pass (over the source
// rows the vertical pass reads) into doubles, then the vertical pass, rounded half up.

struct Taps {
  const int32_t *first;   // first source index of each output position
  const int32_t *offset;  // start of each position's weights in `weights`; offset[n] = total
  const double *weights;
  size_t count;  // output positions
};

// One source row through the horizontal taps. Each channel's sum runs over k in order, as in
// JS; the three sums of RGB are separate variables so that they stay in registers. The row is
// widened to doubles first (exact), once per source pixel rather than once per tap.
NOINLINE_SIMD void widen(const uint8_t *__restrict row, size_t n, double *__restrict out) {
  for (size_t i = 0; i < n; i++) out[i] = row[i];
}

// One output pixel's three sums over `taps` taps (a constant for the common counts, so the
// loop unrolls and no branch is left per tap).
template <int Taps>
inline void rgbTaps(const double *s, const double *w, int taps, double *m) {
  const int n = Taps > 0 ? Taps : taps;
  double r = 0, g = 0, b = 0;
  for (int k = 0; k < n; k++) {
    r += s[3 * k] * w[k];
    g += s[3 * k + 1] * w[k];
    b += s[3 * k + 2] * w[k];
  }
  m[0] = r;
  m[1] = g;
  m[2] = b;
}

void resampleRowRgb(const double *row, const Taps &across, double *m) {
  for (size_t x = 0; x < across.count; x++) {
    const double *s = row + size_t(across.first[x]) * 3;
    const double *w = across.weights + across.offset[x];
    const int taps = across.offset[x + 1] - across.offset[x];
    switch (taps) {  // shrinking 1x-2x: 2-3 taps, 2x-2.5x: 4-5
      case 2: rgbTaps<2>(s, w, taps, m + 3 * x); break;
      case 3: rgbTaps<3>(s, w, taps, m + 3 * x); break;
      case 4: rgbTaps<4>(s, w, taps, m + 3 * x); break;
      case 5: rgbTaps<5>(s, w, taps, m + 3 * x); break;
      default: rgbTaps<0>(s, w, taps, m + 3 * x);
    }
  }
}

void resampleRowGray(const double *row, const Taps &across, double *m) {
  for (size_t x = 0; x < across.count; x++) {
    const double *s = row + across.first[x];
    const double *w = across.weights + across.offset[x];
    const int taps = across.offset[x + 1] - across.offset[x];
    double v = 0;
    for (int k = 0; k < taps; k++) v += s[k] * w[k];
    m[x] = v;
  }
}

// One output row of the vertical pass: acc = sum over k, in order, of mid row k times w[k]
// (restrict: the rows, the sums and the output do not overlap, so the loops vectorise).
NOINLINE_SIMD void resampleColumnRow(const double *__restrict m0, size_t rowElems,
                                                 const double *__restrict w, int taps, double *__restrict acc) {
  const double w0 = w[0];
  for (size_t e = 0; e < rowElems; e++) acc[e] = 0.0 + m0[e] * w0;
  for (int k = 1; k < taps; k++) {
    const double *__restrict m = m0 + size_t(k) * rowElems;
    const double wk = w[k];
    for (size_t e = 0; e < rowElems; e++) acc[e] += m[e] * wk;
  }
}

// Rounded half up (the sums are >= 0) and clamped: min(v + 0.5, 255.5) truncates to
// v + 0.5 >= 256 ? 255 : int(v + 0.5), without a branch.
NOINLINE_SIMD void roundToBytes(const double *__restrict acc, size_t n, uint8_t *__restrict out) {
  for (size_t e = 0; e < n; e++) out[e] = uint8_t(int32_t(std::min(acc[e] + 0.5, 255.5)));
}

void resample(const uint8_t *src, int width, int channels, const Taps &across, const Taps &down, int rowFirst,
              int rowLast, uint8_t *out) {
  const size_t size = across.count;
  const size_t rowElems = size * channels;
  // Reused per thread: a fresh 2 MB buffer per image costs its page faults.
  static thread_local std::vector<double> mid, acc, wide;
  static thread_local std::vector<uint8_t> gray;
  mid.resize(size_t(rowLast - rowFirst) * rowElems);
  acc.resize(rowElems);
  wide.resize(size_t(width) * channels);
  for (int y = rowFirst; y < rowLast; y++) {
    widen(src + size_t(y) * width * channels, wide.size(), wide.data());
    double *m = mid.data() + size_t(y - rowFirst) * rowElems;
    if (channels == 3)
      resampleRowRgb(wide.data(), across, m);
    else
      resampleRowGray(wide.data(), across, m);
  }
  if (channels == 1) gray.resize(rowElems);
  for (size_t y = 0; y < down.count; y++) {
    const int taps = down.offset[y + 1] - down.offset[y];
    const double *m0 = mid.data() + size_t(down.first[y] - rowFirst) * rowElems;
    resampleColumnRow(m0, rowElems, down.weights + down.offset[y], taps, acc.data());
    uint8_t *o = out + y * size * 3;
    if (channels == 3) {
      roundToBytes(acc.data(), rowElems, o);
    } else {
      roundToBytes(acc.data(), rowElems, gray.data());  // gray: resampled once, expanded after
      for (size_t x = 0; x < size; x++) o[3 * x] = o[3 * x + 1] = o[3 * x + 2] = gray[x];
    }
  }
}

// Decodes `input` at scale/8 into `pixels` (grown to fit); returns the reason sharp must take
// it, or nullptr with *width, *height, *channels set.
const char *decode(const uint8_t *input, size_t length, int scale, Decoder &d, std::vector<uint8_t> &pixels,
                   int *width, int *height, int *channels) {
  jpeg_decompress_struct &c = d.cinfo;
  c.err = jpeg_std_error(&d.err);
  d.err.error_exit = onError;
  d.err.emit_message = onMessage;
  if (setjmp(d.escape)) {
    jpeg_destroy_decompress(&c);
    return d.message;
  }
  c.client_data = &d;  // before create, which keeps it: onError may run inside create
  jpeg_create_decompress(&c);
  jpeg_mem_src(&c, input, static_cast<unsigned long>(length));
  jpeg_save_markers(&c, JPEG_APP0 + 2, 0xffff);  // ICC profiles
  jpeg_read_header(&c, TRUE);
  if (const char *why = unsupported(c)) {
    jpeg_destroy_decompress(&c);
    return why;
  }
  c.out_color_space = c.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
  c.scale_num = scale;
  c.scale_denom = 8;
  jpeg_start_decompress(&c);
  *width = int(c.output_width);
  *height = int(c.output_height);
  *channels = c.output_components;
  const size_t stride = size_t(*width) * *channels;
  try {
    if (pixels.size() < stride * *height) pixels.resize(stride * *height);
  } catch (...) {  // std::bad_alloc, for the caller: libjpeg's own memory is freed first
    jpeg_destroy_decompress(&c);
    throw;
  }
  while (c.output_scanline < c.output_height) {
    JSAMPROW row = pixels.data() + stride * c.output_scanline;
    jpeg_read_scanlines(&c, &row, 1);
  }
  jpeg_finish_decompress(&c);
  jpeg_destroy_decompress(&c);
  return d.warnings > 0 ? "decoder warnings (corrupt or truncated data)" : nullptr;
}

// ---------------------------------------------------------------------------------------------
// EXIF orientation (1-8, read by the caller: header.ts's jpegOrientation): the stored image
// turned upright, as sharp's autoOrient does. For each displayed pixel (x, y) of the upright
// image (w x h), the stored pixel it shows, in a stored image `width` x `height`.

struct Upright {
  int width, height;  // of the upright image
};

Upright uprightSize(int orientation, int width, int height) {
  return orientation >= 5 ? Upright{height, width} : Upright{width, height};
}

void storedPixel(int orientation, int width, int height, int x, int y, int *sx, int *sy) {
  switch (orientation) {
    case 2: *sx = width - 1 - x, *sy = y; break;                // mirrored left-right
    case 3: *sx = width - 1 - x, *sy = height - 1 - y; break;   // rotated 180
    case 4: *sx = x, *sy = height - 1 - y; break;               // mirrored top-bottom
    case 5: *sx = y, *sy = x; break;                            // transposed
    case 6: *sx = y, *sy = height - 1 - x; break;               // to turn 90 clockwise
    case 7: *sx = width - 1 - y, *sy = height - 1 - x; break;   // transversed
    case 8: *sx = width - 1 - y, *sy = x; break;                // to turn 90 counter-clockwise
    default: *sx = x, *sy = y;
  }
}

void turnUpright(const uint8_t *src, int width, int height, int channels, int orientation, uint8_t *dst) {
  const Upright up = uprightSize(orientation, width, height);
  for (int y = 0; y < up.height; y++) {
    for (int x = 0; x < up.width; x++) {
      int sx, sy;
      storedPixel(orientation, width, height, x, y, &sx, &sy);
      const uint8_t *s = src + (size_t(sy) * width + sx) * channels;
      uint8_t *o = dst + (size_t(y) * up.width + x) * channels;
      for (int ch = 0; ch < channels; ch++) o[ch] = s[ch];
    }
  }
}

// ---------------------------------------------------------------------------------------------
// JS binding: decodeSquare(input, scale, orientation, width, height, acrossFirst, acrossOffset,
// acrossWeights, downFirst, downOffset, downWeights, out) -> null, or the reason the caller
// must use sharp. width/height: the upright size after scaling, which the taps were computed
// for (a mismatch is a reason, not an error).

template <typename T>
bool typedArray(napi_env env, napi_value v, napi_typedarray_type want, T **data, size_t *length) {
  bool is = false;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is) return false;
  napi_typedarray_type type;
  void *raw;
  if (napi_get_typedarray_info(env, v, &type, length, &raw, nullptr, nullptr) != napi_ok || type != want)
    return false;
  *data = static_cast<T *>(raw);
  return true;
}

napi_value reason(napi_env env, const std::string &text) {
  napi_value s;
  napi_create_string_utf8(env, text.c_str(), text.size(), &s);
  return s;
}

napi_value fail(napi_env env, const char *message) {
  napi_throw_type_error(env, "JPEG_ADDON", message);
  return nullptr;
}

// Whether one axis' taps are well formed for `outSize` outputs over `inSize` source pixels:
// offsets rising from 0 to the weights' length, each output at least one tap, all inside, and
// each output's source interval starting and ending no earlier than the one before.
bool tapsInside(const Taps &t, size_t weights, int inSize) {
  if (t.offset[0] != 0 || size_t(t.offset[t.count]) != weights) return false;
  int64_t end = 0;
  for (size_t o = 0; o < t.count; o++) {
    const int32_t taps = t.offset[o + 1] - t.offset[o];
    if (taps < 1 || t.first[o] < 0 || int64_t(t.first[o]) + taps > inSize) return false;
    // The vertical pass keeps only rows [first[0], first[last] + taps[last]) (rowsRead): each
    // output's first and end must rise for its rows to be among them.
    if (o > 0 && (t.first[o] < t.first[o - 1] || int64_t(t.first[o]) + taps < end)) return false;
    end = int64_t(t.first[o]) + taps;
  }
  return true;
}

// Reused per thread (a decode thread decodes one file at a time), and released after an image
// larger than this so that one panorama does not pin its size on every thread.
constexpr size_t kKeptScratchBytes = 32u << 20;
thread_local std::vector<uint8_t> scratch, upright;

void releaseIfLarge(std::vector<uint8_t> &buffer) {
  if (buffer.capacity() > kKeptScratchBytes) std::vector<uint8_t>().swap(buffer);
}

// Both axes' taps from six arguments (acrossFirst, acrossOffset, acrossWeights, downFirst,
// downOffset, downWeights) for an `outLength`-byte RGB square over a width x height source: an
// error message when they do not fit together or read outside the source, else nullptr.
const char *tapsArgs(napi_env env, const napi_value *argv, int width, int height, size_t outLength, Taps *across,
                     Taps *down) {
  const int32_t *acrossFirst, *acrossOffset, *downFirst, *downOffset;
  const double *acrossWeights, *downWeights;
  size_t n[6];
  if (!typedArray(env, argv[0], napi_int32_array, const_cast<int32_t **>(&acrossFirst), &n[0]) ||
      !typedArray(env, argv[1], napi_int32_array, const_cast<int32_t **>(&acrossOffset), &n[1]) ||
      !typedArray(env, argv[2], napi_float64_array, const_cast<double **>(&acrossWeights), &n[2]) ||
      !typedArray(env, argv[3], napi_int32_array, const_cast<int32_t **>(&downFirst), &n[3]) ||
      !typedArray(env, argv[4], napi_int32_array, const_cast<int32_t **>(&downOffset), &n[4]) ||
      !typedArray(env, argv[5], napi_float64_array, const_cast<double **>(&downWeights), &n[5]))
    return "bad argument types";
  const size_t size = n[0];
  *across = Taps{acrossFirst, acrossOffset, acrossWeights, size};
  *down = Taps{downFirst, downOffset, downWeights, n[3]};
  if (!(size > 0 && n[3] == size && n[1] == size + 1 && n[4] == size + 1 && outLength == size * size * 3))
    return "taps and output sizes disagree";
  if (!tapsInside(*across, n[2], width) || !tapsInside(*down, n[5], height)) return "taps read outside the image";
  return nullptr;
}

// The source rows [first, last) that the vertical taps read.
void rowsRead(const Taps &down, int *first, int *last) {
  *first = down.first[0];
  *last = down.first[down.count - 1] + (down.offset[down.count] - down.offset[down.count - 1]);
}

// The call's arguments into argv: false, with a TypeError thrown, unless there are exactly N.
template <size_t N>
bool exactArgs(napi_env env, napi_callback_info info, const char *name, napi_value (&argv)[N]) {
  size_t argc = N;
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  if (argc == N) return true;
  fail(env, (std::string(name) + ": expected " + std::to_string(N) + " arguments").c_str());
  return false;
}

napi_value decodeSquare(napi_env env, napi_callback_info info) {
  napi_value argv[12];
  if (!exactArgs(env, info, "decodeSquare", argv)) return nullptr;
  const uint8_t *input;
  size_t inputLength, outLength;
  int32_t scale, orientation, expectWidth, expectHeight;
  uint8_t *out;
  if (!typedArray(env, argv[0], napi_uint8_array, const_cast<uint8_t **>(&input), &inputLength) ||
      napi_get_value_int32(env, argv[1], &scale) != napi_ok ||
      napi_get_value_int32(env, argv[2], &orientation) != napi_ok ||
      napi_get_value_int32(env, argv[3], &expectWidth) != napi_ok ||
      napi_get_value_int32(env, argv[4], &expectHeight) != napi_ok ||
      !typedArray(env, argv[11], napi_uint8_array, &out, &outLength))
    return fail(env, "decodeSquare: bad argument types");
  if (!(scale >= 1 && scale <= 16 && orientation >= 1 && orientation <= 8))
    return fail(env, "decodeSquare: scale or orientation out of range");
  Taps across{}, down{};
  if (const char *why = tapsArgs(env, argv + 5, expectWidth, expectHeight, outLength, &across, &down))
    return fail(env, (std::string("decodeSquare: ") + why).c_str());

  try {
    Decoder d{};
    int width = 0, height = 0, channels = 0;
    if (const char *why = decode(input, inputLength, scale, d, scratch, &width, &height, &channels))
      return reason(env, why);
    const Upright up = uprightSize(orientation, width, height);
    if (up.width != expectWidth || up.height != expectHeight)
      return reason(env, "decoded " + std::to_string(up.width) + "x" + std::to_string(up.height) + " upright, expected " +
                             std::to_string(expectWidth) + "x" + std::to_string(expectHeight));
    const uint8_t *pixels = scratch.data();
    if (orientation != 1) {
      upright.resize(size_t(width) * height * channels);
      turnUpright(scratch.data(), width, height, channels, orientation, upright.data());
      pixels = upright.data();
    }
    int rowFirst, rowLast;
    rowsRead(down, &rowFirst, &rowLast);
    resample(pixels, up.width, channels, across, down, rowFirst, rowLast, out);
    releaseIfLarge(scratch);
    releaseIfLarge(upright);
  } catch (const std::exception &err) {  // std::bad_alloc: a reason, so that sharp may try
    std::vector<uint8_t>().swap(scratch);
    std::vector<uint8_t>().swap(upright);
    return reason(env, std::string("out of memory decoding it (") + err.what() + ")");
  }
  napi_value null;
  napi_get_null(env, &null);
  return null;
}

// JS binding: resampleSquare(pixels, width, height, channels, acrossFirst, acrossOffset,
// acrossWeights, downFirst, downOffset, downWeights, out): an 8-bit width x height image (1 or 3
// channels, interleaved) through the taps into `out` (RGB), as decodeSquare resamples. Throws a
// TypeError for arguments that do not fit together.
napi_value resampleSquare(napi_env env, napi_callback_info info) {
  napi_value argv[11];
  if (!exactArgs(env, info, "resampleSquare", argv)) return nullptr;
  const uint8_t *pixels;
  size_t pixelsLength, outLength;
  int32_t width, height, channels;
  uint8_t *out;
  if (!typedArray(env, argv[0], napi_uint8_array, const_cast<uint8_t **>(&pixels), &pixelsLength) ||
      napi_get_value_int32(env, argv[1], &width) != napi_ok || napi_get_value_int32(env, argv[2], &height) != napi_ok ||
      napi_get_value_int32(env, argv[3], &channels) != napi_ok ||
      !typedArray(env, argv[10], napi_uint8_array, &out, &outLength))
    return fail(env, "resampleSquare: bad argument types");
  if (!((channels == 1 || channels == 3) && width > 0 && height > 0 &&
        pixelsLength == size_t(width) * size_t(height) * size_t(channels)))
    return fail(env, "resampleSquare: the pixels are not width x height x channels (1 or 3)");
  Taps across{}, down{};
  if (const char *why = tapsArgs(env, argv + 4, width, height, outLength, &across, &down))
    return fail(env, (std::string("resampleSquare: ") + why).c_str());
  int rowFirst, rowLast;
  rowsRead(down, &rowFirst, &rowLast);
  try {
    resample(pixels, width, channels, across, down, rowFirst, rowLast, out);
  } catch (const std::exception &err) {
    return fail(env, (std::string("resampleSquare: ") + err.what()).c_str());
  }
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// writeCrop(src, srcSize, cropSize, x, y, flip, affine, dst, dstOffset): the writeCrop of
// src/data/augment.ts, one crop of a uint8 RGB square into float32 through a per-channel affine map ([scale r, g, b,
// offset r, g, b], Float64Array), mirrored left-right with `flip`. The same doubles as the JS
// loop (v * scale + offset, no fused multiply-add), rounded to float on the store, so both write
// the same floats. It runs on the training thread for every image: 13% of the 500x375 JPEG
// pipeline's CPU in JS (docs/measurements.md, "JPEGs").

// One row: out[e] = float(in[e] * scale[e] + offset[e]), the coefficients repeated per pixel.
NOINLINE_SIMD void affineRow(const uint8_t *__restrict in, const double *__restrict scale,
                             const double *__restrict offset, size_t n, float *__restrict out) {
  for (size_t e = 0; e < n; e++) out[e] = static_cast<float>(double(in[e]) * scale[e] + offset[e]);
}

napi_value writeCrop(napi_env env, napi_callback_info info) {
  napi_value argv[9];
  if (!exactArgs(env, info, "writeCrop", argv)) return nullptr;
  const uint8_t *src;
  const double *affine;
  float *dst;
  size_t srcLength, affineLength, dstLength;
  int32_t srcSize, cropSize, x0, y0;
  int64_t dstOffset;
  bool flip;
  if (!typedArray(env, argv[0], napi_uint8_array, const_cast<uint8_t **>(&src), &srcLength) ||
      napi_get_value_int32(env, argv[1], &srcSize) != napi_ok ||
      napi_get_value_int32(env, argv[2], &cropSize) != napi_ok || napi_get_value_int32(env, argv[3], &x0) != napi_ok ||
      napi_get_value_int32(env, argv[4], &y0) != napi_ok || napi_get_value_bool(env, argv[5], &flip) != napi_ok ||
      !typedArray(env, argv[6], napi_float64_array, const_cast<double **>(&affine), &affineLength) ||
      !typedArray(env, argv[7], napi_float32_array, &dst, &dstLength) ||
      napi_get_value_int64(env, argv[8], &dstOffset) != napi_ok)
    return fail(env, "writeCrop: bad argument types");
  const size_t rowElems = size_t(cropSize) * 3;
  if (!(srcSize > 0 && cropSize > 0 && x0 >= 0 && y0 >= 0 && int64_t(x0) + cropSize <= srcSize && int64_t(y0) + cropSize <= srcSize &&
        srcLength >= size_t(srcSize) * size_t(srcSize) * 3 && affineLength == 6 && dstOffset >= 0 &&
        size_t(dstOffset) + rowElems * size_t(cropSize) <= dstLength))
    return fail(env, "writeCrop: the crop does not fit the square, the output, or the affine map is not 6 numbers");
  static thread_local std::vector<double> scale, offset;
  static thread_local std::vector<uint8_t> mirrored;
  scale.resize(rowElems);
  offset.resize(rowElems);
  mirrored.resize(rowElems);
  for (size_t e = 0; e < rowElems; e++) {
    scale[e] = affine[e % 3];
    offset[e] = affine[3 + e % 3];
  }
  for (int32_t y = 0; y < cropSize; y++) {
    const uint8_t *row = src + (size_t(y0 + y) * size_t(srcSize) + size_t(x0)) * 3;
    if (flip) {
      for (int32_t x = 0; x < cropSize; x++)
        std::memcpy(&mirrored[size_t(x) * 3], row + size_t(cropSize - 1 - x) * 3, 3);
      row = mirrored.data();
    }
    affineRow(row, scale.data(), offset.data(), rowElems, dst + dstOffset + size_t(y) * rowElems);
  }
  napi_value undefined;
  napi_get_undefined(env, &undefined);
  return undefined;
}

}  // namespace

NAPI_MODULE_INIT(/* env, exports */) {
  napi_value fn;
  napi_create_function(env, "decodeSquare", NAPI_AUTO_LENGTH, decodeSquare, nullptr, &fn);
  napi_set_named_property(env, exports, "decodeSquare", fn);
  napi_create_function(env, "resampleSquare", NAPI_AUTO_LENGTH, resampleSquare, nullptr, &fn);
  napi_set_named_property(env, exports, "resampleSquare", fn);
  napi_create_function(env, "writeCrop", NAPI_AUTO_LENGTH, writeCrop, nullptr, &fn);
  napi_set_named_property(env, exports, "writeCrop", fn);
  return exports;
}
