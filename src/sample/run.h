// `switchyard sample`: text from a checkpoint. Loads any checkpoint (written under any layout,
// by either backend), encodes the prompt with the checkpoint's tokenizer (or takes it as token
// ids), streams the generated text as it comes (as ids where the tokenizer has no text), and
// reports the speed. --device cuda decodes on the GPU (CUDA build,
// src/sample/cuda_decoder.h).
#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "comm/mpi.h"
#include "src/data/tokenizer.h"
#include "src/sample/sampler.h"

namespace sy {

struct SampleRequest {
  std::string checkpoint;
  std::optional<std::string> prompt;          // --prompt
  std::string prompt_file;                    // --prompt-file
  std::optional<std::string> prompt_id_list;  // --prompt-ids, as given ("3 17 4", "3,17,4")
  SampleOptions options;
  std::string device = "cpu";
};

// The prompt's text: --prompt, or the contents of --prompt-file. UsageError naming the problem:
// no prompt given or more than one (--prompt-ids included), an unreadable prompt file.
std::string prompt_text(const SampleRequest& req);
// The ids of the prompt `text` (prompt_text(req)). UsageError naming the option: an empty prompt,
// text the tokenizer cannot encode exactly, a tokenizer without text (which only --prompt-ids
// can prompt). Any length: past seq_len the model reads it through the sliding window it
// generates with.
std::vector<int32_t> prompt_ids(const SampleRequest& req, const std::string& text,
                                const Tokenizer& tok);
// --prompt-ids: the ids of `list`, whole numbers in [0, model_vocab) -- [0, tokenizer_vocab)
// where the model pads its vocabulary past the tokenizer's (ids no text and no training data
// had, printed as nothing) -- separated by spaces and/or a comma ("3 17 4", "3,17,4",
// "3, 17, 4"). UsageError naming --prompt-ids and the entry at fault (its position, its text
// shortened): not a whole number, out of range, an empty entry between commas; or an empty list.
std::vector<int32_t> parse_prompt_ids(std::string_view list, int64_t model_vocab,
                                      int64_t tokenizer_vocab = 0);

// Collective (every rank reads the checkpoint; rank 0 generates): the prompt and the generated
// text to `text` as they come, the speed to `info`. UsageError (exit 2) for a bad request, a
// prompt it cannot use, a damaged checkpoint, or --device cuda in a build without the CUDA backend
// or without a usable GPU.
void run_sample(MPI_Comm comm, const SampleRequest& req, std::ostream& text, std::ostream& info);

}  // namespace sy
