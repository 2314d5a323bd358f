// Block-quantized linears for CPUs with AVX2 + FMA, after llama.cpp: weights in blocks of 32 inputs (int8 with a
// scale, or 4-bit with a scale and a minimum), activations quantized once per call into int8 blocks of 32, and each
// block's dot product taken in integers (maddubs: u8 x s8 pairs summed into int16, then int32).
// Unlike llama.cpp's Q8 activations (8 bits, which flip SmolLM2's close first token), each activation block is two
// int8 vectors, x = xd * (q1 + q2 / 254): q2 is the rounding residual of q1, so activations keep ~16 bits and the
// result is the weight-only product up to ~2^-16 of each block's largest input. Both are read against one unpacked
// weight block and combined in int32 (254 * dot1 + dot2) before the one float multiply-add.
// One pass over the weight bytes per call, whatever the number of activation rows (up to ROWS at a time).
//
// Registered as torch.ops.leanformers.q4_linear / q8_linear; built and loaded by kernels/__init__.py.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <immintrin.h>
#include <cmath>

namespace {

constexpr int64_t QK = 32;   // inputs per block
constexpr int64_t ROWS = 4;  // activation rows sharing one read of a weight block

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
  const int8_t* q; const float* d; const float* s; int64_t in_features, blocks;
};

// R activation rows x one 4-bit weight row: w = d * q + m, q in 0..15. Two accumulators per row (even and odd
// blocks) so consecutive blocks' fused multiply-adds do not wait on each other.
template <int R>
void q4_row(const uint8_t* wq, const float* wd, const float* wm, const Activations& a, int64_t row0, float* out,
            int64_t out_stride) {
  __m256 acc[2][R];
  for (int r = 0; r < R; ++r) acc[0][r] = acc[1][r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < a.blocks; ++b) {
    const __m256i w = unpack_q4(wq + b * QK / 2);
    for (int r = 0; r < R; ++r) {
      const int64_t at = (row0 + r) * a.blocks + b;
      const __m256 dot = dot_block(w, load32(a.q + at * 2 * QK), load32(a.q + at * 2 * QK + QK));
      acc[b & 1][r] = _mm256_fmadd_ps(dot, _mm256_set1_ps(wd[b] * a.d[at]), acc[b & 1][r]);
    }
  }
  for (int r = 0; r < R; ++r) {  // + sum over blocks of m * (the block's sum of x), eight blocks at a time
    const float* xs = a.s + (row0 + r) * a.blocks;
    __m256 sums = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 8 <= a.blocks; b += 8) sums = _mm256_fmadd_ps(_mm256_loadu_ps(wm + b), _mm256_loadu_ps(xs + b), sums);
    float minimum = hsum(sums);
    for (; b < a.blocks; ++b) minimum += wm[b] * xs[b];
    out[r * out_stride] = hsum(_mm256_add_ps(acc[0][r], acc[1][r])) + minimum;
  }
}

// R activation rows x one int8 weight row: w = d * q (d per block, or one per row when scale_step is 0)
template <int R>
void q8_row(const int8_t* wq, const float* wd, int64_t scale_step, const Activations& a, int64_t row0, float* out,
            int64_t out_stride) {
  __m256 acc[2][R];
  for (int r = 0; r < R; ++r) acc[0][r] = acc[1][r] = _mm256_setzero_ps();
  for (int64_t b = 0; b < a.blocks; ++b) {
    const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wq + b * QK));
    const __m256i magnitude = _mm256_sign_epi8(w, w);
    const float d = wd[b * scale_step];
    for (int r = 0; r < R; ++r) {
      const int64_t at = (row0 + r) * a.blocks + b;
      const __m256 dot = dot_block(magnitude, _mm256_sign_epi8(load32(a.q + at * 2 * QK), w),
                                   _mm256_sign_epi8(load32(a.q + at * 2 * QK + QK), w));
      acc[b & 1][r] = _mm256_fmadd_ps(dot, _mm256_set1_ps(d * a.d[at]), acc[b & 1][r]);
    }
  }
  for (int r = 0; r < R; ++r) out[r * out_stride] = hsum(_mm256_add_ps(acc[0][r], acc[1][r]));
}

