// The checksum a checkpoint's metadata_checksum is made of (src/ckpt/seal.h): CRC-64/XZ against the
// catalogue's check value, so a sealed checkpoint of an earlier build still verifies.
#include <gtest/gtest.h>

#include "src/ckpt/seal.h"

namespace {

using sy::ckpt::detail::crc64;

TEST(CkptSeal, Crc64IsCrc64XzAndContinues) {
  // Check value of CRC-64/XZ (reflected ECMA-182, init and xorout all ones) over "123456789".
  EXPECT_EQ(crc64(0, "123456789"), 0x995DC9BBDF1939FAull);
  EXPECT_EQ(crc64(0, ""), 0u);
  // Continuing from a previous value is the CRC of the concatenation.
  EXPECT_EQ(crc64(crc64(0, "1234"), "56789"), 0x995DC9BBDF1939FAull);
}

}  // namespace
