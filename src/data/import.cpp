#include "src/data/import.h"

#include <algorithm>
#include <bit>
#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <span>

#include "src/core/durable_file.h"
#include "src/core/error.h"
#include "src/core/number_text.h"
#include "src/core/paths.h"
#include "src/core/progress.h"
#include "src/data/tokens.h"

namespace sy {

namespace {

namespace fs = std::filesystem;
static_assert(std::endian::native == std::endian::little, "shards are read as little-endian");

// llm.c's data_common.py: a 256-int32 header, then the tokens.
constexpr int64_t kLlmcHeaderInts = 256;
constexpr int64_t kLlmcHeaderBytes = kLlmcHeaderInts * 4;
constexpr int32_t kLlmcMagicGpt2 = 20240520;    // version 1, uint16 tokens
constexpr int32_t kLlmcMagicLlama3 = 20240801;  // version 7, uint32 tokens

constexpr int64_t kBlockTokens = int64_t{1} << 20;

struct Shard {
  std::string path;
  int64_t data_offset = 0;  // bytes before the first token
  int64_t tokens = 0;
  int width = 2;  // bytes per token
  bool val = false;
};

// The tokens of shard `s` that go to /val (its last ones): a val shard's all, a train shard's
// none; with no shard named so (`named` false), the last `fraction` of every shard.
int64_t val_tokens_of(const Shard& s, bool named, double fraction) {
  if (named) return s.val ? s.tokens : 0;
  return static_cast<int64_t>(std::floor(static_cast<double>(s.tokens) * fraction));
}

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw UsageError("shard '" + path + "': " + what);
}

std::ifstream open_shard(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) fail(path, "not found");
  if (!fs::is_regular_file(path, ec)) fail(path, "not a regular file");
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(path, "cannot be read");
  return in;
}

}  // namespace

bool shard_named_val(const std::string& path) {
  // In any case, and "validation" too (QA: VAL.bin and validation.bin were train shards).
  std::string name = fs::path(path).filename().string();
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  auto delimiter = [&](size_t i) {
    return i == std::string::npos || i >= name.size() || name[i] == '_' || name[i] == '-' ||
           name[i] == '.';
  };
  for (const std::string word : {"val", "validation"})
    for (size_t at = name.find(word); at != std::string::npos; at = name.find(word, at + 1))
      if ((at == 0 || delimiter(at - 1)) && delimiter(at + word.size())) return true;
  return false;
}

