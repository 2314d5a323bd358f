// Block-quantized linears for CPUs with AVX2 + FMA + F16C, after llama.cpp's repacked x86 kernels.
//
// Weights: GGUF's blocks of 32 inputs (Q4_1: 4-bit codes q in 0..15 with a float16 scale d and minimum m, w = d*q + m;
// Q8_0: int8 codes with a float16 scale, w = d*q), repacked eight output rows at a time ("x8" tiles) so that one
// 256-bit register holds four consecutive codes of each of the eight rows. For each tile and block:
//   Q4_1: d[8] (float16), m[8] (float16), then four 32-byte vectors P0..P3; byte 4r+i of Pj holds row r's codes
//         4j+i (low nibble) and 4(j+4)+i (high nibble)                                            = 160 bytes
//   Q8_0: d[8] (float16), then eight 32-byte vectors V0..V7; byte 4r+i of Vj is row r's code 4j+i   = 272 bytes
// (the same bytes per weight as GGUF). Multiplying such a vector by four activation codes broadcast to every row
// (maddubs, then madd) leaves in 32-bit lane r the dot product of row r: eight outputs accumulate in one register,
// with no horizontal sums and one scale multiply per block for eight rows.
//
// Activations: quantized once per call, per block of 32 inputs, as two int8 vectors x = xd * (254 * q1 + q2): q2 is
// q1's rounding residual, so activations keep ~16 bits and the result is the weight-only product up to ~2^-16 of each
// block's largest input (one int8, as llama.cpp's Q8 activations, flips SmolLM2's close first token).
//
// Registered as torch.ops.leanformers.q4_linear / q8_linear (and q4_ / q8_dequantize); built and loaded by kernels/__init__.py.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>
#include <immintrin.h>
#include <cmath>
#include <cstring>

namespace {

constexpr int64_t QK = 32;  // inputs per block
constexpr int64_t Q4_TILE_BYTES = 160, Q8_TILE_BYTES = 272;  // per block of an 8-row tile
constexpr int64_t PREFETCH_TILES = 2;

// x (M, K) float -> xq (M, K/32, 2, 32) int8 (q1 then q2 per block), xd (M, K/32) = block max / 127 / 254 (the scale of
// 254 * q1 + q2), xs (M, K/32) = the block's float sum (for Q4_1's minimum). Built with -ffp-contract=off, so it rounds
// as the same float32 operations in torch do (tests/test_quant.py writes it out).
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

inline __m256i broadcast4(const int8_t* p) {  // four activation codes to every 32-bit lane
  int32_t four;
  std::memcpy(&four, p, 4);
  return _mm256_set1_epi32(four);
}

// lane r += 254 * (codes of row r . x1[4j..4j+3]) + (codes . x2[4j..4j+3]); codes unsigned (u8), x signed
inline __m256i step(__m256i codes, const int8_t* x1, const int8_t* x2, __m256i sum) {
  const __m256i high = _mm256_madd_epi16(_mm256_maddubs_epi16(codes, broadcast4(x1)), _mm256_set1_epi16(254));
  const __m256i low = _mm256_madd_epi16(_mm256_maddubs_epi16(codes, broadcast4(x2)), _mm256_set1_epi16(1));
  return _mm256_add_epi32(sum, _mm256_add_epi32(high, low));
}

// as step, for signed codes: maddubs wants the unsigned operand, so |codes| against x with the codes' signs.
// Pair sums stay within int16: |code| <= 128 and |x| <= 127.
inline __m256i step_signed(__m256i codes, const int8_t* x1, const int8_t* x2, __m256i sum) {
  const __m256i magnitude = _mm256_sign_epi8(codes, codes);
  const __m256i high = _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(broadcast4(x1), codes)),
                                         _mm256_set1_epi16(254));
  const __m256i low = _mm256_madd_epi16(_mm256_maddubs_epi16(magnitude, _mm256_sign_epi8(broadcast4(x2), codes)),
                                        _mm256_set1_epi16(1));
  return _mm256_add_epi32(sum, _mm256_add_epi32(high, low));
}

inline __m256 halves8(const uint8_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}

