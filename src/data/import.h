// `switchyard data import`: token shards people already have become a token file (SPEC section 8,
// tokenizer "imported") without re-tokenizing.
//   llmc        llm.c's .bin shards: a header of 256 little-endian int32 (magic, version, token
//               count, zeros), then the tokens: magic 20240520 version 1 = uint16 (GPT-2),
//               magic 20240801 version 7 = uint32 (LLaMA-3)
//   raw-uint16  nanoGPT's train.bin / val.bin: bare little-endian uint16 tokens, no header
// A shard whose file name has the word "val" or "validation", in any case (delimited by '_', '-',
// '.' or the name's start or end: llm.c's *_val_*.bin, nanoGPT's val.bin; not interval.bin) goes to
// /val, every other one to /train; when no shard is named so, the last `val_fraction` of each
// shard's tokens is the validation split (as `data prepare` does with texts). Every shard is
// checked completely before anything is written.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace sy {

enum class ShardFormat { kLlmc, kRawUint16 };

struct ImportOptions {
  ShardFormat format = ShardFormat::kLlmc;
  std::vector<std::string> shards;
  std::string output;
  int64_t vocab_size = 0;  // 0: the largest id + 1
  double val_fraction = 0.1;
  // Called after each shard of each pass ("checked 3/100 shards ...", "wrote 3/100 ..."), and
  // inside a shard at most every progress_every_s seconds with the share of both passes done and
  // an ETA ("importing: 34% (...tokens), ETA 00:01:10"): large imports take minutes.
  std::function<void(const std::string&)> on_progress;
  double progress_every_s = 5.0;
};

struct ImportReport {
  int64_t train_tokens = 0;
  int64_t val_tokens = 0;
  int64_t vocab_size = 0;
  std::vector<std::string> val_shards;  // the shards /val came from (empty: the val_fraction rule)
};

// Throws UsageError naming the shard and the byte offset for: a missing or unreadable shard, a
// wrong magic or version, a shard shorter than its header says (or an odd byte in a raw-uint16
// one), an empty shard, a token >= vocab_size, an output that is one of the shards, a /train or
// /val that would be empty. Writes "<output>.tmp" and renames it.
ImportReport import_token_shards(const ImportOptions& opt);

// Whether a shard goes to /val by its file name (the rule above).
bool shard_named_val(const std::string& path);

}  // namespace sy
