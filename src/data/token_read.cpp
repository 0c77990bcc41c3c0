// Reading token files (SPEC section 8): read_token_file (the splits in memory: tools and tests)
// and open_token_file (the splits left in the file, read window by window: the trainer). Both
// check the file the same way, so a bad one is a UsageError naming it before training starts.
#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cpu/philox.h"
#include "src/core/error.h"
#include "src/core/h5.h"
#include "src/core/h5_attr.h"
#include "src/core/paths.h"
#include "src/core/printable.h"
#include "src/core/suggest.h"
#include "src/data/tokenizer_h5.h"
#include "src/data/tokens.h"

namespace sy {

namespace {

// "/train[30] = 70000 is outside the vocabulary [0, 70000)": the scan's and the reader's words.
std::string outside_vocabulary(const std::string& ds_name, int64_t index, int64_t id,
                               int64_t vocab_size) {
  return ds_name + "[" + std::to_string(index) + "] = " + std::to_string(id) +
         " is outside the vocabulary [0, " + std::to_string(vocab_size) + ")";
}

}  // namespace

struct TokenSplitReader::Impl {
  std::string path, name;          // for messages: the file and "/train"
  std::shared_ptr<h5::File> file;  // shared by the splits of one file
  h5::Dataset ds;
  int64_t vocab_size = 0;
};

void TokenSplitReader::read(int64_t first, int64_t count, int32_t* out) const {
  SY_CHECK(impl_ && first >= 0 && count >= 0 && first + count <= size_,
           "tokens [" << first << ", " << first + count << ") of a split of " << size_);
  if (count == 0) return;
  h5::ErrorSilencer quiet;
  try {
    h5::Dataspace space{H5_CHECK(H5Dget_space(impl_->ds))};
    const auto start = static_cast<hsize_t>(first), n = static_cast<hsize_t>(count);
    H5_CHECK(H5Sselect_hyperslab(space, H5S_SELECT_SET, &start, nullptr, &n, nullptr));
    h5::Dataspace mem{H5_CHECK(H5Screate_simple(1, &n, nullptr))};
    H5_CHECK(H5Dread(impl_->ds, H5T_NATIVE_INT32, mem, space, H5P_DEFAULT, out));
  } catch (const std::exception& e) {
    throw std::runtime_error("token file '" + impl_->path + "': reading " + impl_->name + "[" +
                             std::to_string(first) + ", " + std::to_string(first + count) +
                             ") failed: " + e.what());
  }
  // Every id read is checked (T + 1 comparisons a window): an id past the vocabulary would index
  // past the embedding. A file too large to scan before training is checked this way alone.
  // Only the ranks that read the window find it: a rank's own failure (std::runtime_error, which
  // the trainer ends the whole job on at once, exit 1), not a UsageError, which it takes for one
  // every rank meets alike (the others would wait for the watchdog).
  for (int64_t i = 0; i < count; ++i)
    if (out[i] < 0 || out[i] >= impl_->vocab_size)
      throw std::runtime_error(
          "token file '" + impl_->path +
          "': " + outside_vocabulary(impl_->name, first + i, out[i], impl_->vocab_size));
}

namespace {

namespace fs = std::filesystem;

class Reader {
 public:
  explicit Reader(const std::string& path) : path_(path) {}

  [[noreturn]] void fail(const std::string& what) const {
    throw UsageError("token file '" + path_ + "': " + what);
  }