struct Activations {
  const int8_t* q; const float* d; const float* s; int64_t blocks;
};

// One 8-row tile x one activation row -> 8 outputs
void q4_tile(const uint8_t* tile, const Activations& a, int64_t row, float* out, int64_t ahead) {
  const int8_t* xq = a.q + row * a.blocks * 2 * QK;
  const float* xd = a.d + row * a.blocks;
  const float* xs = a.s + row * a.blocks;
  const __m256i low_nibbles = _mm256_set1_epi8(15);
  __m256 acc = _mm256_setzero_ps(), minimum = _mm256_setzero_ps();
  for (int64_t b = 0; b < a.blocks; ++b) {
    const uint8_t* block = tile + b * Q4_TILE_BYTES;
    for (int line = 0; line < Q4_TILE_BYTES; line += 64) _mm_prefetch(reinterpret_cast<const char*>(block + ahead + line), _MM_HINT_T0);
    const int8_t* x1 = xq + b * 2 * QK;
    const int8_t* x2 = x1 + QK;
    __m256i sum = _mm256_setzero_si256();
    for (int j = 0; j < 4; ++j) {
      const __m256i packed = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 32 + 32 * j));
      sum = step(_mm256_and_si256(packed, low_nibbles), x1 + 4 * j, x2 + 4 * j, sum);
      sum = step(_mm256_and_si256(_mm256_srli_epi16(packed, 4), low_nibbles), x1 + 4 * j + 16, x2 + 4 * j + 16, sum);
    }
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(halves8(block), _mm256_set1_ps(xd[b])), acc);
    minimum = _mm256_fmadd_ps(halves8(block + 16), _mm256_set1_ps(xs[b]), minimum);
  }
  _mm256_storeu_ps(out, _mm256_add_ps(acc, minimum));
}

void q8_tile(const uint8_t* tile, const Activations& a, int64_t row, float* out, int64_t ahead) {
  const int8_t* xq = a.q + row * a.blocks * 2 * QK;
  const float* xd = a.d + row * a.blocks;
  __m256 acc = _mm256_setzero_ps();
  for (int64_t b = 0; b < a.blocks; ++b) {
    const uint8_t* block = tile + b * Q8_TILE_BYTES;
    for (int line = 0; line < Q8_TILE_BYTES; line += 64) _mm_prefetch(reinterpret_cast<const char*>(block + ahead + line), _MM_HINT_T0);
    const int8_t* x1 = xq + b * 2 * QK;
    const int8_t* x2 = x1 + QK;
    __m256i sum = _mm256_setzero_si256();
    for (int j = 0; j < 8; ++j) {
      const __m256i codes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + 16 + 32 * j));
      sum = step_signed(codes, x1 + 4 * j, x2 + 4 * j, sum);
    }
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(halves8(block), _mm256_set1_ps(xd[b])), acc);
  }
  _mm256_storeu_ps(out, acc);
}

