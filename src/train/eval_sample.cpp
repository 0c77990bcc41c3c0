#include "src/train/eval_sample.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <regex>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "src/core/printable.h"
#include "src/core/run_files.h"
#include "src/sample/decoder.h"
#include "src/sample/sampler.h"
#include "src/train/loop_common.h"
#include "src/train/signals.h"

namespace sy {

namespace {
constexpr size_t kPromptTokens = 16;
constexpr const char* kHeader = "sample at step ";  // each sample's first line, after a blank one

std::filesystem::path samples_file(const std::string& out_dir) {
  return std::filesystem::path(out_dir) / "samples.txt";
}

// The offset of the first sample block of a step after `step` in `path` (its size when none).
int64_t first_sample_after(const std::filesystem::path& path, int64_t step) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot be read");
  int64_t offset = 0;
  bool block_start = true;  // the file's start, or after a blank line
  // A header whole, as decode() writes it: a sample's text with a blank line and "sample at
  // step 99" in it is not one (it cut the file inside an earlier sample; review).
  static const std::regex header(R"(sample at step (\d{1,18}) \(the first \d+ validation tokens, )"
                                 R"(then \d+ generated\):)");
  std::smatch m;
  for (std::string line; std::getline(in, line);) {
    if (block_start && line.starts_with(kHeader) && std::regex_match(line, m, header) &&
        std::stoll(m[1].str()) > step)
      return offset;
    block_start = line.empty();
    offset += static_cast<int64_t>(line.size()) + 1;
  }
  if (in.bad()) throw std::runtime_error("cannot be read");
  return static_cast<int64_t>(std::filesystem::file_size(path));
}
}  // namespace

std::string start_samples_file(const std::string& out_dir, bool resumed, int64_t resume_step) {
  namespace fs = std::filesystem;
  const fs::path path = samples_file(out_dir);
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return "";
  try {
    if (!resumed) return keep_earlier_as_prev(path.string());
    const int64_t cut = first_sample_after(path, resume_step);
    if (cut >= static_cast<int64_t>(fs::file_size(path))) return "";
    fs::resize_file(path, static_cast<uintmax_t>(cut));
    return "note: " + path.string() + ": the samples after step " + std::to_string(resume_step) +
           " (drawn before the run stopped) are dropped\n";
  } catch (const std::exception& e) {
    return "warning: " + path.string() + ": " + e.what() + "; its samples are left as they are\n";
  }
}

EvalSampler::EvalSampler(const Config& cfg, const TokenSource& data)
    : cfg_(cfg),
      tokenizer_(Tokenizer::from_stored(data.tokenizer, data.tokenizer_model, data.vocab_size,
                                        "token file '" + cfg.data.path + "'")),
      pickable_(static_cast<int>(data.vocab_size), tokenizer_.never_encoded_ids()) {
  const auto n = static_cast<int64_t>(std::min({kPromptTokens, static_cast<size_t>(data.val.size()),
                                                static_cast<size_t>(cfg.model.seq_len)}));
  prompt_.resize(static_cast<size_t>(n));
  data.val.read(0, n, prompt_.data());
}

void EvalSampler::sample(int64_t step, const comm::ProcessGroups& g, const ParamTable& table,
                         const float* params, std::ostream& log, comm::Watchdog* wd) const {
  if (!enabled() || prompt_.empty()) return;
  std::vector<float> whole = gather_flat_params(g, cfg_, table, params, wd);
  // Rank 0 decodes alone: a throw here (a non-finite logit, a full disk under samples.txt) would
  // end it while the other ranks wait in the next collective until the watchdog. The sample is a
  // look at the model, not the run: a warning.
  if (g.world().rank() == 0) {
    try {
      decode(step, std::move(whole), log);
    } catch (const std::exception& e) {
      log << "warning: no sample at step " << step << ": " << e.what() << "\n" << std::flush;
    }
  }
  // The others wait for it here, unbounded: eval.sample_tokens may take longer than
  // parallel.timeout_s (100000 tokens of a wide model on rank 0's CPU), and their next collective
  // under the watchdog ended a healthy run (exit 1, its final checkpoint lost). Rank 0 is busy,
  // not stuck: its decode is bounded by the token count, and a rank that dies ends the job.
  if (g.world().size() > 1) MPI_CHECK(MPI_Barrier(g.world().get()));
}

void EvalSampler::decode(int64_t step, std::vector<float> whole, std::ostream& log) const {
  Decoder dec(cfg_, std::move(whole));
  SampleOptions o;
  o.tokens = cfg_.eval.sample_tokens;
  o.temperature = 1.0;
  o.seed = cfg_.run.seed;
  // A preemption signal cuts the sample short: the run's checkpoint is waiting on it (SLURM's
  // grace time runs), and rank 0 would draw up to eval.sample_tokens before looking.
  TextStream stream([&](std::span<const int32_t> ids) { return tokenizer_.decode(ids); }, prompt_);
  std::string text = stream.context_text();
  const auto add_or_stop = [&](int32_t id) {
    if (const PreemptionSignals* s = PreemptionSignals::installed(); s && s->requested())
      throw std::runtime_error(std::string(s->signal_name()) +
                               " arrived: cut short so that the run can stop");
    text += stream.push(id);
  };
  const GenerateResult r = generate(dec, prompt_, o, pickable_, add_or_stop);
  text += stream.flush();
  const std::string header = kHeader + std::to_string(step) + " (the first " +
                             std::to_string(prompt_.size()) + " validation tokens, then " +
                             std::to_string(r.tokens) + " generated):";
  log << header << "\n" << printable(text) << "\n" << std::flush;  // samples.txt keeps the bytes
  const std::filesystem::path file = samples_file(cfg_.run.out_dir);
  std::ofstream out(file, std::ios::app);
  out << header << "\n" << text << "\n\n" << std::flush;
  if (!out) throw std::runtime_error("cannot append to " + file.string());
}

}  // namespace sy
