// src/ckpt/detail.h's chunk_shape: HDF5 stores every chunk whole, the edge chunk of a dimension
// included, so the chunks must tile each dimension with little padding, and stay near the 4 MiB
// the readers' work units assume. Checked by counting, for shapes the model has (experts x d x F
// at several sizes) and awkward ones (primes, one huge row).
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "src/ckpt/detail.h"

namespace {

using sy::ckpt::detail::chunk_shape;

int64_t stored_elements(const std::vector<int64_t>& shape, const std::vector<int64_t>& chunk) {
  int64_t n = 1;
  for (size_t d = 0; d < shape.size(); ++d) n *= (shape[d] + chunk[d] - 1) / chunk[d] * chunk[d];
  return n;
}

TEST(ChunkShape, ChunksTileEachDimensionWithLessThanARowOfPaddingEach) {
  const std::vector<std::vector<int64_t>> shapes = {
      {16, 192, 384},  {16, 384, 192}, {64, 1024, 1408}, {17, 256, 256},
      {8, 2048, 4096}, {50257, 768},   {131072, 4096},   {3, 1 << 22},
      {2, 3, 1 << 21}, {97, 11, 1009}, {256, 32},        {4},
      {1, 1, 1}};
  for (const auto& shape : shapes) {
    const std::vector<int64_t> chunk = chunk_shape(shape);
    ASSERT_EQ(chunk.size(), shape.size());
    int64_t chunk_elements = 1, data = 1;
    for (size_t d = 0; d < shape.size(); ++d) {
      ASSERT_GE(chunk[d], 1);
      ASSERT_LE(chunk[d], shape[d]);
      const int64_t chunks = (shape[d] + chunk[d] - 1) / chunk[d];
      // The padding of this dimension: under one row for each of its chunks.
      EXPECT_LT(chunks * chunk[d] - shape[d], chunks) << "dimension " << d << " of a shape";
      chunk_elements *= chunk[d];
      data *= shape[d];
    }
    EXPECT_LE(chunk_elements * 4, int64_t{4} << 20);
    // Whole: at most 1/16 more stored than the tensor holds (the worst here: 17 experts of
    // 256 KiB in 2 chunks of 9; before, [16, 192, 384] stored 28 experts' bytes).
    EXPECT_LE(stored_elements(shape, chunk), data + data / 16);
  }
}

TEST(ChunkShape, SixteenExpertsOfFourAndAHalfMebibytesSplitInTwoHalves) {
  // configs/small.yaml with 16 experts: [16, 192, 384] is 4.5 MiB; chunks of 14 experts stored 28.
  EXPECT_EQ(chunk_shape({16, 192, 384}), (std::vector<int64_t>{8, 192, 384}));
  EXPECT_EQ(chunk_shape({8, 192, 384}), (std::vector<int64_t>{8, 192, 384}));  // 2.25 MiB: whole
}

}  // namespace