namespace {

Shard inspect(const std::string& path, ShardFormat format) {
  std::ifstream in = open_shard(path);
  std::error_code ec;
  const auto size = static_cast<int64_t>(fs::file_size(path, ec));
  if (ec) fail(path, "cannot be read: " + ec.message());
  Shard s;
  s.path = path;
  s.val = shard_named_val(path);
  if (format == ShardFormat::kRawUint16) {
    if (size == 0) fail(path, "empty (no tokens)");
    if (size % 2 != 0)
      fail(path, "truncated: " + std::to_string(size) +
                     " bytes is not a whole number of uint16 tokens (a lone byte at offset " +
                     std::to_string(size - 1) + ")");
    // An llm.c shard's header read as tokens would be 512 junk ids (and its magic the largest id,
    // the vocabulary); bare tokens that start with a magic and its version are not plausible.
    int32_t head[2] = {0, 0};
    if (size >= 8 && in.read(reinterpret_cast<char*>(head), sizeof head) &&
        ((head[0] == kLlmcMagicGpt2 && head[1] == 1) ||
         (head[0] == kLlmcMagicLlama3 && head[1] == 7)))
      fail(path, "offset 0: magic " + std::to_string(head[0]) + ", version " +
                     std::to_string(head[1]) +
                     ": an llm.c shard, whose 1024-byte header would be "
                     "imported as tokens; use --format llmc");
    s.tokens = size / 2;
    return s;
  }
  if (size < kLlmcHeaderBytes)
    fail(path, "truncated: the file ends at offset " + std::to_string(size) +
                   ", inside the 1024-byte llm.c header");
  int32_t header[kLlmcHeaderInts];
  if (!in.read(reinterpret_cast<char*>(header), kLlmcHeaderBytes)) fail(path, "cannot be read");
  const int32_t magic = header[0], version = header[1];
  if (magic == kLlmcMagicGpt2 && version == 1) {
    s.width = 2;
  } else if (magic == kLlmcMagicLlama3 && version == 7) {
    s.width = 4;
  } else if (magic != kLlmcMagicGpt2 && magic != kLlmcMagicLlama3) {
    fail(path, "offset 0: magic " + std::to_string(magic) + ", expected " +
                   std::to_string(kLlmcMagicGpt2) + " (llm.c GPT-2 shard) or " +
                   std::to_string(kLlmcMagicLlama3) + " (llm.c LLaMA-3 shard); is it an llm.c " +
                   ".bin shard? (bare uint16 tokens: --format raw-uint16)");
  } else {
    fail(path, "offset 4: version " + std::to_string(version) + " with magic " +
                   std::to_string(magic) + ", expected " + (magic == kLlmcMagicGpt2 ? "1" : "7"));
  }
  s.data_offset = kLlmcHeaderBytes;
  s.tokens = header[2];
  if (s.tokens <= 0)
    fail(path, "offset 8: the header says " + std::to_string(s.tokens) + " tokens (" +
                   (s.tokens == 0 ? "an empty shard" : "a negative token count") + ")");
  const int64_t expected = kLlmcHeaderBytes + s.tokens * s.width;
  if (size < expected)
    fail(path, "truncated: the header (offset 8) says " + std::to_string(s.tokens) + " tokens, " +
                   std::to_string(expected) + " bytes in all, but the file ends at offset " +
                   std::to_string(size) + " (in token " +
                   std::to_string((size - kLlmcHeaderBytes) / s.width) + ")");
  if (size > expected)
    fail(path, "offset " + std::to_string(expected) + ": " + std::to_string(size - expected) +
                   (size - expected == 1 ? " byte" : " bytes") + " after the " +
                   std::to_string(s.tokens) + " tokens the header (offset 8) announces");
  return s;
}

// Calls fn(first token index, ids) for blocks of the shard's tokens, in order.
void for_each_block(const Shard& s,
                    const std::function<void(int64_t, std::span<const uint32_t>)>& fn) {
  std::ifstream in = open_shard(s.path);
  in.seekg(s.data_offset);
  std::vector<unsigned char> raw;
  std::vector<uint32_t> ids;
  for (int64_t first = 0; first < s.tokens; first += kBlockTokens) {
    const int64_t n = std::min(kBlockTokens, s.tokens - first);
    raw.resize(static_cast<size_t>(n * s.width));
    if (!in.read(reinterpret_cast<char*>(raw.data()), static_cast<std::streamsize>(raw.size())))
      fail(s.path, "cannot be read at offset " + std::to_string(s.data_offset + first * s.width));
    ids.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      if (s.width == 2) {
        uint16_t v;
        std::memcpy(&v, raw.data() + i * 2, 2);
        ids[static_cast<size_t>(i)] = v;
      } else {
        std::memcpy(&ids[static_cast<size_t>(i)], raw.data() + i * 4, 4);
      }
    }
    fn(first, ids);
  }
}

}  // namespace

