// `switchyard data prepare` (text files -> token file) and `switchyard data import` (token shards
// -> token file): SPEC section 8.
#include <sys/stat.h>

#include <cstdio>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "app/commands.h"
#include "app/validators.h"
#include "src/core/error.h"
#include "src/data/import.h"
#include "src/data/tokens.h"

namespace sy::app {

namespace {

// "train: 123 tokens, 3.41 bytes/token, unigram entropy 5.12 nats/token (1.50 nats/byte)"
std::string split_line(const char* name, int64_t tokens, int64_t bytes, double entropy) {
  const double bpt = tokens > 0 ? static_cast<double>(bytes) / static_cast<double>(tokens) : 0.0;
  char buf[200];
  std::snprintf(buf, sizeof buf,
                "%s: %lld tokens from %lld bytes, %.3f bytes/token, unigram entropy %.4f "
                "nats/token (%.4f nats/byte)",
                name, static_cast<long long>(tokens), static_cast<long long>(bytes), bpt, entropy,
                bpt > 0 ? entropy / bpt : 0.0);
  return buf;
}

// An input given twice (also as another path to the same file) goes in twice, as asked: said,
// since it is more often a slip of the shell (a glob and a name) than a wish to upsample. One
// stat per input (a glob may name thousands).
void note_repeated_inputs(const std::vector<std::string>& paths, const char* what) {
  std::map<std::pair<dev_t, ino_t>, const std::string*> first;
  for (const std::string& p : paths) {
    struct stat st {};
    if (::stat(p.c_str(), &st) != 0) continue;  // the command names what it cannot read
    const auto [it, fresh] = first.emplace(std::pair{st.st_dev, st.st_ino}, &p);
    if (!fresh)
      std::cerr << "note: " << what << " '" << p << "' is the same file as '" << *it->second
                << "', given before: its tokens go in once for each time it is given\n";
  }
}

void add_prepare(CLI::App& data, std::vector<Command>& out) {
  auto opt = std::make_shared<PrepareOptions>();
  auto* prepare = data.add_subcommand(
      "prepare",
      "Turn text files into a token file (HDF5, SPEC section 8): byte tokens, a SentencePiece "
      "BPE/unigram tokenizer trained on the train parts, or your own SentencePiece model "
      "(--tokenizer-model); a SentencePiece model is stored in the file");
  prepare
      ->add_option("-i,--input", opt->inputs,
                   "Text files, concatenated in order (nothing added between them)")
      ->required();
  prepare->add_option("-o,--output", opt->output, "Token file to write (.h5)")->required();
  prepare
      ->add_option("--val-fraction", opt->val_fraction,
                   "Fraction of each input (its end) held out for validation (above 0: `train` "
                   "needs a validation split)")
      // Shown as (0, 0.9]: 0 passes here only to be refused with its reason (no /val to train).
      ->check(number_in(0.0, 0.9, "(0, 0.9]"))
      ->capture_default_str();
  prepare
      ->add_option("--tokenizer", opt->tokenizer,
                   "bytes (token = byte, vocabulary 256), or bpe | unigram: train a lossless "
                   "SentencePiece model of --vocab-size pieces (the token file carries it)")
      ->check(CLI::IsMember({"bytes", "bpe", "unigram"}))
      ->default_str("bytes");
  prepare->add_option("--tokenizer-model", opt->tokenizer_model,
                      "Encode with this SentencePiece model instead (a .model file: spm_train's "
                      "output, a Llama tokenizer.model); vocab_size = its pieces; without "
                      "--tokenizer, --vocab-size, --train-sentences (nothing is trained). Text it "
                      "would not give back exactly is refused (spm_train "
                      "--normalization_rule_name=identity --remove_extra_whitespaces=false "
                      "--byte_fallback=true encodes any UTF-8 text)");
  prepare
      ->add_option(
          "--vocab-size", opt->vocab_size,
          "Pieces of the SentencePiece vocabulary, including its 3 control and 256 byte pieces: "
          "required with bpe/unigram, at least 260 (set model.vocab_size to at least this)")
      ->check(signed_64());
  prepare
      ->add_option("--train-sentences", opt->train_sentences,
                   "bpe/unigram: the lines SentencePiece trains on at most; with more, a random "
                   "sample of this many (fixed seed), which bounds its memory on a large corpus "
                   "(0: every line; otherwise more than 100, SentencePiece's least)")
      ->check(non_negative_number())
      ->check(signed_64())
      ->default_str(std::to_string(kDefaultTrainSentences));
  out.push_back(
      {prepare, [opt] {
         prepare_for_token_file_writes();
         note_repeated_inputs(opt->inputs, "--input");
         opt->on_progress = [](const std::string& line) {
           std::cout << line << "\n" << std::flush;
         };
         const PrepareReport r = prepare_token_file(*opt);
         std::cout << "wrote " << opt->output << ": tokenizer " << r.tokenizer << ", vocab_size "
                   << r.vocab_size << ", " << opt->inputs.size() << " input file(s)\n"
                   << split_line("train", r.train_tokens, r.train_bytes, r.train_unigram_nats)
                   << "\n"
                   << split_line("val  ", r.val_tokens, r.val_bytes, r.val_unigram_nats)
                   << "\n(a trained model's val_loss must get below the val unigram "
                      "entropy; divide by ln 2 * bytes/token for bits per byte)\n";
         return static_cast<int>(kExitOk);
       }});
}

void add_import(CLI::App& data, std::vector<Command>& out) {
  auto opt = std::make_shared<ImportOptions>();
  auto* import = data.add_subcommand(
      "import",
      "Turn token shards into a token file without re-tokenizing: llm.c .bin shards (256-int32 "
      "header, magic 20240520 uint16 or 20240801 uint32) or bare uint16 files (nanoGPT's "
      "train.bin/val.bin). Shards whose file name has the word 'val' or 'validation' in any case "
      "(delimited by _ - . "
      "or the name's start or end: fineweb_val_000000.bin, val.bin, VAL.bin; not interval.bin) "
      "become /val; with "
      "none, the last --val-fraction of each shard does. Both splits must be non-empty");
  import->add_option("shards", opt->shards, "Token shards, in order")->required();
  // A name checked as a name: CLI11's CheckedTransformer also took the enum's numbers ("--format
  // 0" was llmc), showed "{llmc->0,raw-uint16->1} OR {0,1}" in --help and refused a typo with
  // "Check foo value in ... FAILED".
  auto format = std::make_shared<std::string>();
  import->add_option("--format", *format, "llmc | raw-uint16")
      ->transform(CLI::IsMember({"llmc", "raw-uint16"}, CLI::ignore_case))
      ->required();
  import->add_option("-o,--output", opt->output, "Token file to write (.h5)")->required();
  import
      ->add_option("--vocab-size", opt->vocab_size,
                   "The tokenizer's vocabulary (e.g. 50257 for GPT-2); every id must be below "
                   "it. 0 (the default): the largest id + 1")
      ->capture_default_str()
      ->check(signed_64());
  import
      ->add_option("--val-fraction", opt->val_fraction,
                   "With no shard named as a val shard (above): the fraction of each shard (its "
                   "end) held out")
      ->check(number_in(0.0, 0.9, "[0, 0.9]"))
      ->capture_default_str();
  out.push_back({import, [opt, format] {
                   // As a transform, IsMember puts the member's own spelling in its place
                   // (as a check it left "LLMC" as typed).
                   opt->format = *format == "llmc" ? ShardFormat::kLlmc : ShardFormat::kRawUint16;
                   prepare_for_token_file_writes();
                   note_repeated_inputs(opt->shards, "shard");
                   opt->on_progress = [](const std::string& line) {
                     std::cout << line << "\n" << std::flush;
                   };
                   const ImportReport r = import_token_shards(*opt);
                   std::cout << "wrote " << opt->output << ": tokenizer imported, vocab_size "
                             << r.vocab_size << (opt->vocab_size > 0 ? "" : " (largest id + 1)")
                             << ", " << r.train_tokens << " train / " << r.val_tokens
                             << " val tokens from " << opt->shards.size() << " shard(s)\n";
                   if (r.val_shards.empty()) {
                     std::cout << "val: the last " << opt->val_fraction
                               << " of each shard (no shard named *val*)\n";
                   } else {
                     for (const auto& s : r.val_shards) std::cout << "val: " << s << "\n";
                   }
                   return static_cast<int>(kExitOk);
                 }});
}

}  // namespace

void add_data_commands(CLI::App& root, std::vector<Command>& out) {
  auto* data = root.add_subcommand("data", "Token-file tools");
  data->require_subcommand(1);
  add_prepare(*data, out);
  add_import(*data, out);
}

}  // namespace sy::app
