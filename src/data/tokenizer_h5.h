// The tokenizer's place in an HDF5 file, the same in token files and checkpoints (SPEC section 8):
// the root attribute `tokenizer` and, for SentencePiece, the uint8 dataset /tokenizer/model.
#pragma once

#include <string>

#include "src/core/h5.h"

namespace sy {

inline constexpr const char* kTokenizerModelPath = "tokenizer/model";

// The bytes of /tokenizer/model in `file`, or "" when there is none. Throws std::runtime_error
// saying what is wrong when it is not a one-dimensional 8-bit integer dataset or cannot be read
// (a Fletcher32 checksum that fails, in a checkpoint).
std::string read_tokenizer_model(hid_t file);

}  // namespace sy
