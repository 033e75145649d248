// bfloat16 linear map for CPUs with AVX512-BF16: y = x W^T (+ b), with W pre-packed.
//
// Decoding multiplies one to eight rows by each weight matrix, so the time goes into streaming weights
// from memory. The packed layout [N/4, K/32, 4, 32] makes each block of 4 output rows one contiguous
// run, read once from memory; up to 6 input rows share each load (more rows: tiles of at most 6, the
// block then comes from cache). Products accumulate in float32 (VDPBF16PS), the bias is added in
// float32 and the result is rounded once to bfloat16 (round to nearest even).
#include <ATen/Parallel.h>
#include <c10/util/BFloat16.h>
#include <immintrin.h>
#include <torch/extension.h>

namespace {

constexpr int64_t kRows = 4;    // output rows per packed block
constexpr int64_t kChunk = 32;  // bfloat16 values per 512-bit register
constexpr int kMaxTile = 6;     // input rows per pass: 6 x 4 accumulators + 6 inputs + 1 weight registers

// The sums of 4 accumulators, in order.
inline __m128 sum4(const __m512* a) {
  __m256 h[4];
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) h[i] = _mm256_add_ps(_mm512_castps512_ps256(a[i]), _mm512_extractf32x8_ps(a[i], 1));
  const __m256 u = _mm256_hadd_ps(_mm256_hadd_ps(h[0], h[1]), _mm256_hadd_ps(h[2], h[3]));
  return _mm_add_ps(_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1));
}

// MC input rows x [MC, k] against one block w (4 rows) -> y[m * n + 0..3]. The unroll pragmas keep the
// accumulators in registers (without them GCC keeps small tiles on the stack, 2-3x slower).
template <int MC>
void tile(const uint16_t* __restrict w, const uint16_t* __restrict x, int64_t k, const float* bias, int64_t n,
          c10::BFloat16* y) {
  __m512 acc[MC][kRows];
#pragma GCC unroll 8
  for (int m = 0; m < MC; ++m)
#pragma GCC unroll 4
    for (int r = 0; r < kRows; ++r) acc[m][r] = _mm512_setzero_ps();
  for (int64_t c = 0; c < k / kChunk; ++c, w += kRows * kChunk) {
    __m512bh xs[MC];
#pragma GCC unroll 8
    for (int m = 0; m < MC; ++m) xs[m] = (__m512bh)_mm512_loadu_si512(x + m * k + c * kChunk);
#pragma GCC unroll 4
    for (int r = 0; r < kRows; ++r) {
      const __m512bh ws = (__m512bh)_mm512_loadu_si512(w + r * kChunk);
#pragma GCC unroll 8
      for (int m = 0; m < MC; ++m) acc[m][r] = _mm512_dpbf16_ps(acc[m][r], ws, xs[m]);
    }
  }
  const __m128 b = bias ? _mm_loadu_ps(bias) : _mm_setzero_ps();
#pragma GCC unroll 8
  for (int m = 0; m < MC; ++m) {
    const __m128bh v = _mm256_cvtneps_pbh(_mm256_castps128_ps256(_mm_add_ps(sum4(acc[m]), b)));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(y + m * n), (__m128i)v);
  }
}

using Tile = void (*)(const uint16_t*, const uint16_t*, int64_t, const float*, int64_t, c10::BFloat16*);
constexpr Tile kTiles[kMaxTile + 1] = {nullptr, tile<1>, tile<2>, tile<3>, tile<4>, tile<5>, tile<6>};

}  // namespace

// x [M, K] bfloat16, packed [N/4, K/32, 4, 32] bfloat16, bias [N] float32 or None -> [M, N] bfloat16
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& packed, const c10::optional<torch::Tensor>& bias) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == at::kBFloat16 && x.is_contiguous(), "x: contiguous [M, K] bfloat16");
  TORCH_CHECK(packed.dim() == 4 && packed.size(2) == kRows && packed.size(3) == kChunk &&
                  packed.scalar_type() == at::kBFloat16 && packed.is_contiguous(),
              "packed: contiguous [N/4, K/32, 4, 32] bfloat16");
  const int64_t m = x.size(0), k = x.size(1), blocks = packed.size(0), n = blocks * kRows;
  TORCH_CHECK(packed.size(1) * kChunk == k, "x has ", k, " columns, the weight ", packed.size(1) * kChunk);
  TORCH_CHECK(!bias.has_value() || (bias->scalar_type() == at::kFloat && bias->numel() == n && bias->is_contiguous()),
              "bias: contiguous [N] float32");
  auto y = torch::empty({m, n}, x.options());
  if (m == 0) return y;
  const float* b = bias.has_value() ? bias->data_ptr<float>() : nullptr;
  const auto* xs = reinterpret_cast<const uint16_t*>(x.data_ptr());
  const auto* ws = reinterpret_cast<const uint16_t*>(packed.data_ptr());
  auto* ys = y.data_ptr<c10::BFloat16>();
  const int64_t passes = (m + kMaxTile - 1) / kMaxTile;  // row tiles as even as possible: 8 rows = 4 + 4
  // a task gets at least 128 blocks (512 outputs), so small matrices stay on one thread
  at::parallel_for(0, blocks, 128, [&](int64_t first, int64_t last) {
    for (int64_t blk = first; blk < last; ++blk) {
      for (int64_t pass = 0, row = 0; pass < passes; ++pass) {
        const int64_t rows = (m - row) / (passes - pass);
        kTiles[rows](ws + blk * kRows * k, xs + row * k, k, b ? b + blk * kRows : nullptr, n,
                     ys + row * n + blk * kRows);
        row += rows;
      }
    }
  });
  return y;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.def("linear", &linear, "bfloat16 x [M, K] times a packed weight [N/4, K/32, 4, 32] (+ bias) -> [M, N]");
}