// x (..., K) float, tiles uint8 (ceil(N/8), K/32 * tile bytes) -> (..., N) float32 (+ bias). x is quantized once;
// the tiles are split over torch's threads, each tile read once against every activation row (from L1 after the
// first).
template <int64_t TILE_BYTES, typename Tile>
at::Tensor block_linear(const at::Tensor& x_in, const at::Tensor& tiles, int64_t out_features,
                        const c10::optional<at::Tensor>& bias, Tile tile, const char* name) {
  TORCH_CHECK(tiles.scalar_type() == at::kByte && tiles.dim() == 2 && tiles.is_contiguous(), name,
              ": weight must be contiguous uint8 (ceil(out_features / 8), in_features / 32 * ", TILE_BYTES, ")");
  TORCH_CHECK(x_in.dim() >= 1 && x_in.size(-1) % QK == 0 && tiles.size(1) == x_in.size(-1) / QK * TILE_BYTES, name,
              ": input with ", x_in.size(-1), " features does not match the weight ", tiles.sizes());
  TORCH_CHECK(out_features > 0 && (out_features + 7) / 8 == tiles.size(0), name, ": out_features ", out_features,
              " does not match ", tiles.size(0), " tiles of 8 rows");
  const at::Tensor x = x_in.to(at::kFloat).contiguous();
  const int64_t in_features = x.size(-1), rows = x.numel() / in_features, blocks = in_features / QK;
  at::Tensor xq = at::empty({rows, 2 * in_features}, x.options().dtype(at::kChar));
  at::Tensor xd = at::empty({rows, blocks}, x.options()), xs = at::empty({rows, blocks}, x.options());
  quantize_activations(x.data_ptr<float>(), rows * blocks, xq.data_ptr<int8_t>(), xd.data_ptr<float>(),
                       xs.data_ptr<float>());
  const Activations a{xq.data_ptr<int8_t>(), xd.data_ptr<float>(), xs.data_ptr<float>(), blocks};
  const int64_t padded = tiles.size(0) * 8;
  at::Tensor y = at::empty({rows, padded}, x.options());
  float* out = y.data_ptr<float>();
  const uint8_t* w = tiles.data_ptr<uint8_t>();
  const int64_t tile_stride = tiles.size(1);
  const int64_t grain = std::max<int64_t>(1, 2048 / std::max<int64_t>(blocks * rows, 1));
  at::parallel_for(0, tiles.size(0), grain, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t)
      for (int64_t r = 0; r < rows; ++r) tile(w + t * tile_stride, a, r, out + r * padded + t * 8, r == 0 ? PREFETCH_TILES * tile_stride : 0);
  });
  if (padded != out_features) y = y.narrow(1, 0, out_features).contiguous();
  if (bias.has_value() && bias->defined()) y.add_(bias->to(at::kFloat));
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = out_features;
  return y.view(shape);
}

at::Tensor q4_linear(const at::Tensor& x, const at::Tensor& tiles, int64_t out_features,
                     const c10::optional<at::Tensor>& bias) {
  return block_linear<Q4_TILE_BYTES>(x, tiles, out_features, bias, q4_tile, "q4_linear");
}

at::Tensor q8_linear(const at::Tensor& x, const at::Tensor& tiles, int64_t out_features,
                     const c10::optional<at::Tensor>& bias) {
  return block_linear<Q8_TILE_BYTES>(x, tiles, out_features, bias, q8_tile, "q8_linear");
}

// tiles -> float32 (N, K): the weight the kernels compute with, for passes over many rows (a GEMM beats the
// kernels there) and for inspection
at::Tensor dequantize_tiles(const at::Tensor& tiles, int64_t out_features, bool q4) {
  const int64_t tile_bytes = q4 ? Q4_TILE_BYTES : Q8_TILE_BYTES;
  TORCH_CHECK(tiles.scalar_type() == at::kByte && tiles.dim() == 2 && tiles.is_contiguous() &&
              tiles.size(1) % tile_bytes == 0 && (out_features + 7) / 8 == tiles.size(0),
              "dequantize: tiles do not match out_features ", out_features);
  const int64_t blocks = tiles.size(1) / tile_bytes, in_features = blocks * QK;
  at::Tensor w = at::empty({tiles.size(0) * 8, in_features}, tiles.options().dtype(at::kFloat));
  const uint8_t* src = tiles.data_ptr<uint8_t>();
  float* dst = w.data_ptr<float>();
  at::parallel_for(0, tiles.size(0), 16, [&](int64_t begin, int64_t end) {
    alignas(32) float d[8], m[8];
    for (int64_t t = begin; t < end; ++t) {
      for (int64_t b = 0; b < blocks; ++b) {
        const uint8_t* block = src + t * tiles.size(1) + b * tile_bytes;
        _mm256_store_ps(d, halves8(block));
        if (q4) _mm256_store_ps(m, halves8(block + 16));
        for (int r = 0; r < 8; ++r) {
          float* row = dst + (t * 8 + r) * in_features + b * QK;
          for (int j = 0; j < (q4 ? 4 : 8); ++j)
            for (int i = 0; i < 4; ++i) {
              const uint8_t byte = block[(q4 ? 32 : 16) + 32 * j + 4 * r + i];
              if (q4) {
                row[4 * j + i] = d[r] * static_cast<float>(byte & 15) + m[r];
                row[4 * j + i + 16] = d[r] * static_cast<float>(byte >> 4) + m[r];
              } else {
                row[4 * j + i] = d[r] * static_cast<float>(static_cast<int8_t>(byte));
              }
            }
        }
      }
    }
  });
  return tiles.size(0) * 8 == out_features ? w : w.narrow(0, 0, out_features).contiguous();
}

