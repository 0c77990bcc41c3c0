// What sampling needs from a checkpoint or a running trainer: the model's config, every parameter
// whole in the one-rank layout (make_param_table(cfg)), and the tokenizer of its training data.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "comm/mpi.h"
#include "src/ckpt/checkpoint.h"
#include "src/config/config.h"
#include "src/data/tokenizer.h"
#include "src/model/params.h"

namespace sy {

struct SamplingModel {
  Config cfg;
  std::vector<float> params;  // make_param_table(cfg) layout
  Tokenizer tokenizer = Tokenizer::bytes();
  int64_t step = 0;
  std::vector<std::string> notes;  // damage the model does not need (the optimizer state)
};

// Collective (every rank reads; any layout wrote it). Verifies the whole checkpoint (every
// Fletcher32 checksum), parses its stored config, reads its tokenizer. UsageError
// (CheckpointError) naming the file, and the dataset when one is at fault, for anything damaged
// or missing that the model needs; damage to the optimizer state goes to `notes`.
// `progress`: the verification's and the read's progress lines (ckpt::ReadProgress).
SamplingModel load_sampling_model(MPI_Comm comm, const std::string& file,
                                  const ckpt::ReadProgress& progress = {});

// The flat one-rank parameter buffer of `table` from whole global tensors found by SPEC name
// (find returns null for a missing one). Throws UsageError "<source>: ..." naming a missing
// tensor or one of another size.
std::vector<float> flat_params(
    const ParamTable& table,
    const std::function<const std::vector<float>*(const std::string&)>& find,
    const std::string& source);

}  // namespace sy