  // The file, opened after the checks a path gets before HDF5 sees it.
  h5::File open() const {
    std::error_code ec;
    if (path_.empty()) throw UsageError("token file: no path given (set data.path)");
    if (!fs::exists(path_, ec)) throw UsageError("token file '" + path_ + "' not found");
    if (fs::is_directory(path_, ec))
      throw UsageError("token file '" + path_ + "' is a directory, expected an HDF5 file");
    // A FIFO would block open() forever (and a device or socket is no token file either):
    // refuse anything but a regular file before HDF5 opens it.
    if (!fs::is_regular_file(path_, ec))
      throw UsageError("token file '" + path_ +
                       "' is not a regular file (a FIFO, device or socket?), expected an HDF5 "
                       "file");
    if (const std::string why = unreadable_reason(path_); !why.empty()) fail(why);
    if (H5Fis_hdf5(path_.c_str()) <= 0)
      fail("not an HDF5 file (make one with `switchyard data prepare`)");
    const hid_t file_id = H5Fopen(path_.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file_id < 0) fail(h5::file_open_problem());
    return h5::File{file_id};
  }

  // The root attributes and the tokenizer, checked against the model.
  TokenFileInfo info(hid_t file, int64_t model_vocab_size) const {
    TokenFileInfo out;
    try {
      require_root_attribute(file, "vocab_size");
      out.vocab_size = h5::read_attr_i64(file, "vocab_size");
      require_root_attribute(file, "tokenizer");
      out.tokenizer = h5::read_attr_string(file, "tokenizer");
    } catch (const h5::AttrError& e) {
      fail(std::string("root ") + e.what());
    }
    if (out.vocab_size < 2)
      fail("root attribute vocab_size = " + std::to_string(out.vocab_size) +
           ", expected at least 2");
    if (out.vocab_size > model_vocab_size)
      fail("vocab_size " + std::to_string(out.vocab_size) + " is larger than model.vocab_size " +
           std::to_string(model_vocab_size) + " (raise model.vocab_size to at least the file's)");
    // Empty is no tokenizer's name: a checkpoint of it read as one from before the attribute
    // (bytes: `sample` decoded another tool's ids as bytes, QA), where training took it for ids.
    if (out.tokenizer.empty())
      fail(
          "root attribute tokenizer is empty: SPEC 8 names 'bytes', 'sentencepiece' or "
          "'imported' (ids without text); another tool's own name is trained on as ids");
    // Another tool's name is trained on as ids without text (tokenizer.h); one of SPEC 8's names
    // in another case or one edit away ("SentencePiece", "byte") is a slip that would leave every
    // checkpoint without text. Two edits away is another tokenizer's name (ByT5, whose ids are not
    // bytes, is two from "bytes").
    std::string lower = out.tokenizer;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    for (const char* known : {kTokenizerBytes, kTokenizerSentencePiece, kTokenizerImported})
      if (out.tokenizer != known && edit_distance(lower, known) <= 1)
        fail("root attribute tokenizer is '" + printable(out.tokenizer) + "' (did you mean '" +
             known +
             "'?): SPEC 8 names 'bytes', 'sentencepiece' or 'imported'; any other name "
             "is trained on as ids without text, which `sample` cannot decode");
    // "bytes" decodes ids 0..255 only: a larger vocabulary holds ids no byte is.
    if (out.tokenizer == kTokenizerBytes && out.vocab_size > kByteVocab)
      fail("root attribute tokenizer is 'bytes' (ids 0-255) but vocab_size is " +
           std::to_string(out.vocab_size) +
           " (a file of another tokenizer's ids: name it, or 'imported' for ids alone)");
    // The model bytes travel with the tokens whatever the tokenizer's name (SPEC 8: a checkpoint
    // copies them where there are some), a file of another tool's included.
    try {
      out.tokenizer_model = read_tokenizer_model(file);
    } catch (const std::runtime_error& e) {
      fail(e.what());
    }
    if (out.tokenizer == kTokenizerSentencePiece) {
      const Tokenizer tok = Tokenizer::from_stored(out.tokenizer, out.tokenizer_model,
                                                   out.vocab_size, "token file '" + path_ + "'");
      if (tok.vocab_size() != out.vocab_size)
        fail("the SentencePiece model at /tokenizer/model has " + std::to_string(tok.vocab_size()) +
             " pieces, root attribute vocab_size says " + std::to_string(out.vocab_size));
    }
    return out;
  }

