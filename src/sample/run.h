// `switchyard sample`: text from a checkpoint. Loads any checkpoint (written under any layout,
// by either backend), encodes the prompt with the checkpoint's tokenizer, streams the generated
// text as it comes, and reports the speed. --device cuda decodes on the GPU (CUDA build,
// src/sample/cuda_decoder.h).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "comm/mpi.h"
#include "src/data/tokenizer.h"
#include "src/sample/sampler.h"

namespace sy {

struct SampleRequest {
  std::string checkpoint;
  std::optional<std::string> prompt;  // --prompt
  std::string prompt_file;            // --prompt-file
  SampleOptions options;
  std::string device = "cpu";
};

// The prompt's text: --prompt, or the contents of --prompt-file. UsageError naming the problem:
// no prompt given or both, an unreadable prompt file.
std::string prompt_text(const SampleRequest& req);
// The ids of the prompt `text` (prompt_text(req)). UsageError naming the option: an empty prompt,
// text the tokenizer cannot encode exactly. Any length: past seq_len the model reads it through
// the sliding window it generates with.
std::vector<int32_t> prompt_ids(const SampleRequest& req, const std::string& text,
                                const Tokenizer& tok);

// Collective (every rank reads the checkpoint; rank 0 generates): the prompt and the generated
// text to `text` as they come, the speed to `info`. UsageError (exit 2) for a bad request, a
// prompt it cannot use, a damaged checkpoint, or --device cuda in a build without the CUDA backend
// or without a usable GPU.
void run_sample(MPI_Comm comm, const SampleRequest& req, std::ostream& text, std::ostream& info);

}  // namespace sy
