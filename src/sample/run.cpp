#include "src/sample/run.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <ostream>
#include <stdexcept>
#include <string>

#include "src/ckpt/checkpoint.h"
#include "src/core/error.h"
#include "src/core/paths.h"
#include "src/core/printable.h"
#include "src/core/progress.h"
#include "src/data/tokenizer.h"
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

constexpr const char* kNoPrompt =
    "no prompt: give --prompt TEXT, --prompt-file FILE or --prompt-ids IDS (token ids, e.g. "
    "\"3 17 4\")";
constexpr const char* kUseIds = "give the prompt as token ids, --prompt-ids IDS (e.g. \"3 17 4\")";
constexpr const char* kOnePrompt = "give one of --prompt, --prompt-file, --prompt-ids, not more";

int prompts_given(const SampleRequest& req) {
  return static_cast<int>(req.prompt.has_value()) + static_cast<int>(!req.prompt_file.empty()) +
         static_cast<int>(req.prompt_id_list.has_value());
}

// No prompt given: the options that can give one for this checkpoint's tokenizer, read alone
// (the whole checkpoint's verification, which says what is wrong with a bad one, takes longer).
// A checkpoint whose tokenizer cannot be read gets the message for any tokenizer.
UsageError no_prompt(MPI_Comm comm, const std::string& checkpoint) {
  std::optional<Tokenizer> tok;
  try {
    ckpt::StoredTokenizer stored = ckpt::read_checkpoint_tokenizer(comm, checkpoint);
    tok = Tokenizer::from_stored(stored.name, std::move(stored.model), 0, checkpoint);
  } catch (const std::exception&) {
  }
  if (!tok || tok->has_text()) return UsageError(kNoPrompt);
  return UsageError("no prompt: the checkpoint's tokenizer '" + tok->name() +
                    "' has no text (ids imported without a tokenizer), so there is no --prompt "
                    "TEXT or --prompt-file FILE for it: " +
                    kUseIds);
}

// The ids of a --prompt-ids list (parse_prompt_ids), each below *vocab_size (`what` says where
// that bound comes from); with none (before the checkpoint is read) only the syntax is checked,
// and ids past int32 are not kept.
std::vector<int32_t> ids_of_list(std::string_view list, std::optional<int64_t> vocab_size,
                                 const std::string& what = "") {
  const auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  const auto entry_error = [](size_t position, std::string_view entry, const std::string& why) {
    return UsageError("--prompt-ids: entry " + std::to_string(position) + ", '" + shortened(entry) +
                      "', " + why);
  };
  std::vector<int32_t> ids;
  size_t entries = 0;
  bool after_comma = false;  // the last separator held a comma: an entry must follow
  for (size_t i = 0;;) {
    while (i < list.size() && is_space(list[i])) ++i;
    if (i == list.size() && !after_comma) break;
    if (i == list.size() || list[i] == ',')
      throw UsageError("--prompt-ids: entry " + std::to_string(entries + 1) +
                       " is empty (two commas, or a comma at an end)");
    const size_t start = i;
    while (i < list.size() && !is_space(list[i]) && list[i] != ',') ++i;
    const std::string_view entry = list.substr(start, i - start);
    ++entries;
    const bool digits =
        std::all_of(entry.begin(), entry.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!digits)
      throw entry_error(entries, entry,
                        "is not a token id: ids are whole numbers (0, 1, 2, ...) separated by "
                        "spaces or commas");
    int64_t id = 0;
    const bool too_large = std::from_chars(entry.data(), entry.data() + entry.size(), id).ec ==
                           std::errc::result_out_of_range;
    if (vocab_size && (too_large || id >= *vocab_size))
      throw entry_error(entries, entry,
                        "is not a token id of this model: ids are in [0, " +
                            std::to_string(*vocab_size) + ") (" + what + ")");
    if (!too_large && id <= std::numeric_limits<int32_t>::max())
      ids.push_back(static_cast<int32_t>(id));
    while (i < list.size() && is_space(list[i])) ++i;
    after_comma = i < list.size() && list[i] == ',';
    if (after_comma) ++i;
  }
  if (entries == 0)
    throw UsageError(
        "--prompt-ids is empty: the model needs at least one token id to continue (ids separated "
        "by spaces or commas, e.g. \"3 17 4\")");
  return ids;
}

}  // namespace

std::vector<int32_t> parse_prompt_ids(std::string_view list, int64_t model_vocab,
                                      int64_t tokenizer_vocab) {
  // A padded model's ids past the tokenizer's are none it was trained on, and print as nothing.
  if (tokenizer_vocab > 0 && tokenizer_vocab < model_vocab)
    return ids_of_list(list, tokenizer_vocab,
                       "the ids of its tokenizer; model.vocab_size " + std::to_string(model_vocab) +
                           " pads past them");
  return ids_of_list(list, model_vocab, "its model.vocab_size");
}

std::string prompt_text(const SampleRequest& req) {
  if (prompts_given(req) > 1) throw UsageError(kOnePrompt);
  if (req.prompt) return *req.prompt;
  if (req.prompt_file.empty()) throw UsageError(kNoPrompt);
  // "-" is standard input, as for most tools (it was "'-' not found"; QA).
  return read_text_file(req.prompt_file == "-" ? "/dev/stdin" : req.prompt_file, "--prompt-file",
                        "a text file", TextSource::kFileOrStream);
}