at::Tensor q4_dequantize(const at::Tensor& tiles, int64_t out_features) {
  return dequantize_tiles(tiles, out_features, true);
}

at::Tensor q8_dequantize(const at::Tensor& tiles, int64_t out_features) {
  return dequantize_tiles(tiles, out_features, false);
}

// ---------------------------------------------------------------- fused decode-step ops
// One call each where the modules take 6-12 small torch ops: at decoding's one row per step the per-op overhead of
// RMSNorm and rotary embeddings cost more than their arithmetic (measured: ~40% of a quantized SmolLM2 step).

// x * rsqrt(mean(x^2) + eps) * weight over the last dimension, float32, in the module's order of operations
at::Tensor rms_norm(const at::Tensor& x_in, const at::Tensor& weight_in, double eps) {
  TORCH_CHECK(x_in.scalar_type() == at::kFloat && weight_in.scalar_type() == at::kFloat &&
              weight_in.numel() == x_in.size(-1), "rms_norm: float32 x (..., n) and weight (n)");
  const at::Tensor x = x_in.contiguous(), weight = weight_in.contiguous();
  at::Tensor y = at::empty_like(x);
  const int64_t n = x.size(-1), rows = x.numel() / std::max<int64_t>(n, 1);
  const float* src = x.data_ptr<float>();
  const float* w = weight.data_ptr<float>();
  float* dst = y.data_ptr<float>();
  for (int64_t r = 0; r < rows; ++r) {
    const float* v = src + r * n;
    __m256 squares = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      const __m256 part = _mm256_loadu_ps(v + i);
      squares = _mm256_add_ps(squares, _mm256_mul_ps(part, part));
    }
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, squares);
    float sum = 0.f;
    for (float lane : lanes) sum += lane;
    for (; i < n; ++i) sum += v[i] * v[i];
    const float scale = 1.f / std::sqrt(sum / static_cast<float>(n) + static_cast<float>(eps));
    for (int64_t k = 0; k < n; ++k) dst[r * n + k] = w[k] * (v[k] * scale);
  }
  return y;
}

// x (B, H, T, D) * cos + rotate_half(x) * sin, cos / sin (B, T, D); rotate_half(x) = cat(-x[D/2:], x[:D/2])
at::Tensor rotary(const at::Tensor& x, const at::Tensor& cos_in, const at::Tensor& sin_in) {
  TORCH_CHECK(x.scalar_type() == at::kFloat && x.dim() == 4 && cos_in.dim() == 3 && cos_in.size(-1) == x.size(3) &&
              cos_in.sizes() == sin_in.sizes(), "rotary: float32 x (B, H, T, D), cos and sin (B, T, D)");
  const at::Tensor cos = cos_in.to(at::kFloat).contiguous(), sin = sin_in.to(at::kFloat).contiguous();
  const int64_t B = x.size(0), H = x.size(1), T = x.size(2), D = x.size(3), half = D / 2;
  TORCH_CHECK(cos.size(0) == B || cos.size(0) == 1, "rotary: cos has ", cos.size(0), " rows for ", B);
  at::Tensor y = at::empty({B, H, T, D}, x.options());
  const auto in = x.accessor<float, 4>();
  float* out = y.data_ptr<float>();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < T; ++t) {
        const float* c = cos.data_ptr<float>() + ((cos.size(0) == 1 ? 0 : b) * T + t) * D;
        const float* s = sin.data_ptr<float>() + ((sin.size(0) == 1 ? 0 : b) * T + t) * D;
        const auto v = in[b][h][t];
        float* o = out + ((b * H + h) * T + t) * D;
        for (int64_t i = 0; i < D; ++i) {
          const float turned = i < half ? -v[i + half] : v[i - half];
          o[i] = v[i] * c[i] + turned * s[i];
        }
      }
  return y;
}

