// Block-quantized linears for CPUs with AVX2 + FMA + F16C, after llama.cpp: weights in GGUF's Q4_1 / Q8_0 blocks of 32
// inputs (4-bit with a scale and a minimum, int8 with a scale; float16 scales), activations quantized once per call into int8 blocks of 32, and each
// block's dot product taken in integers (maddubs: u8 x s8 pairs summed into int16, then int32).
// Unlike llama.cpp's Q8 activations (8 bits, which flip SmolLM2's close first token), each activation block is two
// int8 vectors, x = xd * (q1 + q2 / 254): q2 is the rounding residual of q1, so activations keep ~16 bits and the
// result is the weight-only product up to ~2^-16 of each block's largest input. Both are read against one unpacked
// weight block and combined in int32 (254 * dot1 + dot2) before the one float multiply-add.
// One pass over the weight bytes per call, whatever the number of activation rows.
//
// Registered as torch.ops.leanformers.q4_linear / q8_linear; built and loaded by kernels/__init__.py.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <immintrin.h>
#include <cmath>
#include <cstring>

namespace {

constexpr int64_t QK = 32;   // inputs per block

// x (M, K) float -> xq (M, K/32, 2, 32) int8 (q1, q2 per block), xd (M, K/32) = block max / 254 (the scale of
// 254 * q1 + q2), xs (M, K/32) = the block's float sum (for the 4-bit minimum). Compiled without FMA contraction
// (-ffp-contract=off) so that it rounds as the same float32 operations in torch do.
void quantize_activations(const float* x, int64_t blocks, int8_t* xq, float* xd, float* xs) {
  for (int64_t b = 0; b < blocks; ++b) {
    const float* v = x + b * QK;
    float amax = 0.f, sum = 0.f;
    for (int i = 0; i < QK; ++i) {
      amax = std::fmax(amax, std::fabs(v[i]));
      sum += v[i];
    }
    const float id = amax > 0.f ? 127.f / amax : 0.f;
    for (int i = 0; i < QK; ++i) {
      const float t = v[i] * id, q1 = std::nearbyint(t);
      xq[b * 2 * QK + i] = static_cast<int8_t>(q1);
      xq[b * 2 * QK + QK + i] = static_cast<int8_t>(std::fmax(-127.f, std::fmin(127.f, std::nearbyint((t - q1) * 254.f))));
    }
    xd[b] = amax / 127.f / 254.f;
    xs[b] = sum;
  }
}

// 32 u8 weights x one activation block (s1, s2 signed as the weights need) -> 8 float partial sums of
// 254 * (u . s1) + (u . s2). Pair sums stay within int16: |2 * 255 * 127| would not, but u <= 128 here.
inline __m256 dot_block(__m256i u, __m256i s1, __m256i s2) {
  const __m256i high = _mm256_madd_epi16(_mm256_maddubs_epi16(u, s1), _mm256_set1_epi16(254));
  const __m256i low = _mm256_madd_epi16(_mm256_maddubs_epi16(u, s2), _mm256_set1_epi16(1));
  return _mm256_cvtepi32_ps(_mm256_add_epi32(high, low));
}

inline __m256i load32(const int8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline __m256i unpack_q4(const uint8_t* p) {  // GGUF order: byte j holds input j (low nibble) and j + 16 (high)
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m128i mask = _mm_set1_epi8(15);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(bytes, 4), mask), _mm_and_si128(bytes, mask));
}

struct Activations {
  const int8_t* q; const float* d; const float* s; int64_t blocks;
};