std::vector<int32_t> prompt_ids(const SampleRequest& req, const std::string& text,
                                const Tokenizer& tok) {
  const std::string what = req.prompt ? "--prompt" : "--prompt-file '" + req.prompt_file + "'";
  if (text.empty())
    throw UsageError(what + " is empty: the model needs at least one token to continue");
  if (!tok.has_text())
    throw UsageError(what + ": the checkpoint's tokenizer '" + tok.name() +
                     "' has no text (ids imported without a tokenizer), so no text can be turned "
                     "into its ids: " +
                     kUseIds);
  // In blocks, as data prepare encodes, smaller: SentencePiece's memory grows with the text it
  // encodes at once, ~150 bytes a byte (a 5.6 MB prompt file took 784 MB; QA).
  constexpr size_t kPromptBlockBytes = size_t{256} << 10;
  std::vector<int32_t> ids;
  try {
    encode_in_blocks(tok, text, 0, false, kPromptBlockBytes,
                     [&](const std::vector<int32_t>& block, size_t) {
                       ids.insert(ids.end(), block.begin(), block.end());
                     });
  } catch (const UsageError& e) {
    throw UsageError(what + ": " + e.what());
  }
  return ids;
}

void run_sample(MPI_Comm comm, const SampleRequest& req, std::ostream& text, std::ostream& info) {
  check_device(req.device);
  check_sample_options(req.options);
  // The prompt is read (an id list's syntax checked) before the (longer) checkpoint verification.
  if (prompts_given(req) == 0) throw no_prompt(comm, req.checkpoint);
  if (prompts_given(req) > 1) throw UsageError(kOnePrompt);
  const std::string prompt_str = req.prompt_id_list ? std::string() : prompt_text(req);
  if (req.prompt_id_list) ids_of_list(*req.prompt_id_list, std::nullopt);
  ckpt::ReadProgress progress;
  progress.say = [&](const std::string& line) { info << line << "\n" << std::flush; };
  SamplingModel m = load_sampling_model(comm, req.checkpoint, progress);
  int rank = 0;
  MPI_CHECK(MPI_Comm_rank(comm, &rank));
  const std::vector<int32_t> prompt =
      req.prompt_id_list
          ? parse_prompt_ids(*req.prompt_id_list, m.cfg.model.vocab_size, m.tokenizer.vocab_size())
          : prompt_ids(req, prompt_str, m.tokenizer);
  if (rank != 0) return;

  const Tokenizer& tok = m.tokenizer;
  info << "checkpoint " << req.checkpoint << " (step " << m.step << "), tokenizer " << tok.name()
       << ", prompt " << prompt.size() << (prompt.size() == 1 ? " token" : " tokens")
       << "; routing: the training routing without "
       << "capacity dropping; context: the last " << m.cfg.model.seq_len << " tokens; device "
       << req.device << "\n";
  for (const std::string& n : m.notes) info << "warning: " << n << "\n";
  info << std::flush;
  const std::unique_ptr<TokenDecoder> dec = make_decoder(req.device, m.cfg, std::move(m.params));
  // The text: decoding and printing, timed apart from the model (the tokens' own seconds).
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  Clock::duration text_time{};
  // A tokenizer without text decodes to the ids, space separated: the evaluation sample's form.
  TextStream stream([&](std::span<const int32_t> ids) { return tok.decode(ids); }, prompt);
  // Every write checked where it is made, while errno is the write's: checked later, it was
  // another call's (clang's libomp, starting at generate()'s first parallel region, left ENOENT
  // where /dev/full had said ENOSPC).
  const auto put = [&](const std::string& s) {
    errno = 0;
    text << s << std::flush;
    if (!text) throw_write_failed();  // a full disk: stop now, not after every token
  };
  put(stream.context_text());
  // Past the window a prompt is read in blocks: a long prompt file says how far it got.
  ProgressEta reading(static_cast<int64_t>(prompt.size()), 5.0);
  const GenerateResult r = generate(
      *dec, prompt, req.options,
      PickableIds(static_cast<int>(tok.vocab_size()), tok.never_encoded_ids()),
      [&](int32_t id) {
        const auto t = Clock::now();
        if (const std::string piece = stream.push(id); !piece.empty()) put(piece);
        text_time += Clock::now() - t;
      },
      [&](int64_t fed, int64_t) {
        if (auto line = reading.update(fed, "tokens"))
          info << "reading the prompt: " << *line << "\n" << std::flush;
      });
  put(stream.flush() + "\n");
  const auto seconds = [](Clock::duration d) { return std::chrono::duration<double>(d).count(); };
  const double model = r.prefill_s + r.tokens_s;
  char buf[200];
  std::snprintf(buf, sizeof buf,
                "generated %lld token%s in %.2f s (model %.2f s, reading the prompt %.1f ms of it; "
                "text %.2f s)",
                static_cast<long long>(r.tokens), r.tokens == 1 ? "" : "s",
                seconds(Clock::now() - start), model, r.prefill_s * 1e3, seconds(text_time));
  info << buf << " | tokens/s at 64 tokens: " << rate_text(r.tokens_per_s(64))
       << ", at 1024 tokens: " << rate_text(r.tokens_per_s(1024)) << "\n";
}

}  // namespace sy