// ---------------------------------------------------------------- one decoder layer, one new token per row
// A Llama-style pre-norm block at decoding (every row one new token), in one call: RMSNorm, the joined q/k/v block
// layer, rotary, the new keys/values written into the cache at `position`, attention over positions 0..position
// (grouped-query, optional additive bias), o, residual, RMSNorm, the joined gate/up, SiLU(gate) * up, down, residual.
// The modules' own path runs ~25 torch ops per layer, each 3-6 us of dispatch: as long as the block kernels' work.
at::Tensor block_linear_any(const at::Tensor& x, const at::Tensor& tiles, int64_t out_features,
                            const c10::optional<at::Tensor>& bias) {
  const int64_t blocks = x.size(-1) / QK;
  if (tiles.size(1) == blocks * Q4_TILE_BYTES) return q4_linear(x, tiles, out_features, bias);
  return q8_linear(x, tiles, out_features, bias);
}

at::Tensor decode_layer(const at::Tensor& x, const at::Tensor& norm1, double eps1, const at::Tensor& qkv,
                        int64_t qkv_out, const c10::optional<at::Tensor>& qkv_bias, const at::Tensor& cos_in,
                        const at::Tensor& sin_in, const at::Tensor& k_cache, const at::Tensor& v_cache,
                        int64_t position, int64_t heads, int64_t kv_heads, double scale,
                        const c10::optional<at::Tensor>& attention_bias, const at::Tensor& o, int64_t o_out,
                        const c10::optional<at::Tensor>& o_bias, const at::Tensor& norm2, double eps2,
                        const at::Tensor& gate_up, int64_t gate_up_out, const c10::optional<at::Tensor>& gate_up_bias,
                        const at::Tensor& down, int64_t down_out, const c10::optional<at::Tensor>& down_bias) {
  const int64_t B = x.size(0), hidden = x.size(-1), D = k_cache.size(3), S = position + 1;
  TORCH_CHECK(x.dim() == 3 && x.size(1) == 1 && x.scalar_type() == at::kFloat && x.is_contiguous(),
              "decode_layer: x must be contiguous float32 (B, 1, hidden)");
  TORCH_CHECK(k_cache.stride(3) == 1 && v_cache.strides() == k_cache.strides() && k_cache.size(0) == B &&
              k_cache.sizes() == v_cache.sizes() && k_cache.scalar_type() == at::kFloat &&
              k_cache.size(1) == kv_heads && k_cache.size(2) > position && qkv_out == (heads + 2 * kv_heads) * D &&
              heads % kv_heads == 0 && cos_in.size(-1) == D, "decode_layer: cache or head shapes do not match");
  const int64_t row_stride = k_cache.stride(0), head_stride = k_cache.stride(1), position_stride = k_cache.stride(2);
  const at::Tensor cos = cos_in.to(at::kFloat).contiguous(), sin = sin_in.to(at::kFloat).contiguous();
  const at::Tensor projected = block_linear_any(rms_norm(x, norm1, eps1).view({B, hidden}), qkv, qkv_out, qkv_bias);
  at::Tensor attended = at::empty({B, heads * D}, x.options());
  at::Tensor bias = attention_bias.has_value() && attention_bias->defined()
                        ? attention_bias->to(at::kFloat).expand({B, heads, 1, S})
                        : at::zeros({1, 1, 1, S}, x.options()).expand({B, heads, 1, S});
  const auto bias_at = bias.accessor<float, 4>();
  const int64_t half = D / 2, group = heads / kv_heads;
  float* keys = k_cache.data_ptr<float>();
  float* values = v_cache.data_ptr<float>();
  for (int64_t b = 0; b < B; ++b) {
    const float* row = projected.data_ptr<float>() + b * qkv_out;
    const float* c = cos.data_ptr<float>() + (cos.size(0) == 1 ? 0 : b) * D;
    const float* s = sin.data_ptr<float>() + (sin.size(0) == 1 ? 0 : b) * D;
    auto rotate = [&](const float* v, float* out) {  // v * cos + rotate_half(v) * sin, as the module computes it
      for (int64_t i = 0; i < D; ++i) out[i] = v[i] * c[i] + (i < half ? -v[i + half] : v[i - half]) * s[i];
    };
    for (int64_t g = 0; g < kv_heads; ++g) {
      const int64_t at = b * row_stride + g * head_stride + position * position_stride;
      rotate(row + (heads + g) * D, keys + at);
      std::memcpy(values + at, row + (heads + kv_heads + g) * D, D * sizeof(float));
    }
    std::vector<float> query(D), scores(S);
    for (int64_t h = 0; h < heads; ++h) {
      rotate(row + h * D, query.data());
      const int64_t g = h / group;
      const float* k = keys + b * row_stride + g * head_stride;
      const float* v = values + b * row_stride + g * head_stride;
      float top = -INFINITY;
      for (int64_t t = 0; t < S; ++t) {
        float dot = 0.f;
        for (int64_t i = 0; i < D; ++i) dot += query[i] * k[t * position_stride + i];
        scores[t] = dot * static_cast<float>(scale) + bias_at[b][h][0][t];
        top = std::fmax(top, scores[t]);
      }
      float total = 0.f;
      for (int64_t t = 0; t < S; ++t) total += (scores[t] = std::exp(scores[t] - top));
      float* out = attended.data_ptr<float>() + (b * heads + h) * D;
      for (int64_t i = 0; i < D; ++i) out[i] = 0.f;
      for (int64_t t = 0; t < S; ++t) {
        const float p = scores[t] / total;
        for (int64_t i = 0; i < D; ++i) out[i] += p * v[t * position_stride + i];
      }
    }
  }
  at::Tensor h1 = block_linear_any(attended, o, o_out, o_bias).add_(x.view({B, hidden}));
  at::Tensor both = block_linear_any(rms_norm(h1, norm2, eps2), gate_up, gate_up_out, gate_up_bias);
  const int64_t inner = gate_up_out / 2;
  at::Tensor inner_act = at::empty({B, inner}, x.options());
  for (int64_t b = 0; b < B; ++b) {
    const float* g = both.data_ptr<float>() + b * gate_up_out;
    float* out = inner_act.data_ptr<float>() + b * inner;
    for (int64_t i = 0; i < inner; ++i) out[i] = g[i] / (1.f + std::exp(-g[i])) * g[inner + i];
  }
  return block_linear_any(inner_act, down, down_out, down_bias).add_(h1).view({B, 1, hidden});
}

}  // namespace

