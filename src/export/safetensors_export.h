// `ckpt export --format safetensors`: a verified checkpoint's /model tensors, float32, under their
// SPEC names (model/layers/0/attn/wqkv) in one .safetensors file, with the step, layout and config
// in its metadata. The Hugging Face directory export is hf_export.h.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "comm/mpi.h"
#include "src/ckpt/checkpoint.h"

namespace sy {

// Before any work (no MPI needed): UsageError when `output` cannot be the one file written --
// empty, a directory (or a name ending in '/'), a special file, one that cannot be replaced, or
// `checkpoint` itself.
void check_safetensors_output(const std::string& output, const std::string& checkpoint);

struct SafetensorsExportReport {
  int64_t step = 0;
  int64_t tensors = 0;
  int64_t elements = 0;            // float32 values written
  std::vector<std::string> notes;  // what the checkpoint's reader noticed (damaged optimizer state)
};

// Collective (every rank verifies and reads the checkpoint; rank 0 writes): CheckpointError
// (exit 2) for a model tensor that does not verify or holds a value that is not finite,
// nothing written then.
SafetensorsExportReport export_safetensors(MPI_Comm comm, const std::string& checkpoint,
                                           const std::string& output,
                                           const ckpt::ReadProgress& progress);

}  // namespace sy