  // A split's dataset and length: a one-dimensional integer array of at least seq_len + 1 ids.
  std::pair<h5::Dataset, hsize_t> open_split(hid_t file, const char* name, int64_t seq_len) const {
    const std::string ds_name = std::string("/") + name;
    if (H5_CHECK(H5Lexists(file, name, H5P_DEFAULT)) <= 0)
      fail("missing dataset " + ds_name + " (expected /train and /val)");
    const hid_t ds_id = H5Dopen2(file, name, H5P_DEFAULT);
    if (ds_id < 0) fail(ds_name + " " + h5::dataset_open_problem(file, name));
    h5::Dataset ds{ds_id};
    h5::Dataspace space{H5_CHECK(H5Dget_space(ds))};
    const int rank = H5_CHECK(H5Sget_simple_extent_ndims(space));
    if (rank != 1)
      fail(ds_name + " has rank " + std::to_string(rank) +
           ", expected a one-dimensional array of token ids");
    h5::Datatype type{H5_CHECK(H5Dget_type(ds))};
    if (H5Tget_class(type) != H5T_INTEGER)
      fail(ds_name + " holds " + h5::class_name(H5Tget_class(type)) +
           " values, expected unsigned integer token ids");
    hsize_t n = 0;
    H5_CHECK(H5Sget_simple_extent_dims(space, &n, nullptr));
    if (static_cast<int64_t>(n) < seq_len + 1)
      fail(ds_name + " holds " + std::to_string(n) + " tokens, fewer than one sequence of " +
           "model.seq_len + 1 = " + std::to_string(seq_len + 1));
    return {std::move(ds), n};
  }

  // Every id of a split checked against vocab_size, in blocks through an int64 buffer (any
  // integer type converts exactly; HDF5 saturates a uint64 beyond int64, which the range check
  // then rejects); `keep` (optional) receives each checked block.
  void check_ids(hid_t ds, hsize_t n, const char* name, int64_t vocab_size,
                 const std::function<void(hsize_t, const int64_t*, hsize_t)>& keep) const {
    constexpr hsize_t kBlock = hsize_t{1} << 20;
    h5::Dataspace space{H5_CHECK(H5Dget_space(ds))};
    std::vector<int64_t> buf(std::min<hsize_t>(n, kBlock));
    for (hsize_t start = 0; start < n; start += kBlock) {
      const hsize_t count = std::min(kBlock, n - start);
      H5_CHECK(H5Sselect_hyperslab(space, H5S_SELECT_SET, &start, nullptr, &count, nullptr));
      h5::Dataspace mem{H5_CHECK(H5Screate_simple(1, &count, nullptr))};
      if (H5Dread(ds, H5T_NATIVE_INT64, mem, space, H5P_DEFAULT, buf.data()) < 0)
        fail(std::string("/").append(name).append(" ids ") + std::to_string(start) + ".." +
             std::to_string(start + count - 1) + " " + h5::dataset_read_problem());
      for (hsize_t i = 0; i < count; ++i)
        if (buf[i] < 0 || buf[i] >= vocab_size)
          fail(outside_vocabulary(std::string("/") + name, static_cast<int64_t>(start + i), buf[i],
                                  vocab_size));
      if (keep) keep(start, buf.data(), count);
    }
  }

  // A split read into int32, every id checked.
  std::vector<int32_t> read_split(hid_t file, const char* name, int64_t vocab_size,
                                  int64_t seq_len) const {
    auto [ds, n] = open_split(file, name, seq_len);
    std::vector<int32_t> out(n);
    check_ids(ds, n, name, vocab_size, [&](hsize_t start, const int64_t* b, hsize_t count) {
      std::transform(b, b + count, out.begin() + static_cast<std::ptrdiff_t>(start),
                     [](int64_t v) { return static_cast<int32_t>(v); });
    });
    return out;
  }