// Quantize x once, then every output feature (split over torch's threads) against every activation row.
template <typename Row>
at::Tensor run(const at::Tensor& x_in, int64_t out_features, const c10::optional<at::Tensor>& bias, Row row) {
  TORCH_CHECK(x_in.dim() == 2, "x must be (rows, in_features)");
  const at::Tensor x = x_in.to(at::kFloat).contiguous();
  const int64_t rows = x.size(0), in_features = x.size(1);
  TORCH_CHECK(in_features % QK == 0, "in_features must be a multiple of 32");
  const int64_t blocks = in_features / QK;
  at::Tensor xq = at::empty({rows, 2 * in_features}, x.options().dtype(at::kChar));
  at::Tensor xd = at::empty({rows, blocks}, x.options()), xs = at::empty({rows, blocks}, x.options());
  quantize_activations(x.data_ptr<float>(), rows * blocks, xq.data_ptr<int8_t>(), xd.data_ptr<float>(),
                       xs.data_ptr<float>());
  const Activations a{xq.data_ptr<int8_t>(), xd.data_ptr<float>(), xs.data_ptr<float>(), in_features, blocks};
  at::Tensor y = at::empty({rows, out_features}, x.options());
  float* out = y.data_ptr<float>();
  const int64_t grain = std::max<int64_t>(16, 4096 / std::max<int64_t>(blocks, 1));
  at::parallel_for(0, out_features, grain, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) {
      int64_t r = 0;
      for (; r + ROWS <= rows; r += ROWS) row(n, a, r, out + r * out_features + n, out_features, std::integral_constant<int, 4>());
      switch (rows - r) {
        case 3: row(n, a, r, out + r * out_features + n, out_features, std::integral_constant<int, 3>()); break;
        case 2: row(n, a, r, out + r * out_features + n, out_features, std::integral_constant<int, 2>()); break;
        case 1: row(n, a, r, out + r * out_features + n, out_features, std::integral_constant<int, 1>()); break;
        default: break;
      }
    }
  });
  if (bias.has_value() && bias->defined()) y.add_(bias->to(at::kFloat));
  return y;
}

at::Tensor q4_linear(const at::Tensor& x, const at::Tensor& qs, const at::Tensor& d, const at::Tensor& m,
                     const c10::optional<at::Tensor>& bias) {
  TORCH_CHECK(qs.scalar_type() == at::kByte && qs.is_contiguous() && d.is_contiguous() && m.is_contiguous(),
              "q4_linear: qs uint8 (N, K/2), d and m float (N, K/32), all contiguous");
  TORCH_CHECK(x.size(1) == qs.size(1) * 2 && d.size(1) * QK == x.size(1) && m.sizes() == d.sizes(),
              "q4_linear: shapes do not match");
  const uint8_t* wq = qs.data_ptr<uint8_t>();
  const float* wd = d.data_ptr<float>();
  const float* wm = m.data_ptr<float>();
  const int64_t half = qs.size(1), blocks = d.size(1);
  return run(x, qs.size(0), bias, [=](int64_t n, const Activations& a, int64_t r, float* out, int64_t stride,
                                      auto rows) {
    q4_row<decltype(rows)::value>(wq + n * half, wd + n * blocks, wm + n * blocks, a, r, out, stride);
  });
}

at::Tensor q8_linear(const at::Tensor& x, const at::Tensor& qs, const at::Tensor& d,
                     const c10::optional<at::Tensor>& bias) {
  TORCH_CHECK(qs.scalar_type() == at::kChar && qs.is_contiguous() && d.is_contiguous() && d.scalar_type() == at::kFloat,
              "q8_linear: qs int8 (N, K), d float (N, K/32) or (N,), contiguous");
  TORCH_CHECK(x.size(1) == qs.size(1), "q8_linear: shapes do not match");
  const bool per_row = d.numel() == qs.size(0);
  TORCH_CHECK(per_row || d.numel() == qs.size(0) * (qs.size(1) / QK), "q8_linear: d must be (N,) or (N, K/32)");
  const int8_t* wq = qs.data_ptr<int8_t>();
  const float* wd = d.data_ptr<float>();
  const int64_t in_features = qs.size(1), step = per_row ? 0 : 1, scales = per_row ? 1 : in_features / QK;
  return run(x, qs.size(0), bias, [=](int64_t n, const Activations& a, int64_t r, float* out, int64_t stride,
                                      auto rows) {
    q8_row<decltype(rows)::value>(wq + n * in_features, wd + n * scales, step, a, r, out, stride);
  });
}

}  // namespace

TORCH_LIBRARY(leanformers, library) {
  library.def("q4_linear(Tensor x, Tensor qs, Tensor d, Tensor m, Tensor? bias) -> Tensor");
  library.def("q8_linear(Tensor x, Tensor qs, Tensor d, Tensor? bias) -> Tensor");
}

TORCH_LIBRARY_IMPL(leanformers, CPU, library) {
  library.impl("q4_linear", &q4_linear);
  library.impl("q8_linear", &q8_linear);
}
