#include "src/sample/run.h"

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <ostream>
#include <stdexcept>
#include <string>

#include "src/core/error.h"
#include "src/core/paths.h"
#include "src/core/progress.h"
#include "src/sample/decoder.h"
#include "src/sample/load.h"

#if defined(SWITCHYARD_HAVE_CUDA)
#include "src/sample/cuda_decoder.h"
#endif

namespace sy {

namespace {

// --device: cpu, or cuda where this build has the CUDA backend and a GPU is usable. Checked first,
// before the (longer) checkpoint read.
void check_device(const std::string& device) {
  if (device == "cpu") return;
  if (device != "cuda") throw UsageError("--device '" + device + "' is not one of cpu, cuda");
#if defined(SWITCHYARD_HAVE_CUDA)
  CudaDecoder::require_gpu();
#else
  throw UsageError(
      "--device cuda: this switchyard was built without the CUDA backend (configure with "
      "-DSWITCHYARD_CUDA=ON); --device cpu samples any checkpoint, GPU-trained ones included");
#endif
}

std::unique_ptr<TokenDecoder> make_decoder(const std::string& device, const Config& cfg,
                                           std::vector<float> params) {
#if defined(SWITCHYARD_HAVE_CUDA)
  if (device == "cuda") return std::make_unique<CudaDecoder>(cfg, params);
#else
  (void)device;
#endif
  return std::make_unique<Decoder>(cfg, std::move(params));
}

std::string rate_text(double tokens_per_s) {
  if (std::isnan(tokens_per_s)) return "not reached";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", tokens_per_s);
  return buf;
}

// The text stream failed (a full disk, /dev/full): exit 1 naming it, since generating on into a
// stream that takes nothing would end in exit 0 with the text cut short.
[[noreturn]] void throw_write_failed() {
  const int err = errno;
  throw std::runtime_error(std::string("sample: writing the generated text failed") +
                           (err != 0 ? std::string(": ") + std::strerror(err) : std::string()));
}

}  // namespace

std::string prompt_text(const SampleRequest& req) {
  if (req.prompt && !req.prompt_file.empty())
    throw UsageError("give either --prompt or --prompt-file, not both");
  if (req.prompt) return *req.prompt;
  if (req.prompt_file.empty())
    throw UsageError("no prompt: give --prompt TEXT or --prompt-file FILE");
  const std::string what = "--prompt-file '" + req.prompt_file + "'";
  std::error_code ec;
  if (!std::filesystem::exists(req.prompt_file, ec)) throw UsageError(what + " not found");
  if (std::filesystem::is_directory(req.prompt_file, ec))
    throw UsageError(what + " is a directory, expected a text file");
  if (const std::string why = unreadable_reason(req.prompt_file); !why.empty())
    throw UsageError(what + " " + why);
  std::ifstream in(req.prompt_file, std::ios::binary);
  if (!in) throw UsageError(what + " cannot be read");
  std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (in.bad()) throw UsageError(what + " cannot be read");
  return text;
}

std::vector<int32_t> prompt_ids(const SampleRequest& req, const std::string& text,
                                const Tokenizer& tok) {
  const std::string what = req.prompt ? "--prompt" : "--prompt-file '" + req.prompt_file + "'";
  if (text.empty())
    throw UsageError(what + " is empty: the model needs at least one token to continue");
  std::vector<int32_t> ids;
  try {
    ids = tok.encode(text);
  } catch (const UsageError& e) {
    throw UsageError(what + ": " + e.what());
  }
  return ids;
}

void run_sample(MPI_Comm comm, const SampleRequest& req, std::ostream& text, std::ostream& info) {
  check_device(req.device);
  check_sample_options(req.options);
  // The prompt is read before the (longer) checkpoint verification.
  const std::string prompt_str = prompt_text(req);
  ckpt::ReadProgress progress;
  progress.say = [&](const std::string& line) { info << line << "\n" << std::flush; };
  SamplingModel m = load_sampling_model(comm, req.checkpoint, progress);
  int rank = 0;
  MPI_CHECK(MPI_Comm_rank(comm, &rank));
  const std::vector<int32_t> prompt = prompt_ids(req, prompt_str, m.tokenizer);
  if (rank != 0) return;

  const Tokenizer& tok = m.tokenizer;
  info << "checkpoint " << req.checkpoint << " (step " << m.step << "), tokenizer " << tok.name()
       << ", prompt " << prompt.size() << " tokens; routing: the training routing without "
       << "capacity dropping; context: the last " << m.cfg.model.seq_len << " tokens; device "
       << req.device << "\n";
  for (const std::string& n : m.notes) info << "warning: " << n << "\n";
  info << std::flush;
  const std::unique_ptr<TokenDecoder> dec = make_decoder(req.device, m.cfg, std::move(m.params));
  // The text: decoding and printing, timed apart from the model (the tokens' own seconds).
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  Clock::duration text_time{};
  TextStream stream([&](std::span<const int32_t> ids) { return tok.decode(ids); }, prompt);
  text << stream.context_text() << std::flush;
  // Past the window a prompt is read in blocks: a long prompt file says how far it got.
  ProgressEta reading(static_cast<int64_t>(prompt.size()), 5.0);
  const GenerateResult r = generate(
      *dec, prompt, req.options,
      PickableIds(static_cast<int>(tok.vocab_size()), tok.never_encoded_ids()),
      [&](int32_t id) {
        const auto t = Clock::now();
        const std::string piece = stream.push(id);
        if (!piece.empty()) text << piece << std::flush;
        if (!text) throw_write_failed();  // a full disk: stop now, not after every token
        text_time += Clock::now() - t;
      },
      [&](int64_t fed, int64_t) {
        if (auto line = reading.update(fed, "tokens"))
          info << "reading the prompt: " << *line << "\n" << std::flush;
      });
  text << stream.flush() << "\n" << std::flush;
  if (!text) throw_write_failed();
  const auto seconds = [](Clock::duration d) { return std::chrono::duration<double>(d).count(); };
  double model = r.prefill_s;
  for (double s : r.token_s) model += s;
  char buf[200];
  std::snprintf(buf, sizeof buf,
                "generated %zu tokens in %.2f s (model %.2f s, reading the prompt %.1f ms of it; "
                "text %.2f s)",
                r.tokens.size(), seconds(Clock::now() - start), model, r.prefill_s * 1e3,
                seconds(text_time));
  info << buf << " | tokens/s at 64 tokens: " << rate_text(r.tokens_per_s(64))
       << ", at 1024 tokens: " << rate_text(r.tokens_per_s(1024)) << "\n";
}

}  // namespace sy
