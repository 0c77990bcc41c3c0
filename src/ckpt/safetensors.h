// Writing the safetensors format (https://github.com/huggingface/safetensors), so that the model
// weights of a checkpoint load in Python without HDF5:
//   [8 bytes] N, little-endian u64: the length of the header
//   [N bytes] JSON: {"__metadata__": {str: str}, "<name>": {"dtype": "F32", "shape": [..],
//             "data_offsets": [begin, end]}, ...}, padded with spaces to a multiple of 8 bytes
//   [...]     the tensors' raw little-endian bytes, back to back, offsets relative to here
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "src/ckpt/checkpoint.h"
#include "src/core/durable_file.h"

namespace sy::ckpt {

// Writes `tensors` (float32, in the given order) to `path` atomically (path.tmp, then rename),
// creating its missing parent directories. Throws UsageError naming `path` and the reason when it
// cannot be written; nothing is left behind then (no .tmp, no directory it created).
void write_safetensors(const std::string& path, const std::vector<WholeTensor>& tensors,
                       const std::vector<std::pair<std::string, std::string>>& metadata);

// The same file written to `staged`'s "<path>.tmp", for the caller to commit with other files.
// Throws std::runtime_error naming the .tmp.
void stage_safetensors(files::StagedFiles& staged, const std::string& path,
                       const std::vector<WholeTensor>& tensors,
                       const std::vector<std::pair<std::string, std::string>>& metadata);

// A JSON string literal (quotes included) for `s`: well-formed UTF-8 passes through, any other
// byte becomes \ufffd (JSON text is UTF-8; safetensors refuses a header that is not).
std::string json_string(const std::string& s);

}  // namespace sy::ckpt