TORCH_LIBRARY(leanformers, library) {
  library.def("q4_linear(Tensor x, Tensor tiles, int out_features, Tensor? bias) -> Tensor");
  library.def("q8_linear(Tensor x, Tensor tiles, int out_features, Tensor? bias) -> Tensor");
  library.def("q4_dequantize(Tensor tiles, int out_features) -> Tensor");
  library.def("q8_dequantize(Tensor tiles, int out_features) -> Tensor");
  library.def("rms_norm(Tensor x, Tensor weight, float eps) -> Tensor");
  library.def("rotary(Tensor x, Tensor cos, Tensor sin) -> Tensor");
  library.def("decode_layer(Tensor x, Tensor norm1, float eps1, Tensor qkv, int qkv_out, Tensor? qkv_bias, "
              "Tensor cos, Tensor sin, Tensor k_cache, Tensor v_cache, int position, int heads, int kv_heads, "
              "float scale, Tensor? attention_bias, Tensor o, int o_out, Tensor? o_bias, Tensor norm2, float eps2, "
              "Tensor gate_up, int gate_up_out, Tensor? gate_up_bias, Tensor down, int down_out, Tensor? down_bias) "
              "-> Tensor");
}

TORCH_LIBRARY_IMPL(leanformers, CPU, library) {
  library.impl("q4_linear", &q4_linear);
  library.impl("q8_linear", &q8_linear);
  library.impl("q4_dequantize", &q4_dequantize);
  library.impl("q8_dequantize", &q8_dequantize);
  library.impl("rms_norm", &rms_norm);
  library.impl("rotary", &rotary);
  library.impl("decode_layer", &decode_layer);
}