ImportReport import_token_shards(const ImportOptions& opt) {
  if (opt.shards.empty()) throw UsageError("data import: no shards given");
  if (!(opt.val_fraction >= 0.0 && opt.val_fraction < 1.0))
    throw UsageError("data import: --val-fraction " + number_text(opt.val_fraction) +
                     " must be in [0, 1)");
  if (opt.vocab_size < 0 || opt.vocab_size == 1 || opt.vocab_size > (int64_t{1} << 32))
    throw UsageError("data import: --vocab-size " + std::to_string(opt.vocab_size) +
                     " must be 0 (the largest id + 1) or in [2, 2^32]");

  files::check_output_file(opt.output);  // before reading the shards, which can take minutes
  for (const auto& path : opt.shards)
    refuse_output_as_input(opt.output, path, "data import", "the token file");

  // Pass 1: every header and every id, before anything is written.
  std::vector<Shard> shards;
  for (const auto& path : opt.shards) shards.push_back(inspect(path, opt.format));
  const bool named =
      std::any_of(shards.begin(), shards.end(), [](const Shard& s) { return s.val; });
  // `train` needs both splits: an empty one is refused here, not after minutes of writing.
  int64_t total_tokens = 0, val_tokens = 0;
  for (const Shard& s : shards) {
    total_tokens += s.tokens;
    val_tokens += val_tokens_of(s, named, opt.val_fraction);
  }
  if (val_tokens == total_tokens)  // only when every shard is a val shard (fraction < 1)
    throw UsageError(
        "data import: every shard is named as a validation shard (the word 'val' or 'validation' "
        "in "
        "its name), so /train would be empty; give the train shards too");
  if (val_tokens == 0)  // only with no val shard (shards are not empty)
    throw UsageError(
        "data import: no shard is named as a validation shard (the word 'val' or 'validation' in "
        "its name) and --val-fraction " +
        number_text(opt.val_fraction) +
        " holds out no token, so /val would be empty; raise --val-fraction or "
        "give a *_val_* shard");
  int64_t max_id = -1;
  // Both passes read every token: a line with the share done and an ETA inside a long shard.
  ProgressEta eta(2 * total_tokens, opt.progress_every_s);
  int64_t read = 0;
  auto count = [&](size_t n) {
    read += static_cast<int64_t>(n);
    if (auto line = eta.update(read, "tokens"))
      if (opt.on_progress) opt.on_progress("importing: " + *line);
  };
  auto progress = [&](const char* what, size_t i, const Shard& s) {
    if (opt.on_progress)
      opt.on_progress(std::string(what) + " " + std::to_string(i + 1) + "/" +
                      std::to_string(shards.size()) + ": " + s.path + " (" +
                      std::to_string(s.tokens) + " tokens)");
  };
  for (size_t k = 0; k < shards.size(); ++k) {
    const Shard& s = shards[k];
    for_each_block(s, [&](int64_t first, std::span<const uint32_t> ids) {
      for (size_t i = 0; i < ids.size(); ++i) {
        const int64_t id = ids[i];
        if (opt.vocab_size > 0 && id >= opt.vocab_size) {
          const int64_t t = first + static_cast<int64_t>(i);
          fail(s.path, "offset " + std::to_string(s.data_offset + t * s.width) + " (token " +
                           std::to_string(t) + "): id " + std::to_string(id) +
                           " is not below --vocab-size " + std::to_string(opt.vocab_size));
        }
        max_id = std::max(max_id, id);
      }
      count(ids.size());
    });
    progress("checked", k, s);
  }
  ImportReport r;
  r.vocab_size = opt.vocab_size > 0 ? opt.vocab_size : std::max<int64_t>(max_id + 1, 2);

  // Pass 2: write.
  TokenFileWriter writer(opt.output, r.vocab_size, token_file_bytes(r.vocab_size, total_tokens, 0));
  for (size_t k = 0; k < shards.size(); ++k) {
    const Shard& s = shards[k];
    if (named && s.val) r.val_shards.push_back(s.path);
    // The first `train_end` tokens go to /train.
    const int64_t train_end = s.tokens - val_tokens_of(s, named, opt.val_fraction);
    for_each_block(s, [&](int64_t first, std::span<const uint32_t> ids) {
      const auto n = static_cast<int64_t>(ids.size());
      const int64_t cut = std::clamp<int64_t>(train_end - first, 0, n);
      writer.append_train(ids.first(static_cast<size_t>(cut)));
      writer.append_val(ids.subspan(static_cast<size_t>(cut)));
      r.train_tokens += cut;
      r.val_tokens += n - cut;
      count(ids.size());
    });
    progress("wrote", k, s);
  }
  writer.commit(Tokenizer::imported(r.vocab_size));
  return r;
}

}  // namespace sy