// Sums of four accumulators' eight lanes each -> one __m128 (a0, a1, a2, a3)
inline __m128 hsum4(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
  const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

// GGML's blocks of 32 weights, as GGUF files store them (float16 scales):
//   Q4_1: d, m, 16 bytes whose byte j holds weights j (low nibble) and j + 16 (high): w = d * q + m, q in 0..15
//   Q8_0: d, 32 int8: w = d * q
constexpr int64_t Q4_1_BYTES = 20, Q8_0_BYTES = 34;
// The weight is one stream of rows read a tile (4 rows) at a time; each block read asks for the same place of the
// next tile, which decoding otherwise waits for from memory (measured: ~2x on a 28 MB head).
constexpr int64_t PREFETCH_ROWS = 4;

inline float half_at(const uint8_t* p) {
  uint16_t bits;
  std::memcpy(&bits, p, 2);
  return _cvtsh_ss(bits);
}

// T weight rows (a tile) x one activation row: T independent accumulators, so consecutive multiply-adds do not wait
// on each other, and one load of each activation block serves the T rows. Writes out[0..T).
template <int T>
void q4_tile(const uint8_t* w, int64_t row_bytes, const Activations& a, int64_t row, float* out) {
  __m256 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  __m128 minimum = _mm_setzero_ps();  // sum over blocks of m * (the block's sum of x), one lane per weight row
  const int8_t* xq = a.q + row * a.blocks * 2 * QK;
  const float* xd = a.d + row * a.blocks;
  const float* xs = a.s + row * a.blocks;
  for (int64_t b = 0; b < a.blocks; ++b) {
    const __m256i x1 = load32(xq + b * 2 * QK), x2 = load32(xq + b * 2 * QK + QK);
    float m[4] = {0.f, 0.f, 0.f, 0.f};
    for (int t = 0; t < T; ++t) {
      const uint8_t* block = w + t * row_bytes + b * Q4_1_BYTES;
      _mm_prefetch(reinterpret_cast<const char*>(block + PREFETCH_ROWS * row_bytes), _MM_HINT_T0);
      const __m256 dot = dot_block(unpack_q4(block + 4), x1, x2);
      acc[t] = _mm256_fmadd_ps(dot, _mm256_set1_ps(half_at(block) * xd[b]), acc[t]);
      m[t] = half_at(block + 2);
    }
    minimum = _mm_fmadd_ps(_mm_loadu_ps(m), _mm_set1_ps(xs[b]), minimum);
  }
  if constexpr (T == 4) {
    _mm_storeu_ps(out, _mm_add_ps(hsum4(acc[0], acc[1], acc[2], acc[3]), minimum));
  } else {
    float rest[4];
    _mm_storeu_ps(rest, minimum);
    for (int t = 0; t < T; ++t) out[t] = hsum(acc[t]) + rest[t];
  }
}

template <int T>
void q8_tile(const uint8_t* w, int64_t row_bytes, const Activations& a, int64_t row, float* out) {
  __m256 acc[T];
  for (int t = 0; t < T; ++t) acc[t] = _mm256_setzero_ps();
  const int8_t* xq = a.q + row * a.blocks * 2 * QK;
  const float* xd = a.d + row * a.blocks;
  for (int64_t b = 0; b < a.blocks; ++b) {
    const __m256i x1 = load32(xq + b * 2 * QK), x2 = load32(xq + b * 2 * QK + QK);
    for (int t = 0; t < T; ++t) {
      const uint8_t* block = w + t * row_bytes + b * Q8_0_BYTES;
      _mm_prefetch(reinterpret_cast<const char*>(block + PREFETCH_ROWS * row_bytes), _MM_HINT_T0);
      const __m256i q = load32(reinterpret_cast<const int8_t*>(block + 2));
      const __m256 dot = dot_block(_mm256_sign_epi8(q, q), _mm256_sign_epi8(x1, q), _mm256_sign_epi8(x2, q));
      acc[t] = _mm256_fmadd_ps(dot, _mm256_set1_ps(half_at(block) * xd[b]), acc[t]);
    }
  }
  if constexpr (T == 4) _mm_storeu_ps(out, hsum4(acc[0], acc[1], acc[2], acc[3]));
  else for (int t = 0; t < T; ++t) out[t] = hsum(acc[t]);
}

// Quantize x once, then every tile of 4 output features (split over torch's threads) against every activation
// row; the tile's weight bytes stay in L1 from one activation row to the next.
template <typename Tile>
at::Tensor run(const at::Tensor& x_in, int64_t out_features, const c10::optional<at::Tensor>& bias, Tile tile) {
  TORCH_CHECK(x_in.dim() == 2, "x must be (rows, in_features)");
  const at::Tensor x = x_in.to(at::kFloat).contiguous();
  const int64_t rows = x.size(0), in_features = x.size(1);
  TORCH_CHECK(in_features % QK == 0, "in_features must be a multiple of 32");
  const int64_t blocks = in_features / QK;
  at::Tensor xq = at::empty({rows, 2 * in_features}, x.options().dtype(at::kChar));
  at::Tensor xd = at::empty({rows, blocks}, x.options()), xs = at::empty({rows, blocks}, x.options());
  quantize_activations(x.data_ptr<float>(), rows * blocks, xq.data_ptr<int8_t>(), xd.data_ptr<float>(),
                       xs.data_ptr<float>());
  const Activations a{xq.data_ptr<int8_t>(), xd.data_ptr<float>(), xs.data_ptr<float>(), blocks};
  at::Tensor y = at::zeros({rows, out_features}, x.options());
  float* out = y.data_ptr<float>();
  const int64_t tiles = (out_features + 3) / 4;
  const int64_t grain = std::max<int64_t>(4, 1024 / std::max<int64_t>(blocks * rows, 1));
  at::parallel_for(0, tiles, grain, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t n = t * 4;
      for (int64_t r = 0; r < rows; ++r) {
        if (n + 4 <= out_features) tile(n, a, r, out + r * out_features + n, std::integral_constant<int, 4>());
        else for (int64_t k = n; k < out_features; ++k)
          tile(k, a, r, out + r * out_features + k, std::integral_constant<int, 1>());
      }
    }
  });
  if (bias.has_value() && bias->defined()) y.add_(bias->to(at::kFloat));
  return y;
}