 private:
  void require_root_attribute(hid_t file, const char* name) const {
    if (!h5::has_attr(file, name))
      fail(std::string("missing root attribute '") + name +
           "' (files from `switchyard data prepare` have vocab_size and tokenizer)");
  }

  std::string path_;
};

}  // namespace

TokenData read_token_file(const std::string& path, int64_t model_vocab_size, int64_t seq_len) {
  const Reader r(path);
  h5::ErrorSilencer quiet;
  try {
    const h5::File file = r.open();
    TokenData data;
    static_cast<TokenFileInfo&>(data) = r.info(file, model_vocab_size);
    data.train = r.read_split(file, "train", data.vocab_size, seq_len);
    data.val = r.read_split(file, "val", data.vocab_size, seq_len);
    return data;
  } catch (const h5::Error& e) {
    r.fail(std::string("cannot be read: ") + e.what());
  }
}

TokenSource open_token_file(const std::string& path, int64_t model_vocab_size, int64_t seq_len,
                            bool scan) {
  const Reader r(path);
  h5::ErrorSilencer quiet;
  try {
    auto file = std::make_shared<h5::File>(r.open());
    TokenSource src;
    static_cast<TokenFileInfo&>(src) = r.info(*file, model_vocab_size);
    auto [train_ds, train_n] = r.open_split(*file, "train", seq_len);
    auto [val_ds, val_n] = r.open_split(*file, "val", seq_len);
    src.scanned = scan && static_cast<int64_t>(train_n + val_n) <= kScanTokens;
    auto split = [&](const char* name, h5::Dataset& ds, hsize_t n) {
      if (src.scanned) r.check_ids(ds, n, name, src.vocab_size, nullptr);
      auto impl = std::make_shared<TokenSplitReader::Impl>();
      impl->path = path;
      impl->name = std::string("/") + name;
      impl->file = file;
      impl->ds = std::move(ds);
      impl->vocab_size = src.vocab_size;
      return TokenSplitReader(std::move(impl), static_cast<int64_t>(n));
    };
    src.train = split("train", train_ds, train_n);
    src.val = split("val", val_ds, val_n);
    return src;
  } catch (const h5::Error& e) {
    r.fail(std::string("cannot be read: ") + e.what());
  }
}

std::string token_source_fingerprint(const TokenSource& data) {
  std::string sampled = data.tokenizer_model;
  constexpr int64_t kBlock = 256, kBlocks = 32;
  std::vector<int32_t> block(static_cast<size_t>(kBlock));
  for (const TokenSplitReader* split : {&data.train, &data.val}) {
    const int64_t n = split->size(), count = std::min(kBlock, n);
    for (int64_t b = 0; b <= kBlocks && count > 0; ++b) {
      const int64_t first = (n - count) * b / kBlocks;
      // The same blocks on every rank: a bad id or a failed read here (in a file too large to
      // scan) is the input file's, met by every rank reading it alike (a training window's is
      // one rank's own: TokenSplitReader::read's runtime_error).
      try {
        split->read(first, count, block.data());
      } catch (const Error&) {
        throw;
      } catch (const std::runtime_error& e) {
        throw UsageError(e.what());
      }
      sampled.append(reinterpret_cast<const char*>(block.data()),
                     static_cast<size_t>(count) * sizeof(int32_t));
    }
  }
  // FNV-1a, 64 bits: checkpoints keep the fingerprint, so its hash must not depend on the
  // standard library that built the binary (std::hash differs between them).
  const uint64_t h = philox::fnv1a64(sampled.data(), sampled.size());
  char hash[17];
  std::snprintf(hash, sizeof hash, "%016llx", static_cast<unsigned long long>(h));
  return "vocab_size " + std::to_string(data.vocab_size) + ", tokenizer " + data.tokenizer +
         ", /train " + std::to_string(data.train.size()) + " and /val " +
         std::to_string(data.val.size()) + " tokens, content " + hash;
}

}  // namespace sy