// x (M, K) float, blocks uint8 (N, K/32 * block bytes) -> (M, N) float32 (+ bias)
template <int64_t BYTES, typename Tile>
at::Tensor block_linear(const at::Tensor& x, const at::Tensor& blocks, const c10::optional<at::Tensor>& bias,
                        Tile tile, const char* name) {
  TORCH_CHECK(blocks.scalar_type() == at::kByte && blocks.dim() == 2 && blocks.is_contiguous(), name,
              ": blocks must be a contiguous uint8 (out_features, in_features / 32 * ", BYTES, ") tensor");
  TORCH_CHECK(x.dim() == 2 && x.size(1) % QK == 0 && blocks.size(1) == x.size(1) / QK * BYTES, name,
              ": x (rows, in_features) does not match blocks ", blocks.sizes());
  const uint8_t* w = blocks.data_ptr<uint8_t>();
  const int64_t row_bytes = blocks.size(1);
  return run(x, blocks.size(0), bias, [=](int64_t n, const Activations& a, int64_t r, float* out, auto width) {
    tile(std::integral_constant<int, decltype(width)::value>(), w + n * row_bytes, row_bytes, a, r, out);
  });
}

at::Tensor q4_linear(const at::Tensor& x, const at::Tensor& blocks, const c10::optional<at::Tensor>& bias) {
  return block_linear<Q4_1_BYTES>(x, blocks, bias, [](auto width, auto... args) {
    q4_tile<decltype(width)::value>(args...);
  }, "q4_linear");
}

at::Tensor q8_linear(const at::Tensor& x, const at::Tensor& blocks, const c10::optional<at::Tensor>& bias) {
  return block_linear<Q8_0_BYTES>(x, blocks, bias, [](auto width, auto... args) {
    q8_tile<decltype(width)::value>(args...);
  }, "q8_linear");
}

}  // namespace

TORCH_LIBRARY(leanformers, library) {
  library.def("q4_linear(Tensor x, Tensor blocks, Tensor? bias) -> Tensor");
  library.def("q8_linear(Tensor x, Tensor blocks, Tensor? bias) -> Tensor");
}

TORCH_LIBRARY_IMPL(leanformers, CPU, library) {
  library.impl("q4_linear", &q4_linear);
  library.impl("q8_linear", &q8_linear);
}
