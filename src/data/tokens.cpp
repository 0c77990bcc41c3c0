#include "src/data/tokens.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <optional>

#include "src/core/durable_file.h"
#include "src/core/error.h"
#include "src/core/h5.h"
#include "src/core/h5_attr.h"
#include "src/core/number_text.h"
#include "src/core/paths.h"
#include "src/core/progress.h"
#include "src/data/tokenizer_h5.h"

namespace sy {

namespace {

namespace fs = std::filesystem;

std::vector<unsigned char> read_input(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw UsageError("input file '" + path + "' not found");
  if (fs::is_directory(path, ec))
    throw UsageError("input file '" + path + "' is a directory, expected a text file");
  if (const std::string why = unreadable_reason(path); !why.empty())
    throw UsageError("input file '" + path + "' " + why);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UsageError("input file '" + path + "' cannot be read");
  std::vector<unsigned char> bytes;
  // A regular file in one read of its size (a vector grown by doubling held up to 3x the text
  // while it moved); a pipe as it comes.
  if (const auto size = fs::file_size(path, ec); !ec && fs::is_regular_file(path, ec)) {
    bytes.resize(static_cast<size_t>(size));
    in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size));
    bytes.resize(static_cast<size_t>(in.gcount()));
  } else {
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  if (in.bad()) throw UsageError("input file '" + path + "' cannot be read");
  if (bytes.empty()) throw UsageError("input file '" + path + "' is empty");
  return bytes;
}

// SPEC section 8: uint16 ids while they fit, uint32 above.
hid_t token_file_type(int64_t vocab_size) {
  return vocab_size <= 65536 ? H5T_STD_U16LE : H5T_STD_U32LE;
}

// Chunks of the extendible /train and /val datasets: 64 Ki ids (128 KiB as uint16).
constexpr hsize_t kTokenChunk = hsize_t{1} << 16;

h5::Dataset create_split(hid_t file, const char* name, int64_t vocab_size) {
  const hsize_t dims[1] = {0}, max_dims[1] = {H5S_UNLIMITED};
  h5::Dataspace space{H5_CHECK(H5Screate_simple(1, dims, max_dims))};
  h5::PropList dcpl{H5_CHECK(H5Pcreate(H5P_DATASET_CREATE))};
  H5_CHECK(H5Pset_chunk(dcpl, 1, &kTokenChunk));
  return h5::Dataset{H5_CHECK(
      H5Dcreate2(file, name, token_file_type(vocab_size), space, H5P_DEFAULT, dcpl, H5P_DEFAULT))};
}

void append_ids(hid_t ds, hsize_t& size, std::span<const uint32_t> ids) {
  if (ids.empty()) return;
  const hsize_t start = size, count = ids.size(), grown = size + ids.size();
  H5_CHECK(H5Dset_extent(ds, &grown));
  h5::Dataspace file_space{H5_CHECK(H5Dget_space(ds))};
  H5_CHECK(H5Sselect_hyperslab(file_space, H5S_SELECT_SET, &start, nullptr, &count, nullptr));
  h5::Dataspace mem{H5_CHECK(H5Screate_simple(1, &count, nullptr))};
  // HDF5 narrows the uint32 buffer to the file's uint16 on write.
  H5_CHECK(H5Dwrite(ds, H5T_NATIVE_UINT32, mem, file_space, H5P_DEFAULT, ids.data()));
  size = grown;
}

void write_root_attributes(hid_t file, int64_t vocab_size, const std::string& tokenizer) {
  h5::write_attr(file, "vocab_size", vocab_size);
  h5::write_attr(file, "tokenizer", tokenizer);  // variable-length UTF-8: h5py reads a str
}

// /tokenizer/model: the serialized SentencePiece model as uint8.
void write_tokenizer_model(hid_t file, const std::string& model) {
  const hsize_t n = model.size();
  h5::Dataspace space{H5_CHECK(H5Screate_simple(1, &n, nullptr))};
  h5::PropList lcpl{H5_CHECK(H5Pcreate(H5P_LINK_CREATE))};
  H5_CHECK(H5Pset_create_intermediate_group(lcpl, 1));
  h5::Dataset ds{H5_CHECK(
      H5Dcreate2(file, "tokenizer/model", H5T_STD_U8LE, space, lcpl, H5P_DEFAULT, H5P_DEFAULT))};
  H5_CHECK(H5Dwrite(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, model.data()));
}

}  // namespace

std::string read_tokenizer_model(hid_t file) {
  h5::ErrorSilencer quiet;
  if (H5_CHECK(H5Lexists(file, "tokenizer", H5P_DEFAULT)) <= 0 ||
      H5_CHECK(H5Lexists(file, kTokenizerModelPath, H5P_DEFAULT)) <= 0)
    return "";
  const hid_t id = H5Dopen2(file, kTokenizerModelPath, H5P_DEFAULT);
  if (id < 0) throw std::runtime_error("/tokenizer/model is not a dataset");
  h5::Dataset ds{id};
  h5::Dataspace space{H5_CHECK(H5Dget_space(ds))};
  h5::Datatype type{H5_CHECK(H5Dget_type(ds))};
  if (H5_CHECK(H5Sget_simple_extent_ndims(space)) != 1 || H5Tget_class(type) != H5T_INTEGER ||
      H5Tget_size(type) != 1)
    throw std::runtime_error("/tokenizer/model must be a one-dimensional uint8 dataset");
  hsize_t n = 0;
  H5_CHECK(H5Sget_simple_extent_dims(space, &n, nullptr));
  std::string model(n, '\0');
  if (n > 0 && H5Dread(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, model.data()) < 0)
    throw std::runtime_error("/tokenizer/model cannot be read: " + h5::error_stack_message());
  return model;
}

namespace {
// -sum_v p_v ln p_v of the frequencies counts[v] / sum, in token-id order.
double entropy_of_counts(const std::vector<int64_t>& counts) {
  int64_t total = 0;
  for (int64_t c : counts) total += c;
  if (total == 0) return 0.0;
  const double n = static_cast<double>(total);
  double h = 0.0;
  for (int64_t c : counts)
    if (c > 0) h -= static_cast<double>(c) / n * std::log(static_cast<double>(c) / n);
  return h;
}
}  // namespace

double unigram_entropy_nats(const std::vector<uint32_t>& tokens) {
  std::vector<int64_t> counts;
  for (uint32_t t : tokens) {
    if (t >= counts.size()) counts.resize(static_cast<size_t>(t) + 1, 0);
    ++counts[t];
  }
  return entropy_of_counts(counts);
}

// ---- writing -----------------------------------------------------------------------------------

struct TokenFileWriter::Impl {
  std::string path, tmp;
  std::string dir;  // the directory it is written in (files::check_output_file)
  int64_t vocab_size = 0;
  std::optional<h5::File> file;
  std::optional<h5::Dataset> train, val;
  hsize_t n_train = 0, n_val = 0;
  bool committed = false;
  std::optional<files::HeldTmp> held;  // the .tmp: no second writer, removed on an interrupt

  // Runs one write step; a failure becomes one Error (exit 1) naming the file and, where errno or
  // the message tell, the cause in words: a full disk or the file size limit (ulimit -f).
  template <class Fn>
  void guarded(Fn&& fn) {
    h5::ErrorSilencer quiet;
    errno = 0;
    try {
      fn();
    } catch (const std::exception& e) {
      const int err = errno;  // what the failed write(2) left, read before anything else runs
      fail(err, e.what());
    }
  }

  [[noreturn]] void fail(int err, const std::string& detail) const {
    const int64_t avail = files::free_bytes(dir);
    std::string cause;  // empty: HDF5's own message says it
    if (err == EFBIG)
      cause = "file size limit exceeded (ulimit -f)";
    else if (err == ENOSPC || err == EDQUOT || files::looks_like_disk_full(detail, avail))
      cause = "no space left on device (" + (avail >= 0 ? files::mib(avail) : "unknown") +
              " free in '" + dir + "')";
    throw Error(kExitOther, "writing token file '" + path +
                                "' failed: " + (cause.empty() ? detail : cause) +
                                "; nothing is written, the partial '" + tmp + "' is removed");
  }

  // Gives the partial file up: closes it and removes it. After a failed write HDF5 1.10 may fail
  // the close too (it writes what it caches again) and then crash in its exit-time clean-up:
  // the data commands turn that clean-up off (H5dont_atexit, app/cmd_data.cpp), and
  // check_room() keeps a file that cannot fit from being started at all.
  void abandon() {
    h5::ErrorSilencer quiet;
    train.reset();
    val.reset();
    file.reset();
    held.reset();  // removes the .tmp, then lets it go
  }
};

namespace {

// Before anything is written: a file that cannot fit the file system's free space of `dir` or the
// file size limit (ulimit -f) is refused in words, before the minutes a large write takes; a
// write that fails anyway (a disk that filled meanwhile) is Impl::fail's.
void check_room(const std::string& path, const std::string& dir, int64_t bytes) {
  if (const std::string why = files::no_room_for(dir, bytes); !why.empty())
    throw Error(kExitOther, "writing token file '" + path + "': it needs about " +
                                files::mib(bytes) + ", " + why + "; nothing is written");
}

}  // namespace

int64_t token_file_bytes(int64_t vocab_size, int64_t tokens, int64_t tokenizer_model_bytes) {
  const auto width = static_cast<int64_t>(H5Tget_size(token_file_type(vocab_size)));
  const auto chunk = static_cast<int64_t>(kTokenChunk);
  // Both splits' last chunks whole, the tokenizer model, and a MiB for HDF5's metadata.
  return width * (tokens + 2 * chunk) + tokenizer_model_bytes + (int64_t{1} << 20);
}

TokenFileWriter::TokenFileWriter(const std::string& path, int64_t vocab_size, int64_t file_bytes)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.path = path;
  m.tmp = path + ".tmp";
  m.dir = files::check_output_file(path);
  // Test hook: SWITCHYARD_TOKEN_FILE_NO_ROOM_CHECK=1 lets the tests reach a write that fails after
  // the check passed (a disk that filled meanwhile).
  const char* no_check = std::getenv("SWITCHYARD_TOKEN_FILE_NO_ROOM_CHECK");
  if (!(no_check && std::string(no_check) == "1")) check_room(path, m.dir, file_bytes);
  m.vocab_size = vocab_size;
  // The file is written as <path>.tmp first: something else in its place is named as such (a
  // directory read as "is the directory writable?").
  std::error_code ec;
  const std::string in_the_way =
      fs::is_directory(m.tmp, ec) ? "a directory" : files::special_file_kind(m.tmp);
  if (!in_the_way.empty())
    throw UsageError("'" + m.tmp + "', where the token file is written before it is renamed to '" +
                     path + "', is " + in_the_way + ": remove it");
  // Held first, as every staged output (files::HeldTmp): HDF5 opens with O_TRUNC before it
  // tries its own lock, so a second writer refused by that lock had already emptied the first
  // one's file, which the first then published (zeros are valid token ids). HDF5's lock is off
  // for this file: ours stands in for it (and works where HDF5_USE_FILE_LOCKING=FALSE).
  try {
    m.held.emplace(path);
  } catch (const std::runtime_error& e) {
    if (std::string(e.what()).find(files::kAnotherWriter) != std::string::npos)
      throw Error(kExitOther, e.what());
    throw UsageError("cannot create '" + m.tmp + "' (is '" + m.dir + "' writable?): " + e.what());
  }
  h5::ErrorSilencer quiet;
  h5::PropList fapl{H5_CHECK(H5Pcreate(H5P_FILE_ACCESS))};
  H5_CHECK(H5Pset_file_locking(fapl, false, true));  // not silently left on: see above
  const hid_t file_id = H5Fcreate(m.tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  if (file_id < 0) {
    const std::string why = h5::error_stack_message();
    m.held.reset();
    throw UsageError("cannot create '" + m.tmp + "' (is '" + m.dir + "' writable?): " + why);
  }
  m.file.emplace(file_id);
  try {
    m.guarded([&] {
      m.train.emplace(create_split(*m.file, "train", vocab_size));
      m.val.emplace(create_split(*m.file, "val", vocab_size));
    });
  } catch (...) {
    m.abandon();  // the destructor does not run for a constructor that throws
    throw;
  }
}

TokenFileWriter::~TokenFileWriter() {
  if (!impl_->committed) impl_->abandon();
}

void TokenFileWriter::append_train(std::span<const uint32_t> ids) {
  impl_->guarded([&] { append_ids(*impl_->train, impl_->n_train, ids); });
}

void TokenFileWriter::append_val(std::span<const uint32_t> ids) {
  impl_->guarded([&] { append_ids(*impl_->val, impl_->n_val, ids); });
}

void TokenFileWriter::commit(const Tokenizer& tokenizer) {
  Impl& m = *impl_;
  m.guarded([&] {
    write_root_attributes(*m.file, m.vocab_size, tokenizer.name());
    if (!tokenizer.model().empty()) write_tokenizer_model(*m.file, tokenizer.model());
    // Everything cached (the datasets' chunks too) reaches the file here, checked.
    H5_CHECK(H5Fflush(*m.file, H5F_SCOPE_LOCAL));
    m.train.reset();
    m.val.reset();
    // The close writes the last metadata: checked too. When it fails and HDF5 keeps the file
    // open, abandon() (the destructor) closes it.
    const hid_t id = m.file->release();
    m.file.reset();
    const herr_t closed = H5Fclose(id);
    if (closed < 0 && H5Iis_valid(id) > 0) m.file.emplace(id);
    h5::check(closed, "H5Fclose", __FILE__, __LINE__);
    files::commit_file(m.tmp, m.path);
    m.held->renamed();
  });
  m.committed = true;
}

// ---- prepare -----------------------------------------------------------------------------------

namespace {

// Encodes `text` (one input's train or val part, starting at byte `file_offset` of its file) with
// a SentencePiece tokenizer (byte tokens are written as they are read: prepare_token_file) into
// `dst` in blocks of about `block` bytes that end after a newline, or before a space inside a
// line too long for one: SentencePiece's pieces cross neither, and each block after the first is
// encoded as it reads after a newline (as is the part itself when `after_newline`), so the ids are
// those of the whole text and a dummy "▁" comes only in front of it; `progress` hears after each
// block. Offsets in errors are the file's.
void encode_part(const Tokenizer& tok, std::string_view text, int64_t file_offset,
                 bool after_newline, std::vector<uint32_t>& dst, size_t block,
                 const std::function<void(size_t)>& progress) {
  // SentencePiece's memory grows with the text it encodes at once (1.85 GB for one 11 MB line):
  // where a block would run more than kLongLine past its size (into a long line), it ends before
  // that line, and a line past block + kLongLine is encoded in pieces of at most kLongLine
  // (long_line_piece_end).
  constexpr size_t kLongLine = size_t{64} << 10;
  for (size_t at = 0; at < text.size();) {
    size_t end = text.find('\n', std::min(at + block, text.size()) - 1);
    end = end == std::string::npos ? text.size() : end + 1;
    if (end - at > block + kLongLine) {
      const size_t nl = text.rfind('\n', at + block - 1);
      if (nl != std::string::npos && nl >= at) {
        end = nl + 1;
      } else {
        end = long_line_piece_end(text, at, kLongLine);
      }
    }
    std::vector<int32_t> ids;
    try {
      ids = tok.encode(text.substr(at, end - at), at > 0 || after_newline);
    } catch (const InexactText& e) {
      throw UsageError(e.message_at(file_offset + static_cast<int64_t>(at) + e.offset()));
    }
    dst.insert(dst.end(), ids.begin(), ids.end());
    progress(end - at);
    at = end;
  }
}

}  // namespace

PrepareReport prepare_token_file(const PrepareOptions& opt) {
  if (opt.inputs.empty()) throw UsageError("data prepare: no input files given");
  if (!(opt.val_fraction >= 0.0 && opt.val_fraction < 1.0))
    throw UsageError("data prepare: val_fraction " + number_text(opt.val_fraction) +
                     " must be in [0, 1)");
  if (opt.val_fraction == 0.0)
    throw UsageError(
        "data prepare: --val-fraction 0 leaves /val empty, and `switchyard train` "
        "needs a validation split; hold some text out (the default is 0.1)");
  if (opt.output.empty()) throw UsageError("data prepare: no output file given");
  files::check_output_file(opt.output);
  for (const auto& input : opt.inputs)
    refuse_output_as_input(opt.output, input, "data prepare", "the token file");
  const bool user_model = !opt.tokenizer_model.empty();
  if (user_model && opt.tokenizer)
    throw UsageError("data prepare: --tokenizer " + *opt.tokenizer +
                     " with --tokenizer-model: the given model is the tokenizer and nothing is "
                     "trained; leave out --tokenizer (or --tokenizer-model, to train one)");
  if (user_model && opt.vocab_size != 0)
    throw UsageError(
        "data prepare: --vocab-size with --tokenizer-model: nothing is trained, the "
        "vocabulary is the model's pieces; leave out --vocab-size");
  if (user_model && opt.train_sentences)
    throw UsageError(
        "data prepare: --train-sentences with --tokenizer-model: nothing is "
        "trained; leave out --train-sentences");
  const std::string kind = opt.tokenizer.value_or(kTokenizerBytes);
  const int64_t train_sentences = opt.train_sentences.value_or(kDefaultTrainSentences);
  const bool bytes = !user_model && kind == kTokenizerBytes;
  if (!user_model && !bytes && kind != "bpe" && kind != "unigram")
    throw UsageError("data prepare: --tokenizer '" + kind + "' is not one of bytes, bpe, unigram");
  if (bytes && opt.vocab_size != 0 && opt.vocab_size != kByteVocab)
    throw UsageError("data prepare: --vocab-size " + std::to_string(opt.vocab_size) +
                     " with --tokenizer bytes (its vocabulary is 256; pick --tokenizer bpe or "
                     "unigram for another size)");
  if (bytes && opt.train_sentences)
    throw UsageError(
        "data prepare: --train-sentences with --tokenizer bytes: nothing is trained "
        "(it is for bpe and unigram); leave out --train-sentences");
  // A lossless tokenizer holds 3 control pieces, the 256 bytes and "\n" before any character.
  constexpr int64_t kLeastPieces = 3 + kByteVocab + 1;
  if (!user_model && !bytes && opt.vocab_size <= 0)
    throw UsageError("data prepare: --tokenizer " + kind +
                     " needs --vocab-size N (the number of pieces to learn, at least " +
                     std::to_string(kLeastPieces) + ")" +
                     (opt.vocab_size < 0 ? "; got " + std::to_string(opt.vocab_size) : ""));
  if (!user_model && !bytes && opt.vocab_size < kLeastPieces)
    throw UsageError("data prepare: --vocab-size " + std::to_string(opt.vocab_size) +
                     " is too small: a lossless tokenizer keeps 3 control pieces, the 256 bytes "
                     "and the newline, and a piece for every distinct character of the train "
                     "text; use --vocab-size " +
                     std::to_string(kLeastPieces) + " or more");
  if (train_sentences < 0 || (train_sentences > 0 && train_sentences <= 100))
    throw UsageError("data prepare: --train-sentences " + std::to_string(train_sentences) +
                     " must be 0 (every line) or more than 100 (SentencePiece's least sample)");
  // Before the inputs are read: a model that does not load is refused at once.
  std::optional<Tokenizer> trained;
  if (user_model) trained.emplace(load_sentencepiece_file(opt.tokenizer_model));
  auto say = [&](const std::string& line) {
    if (opt.on_progress) opt.on_progress(line);
  };

  // Pass 1, an input at a time: checked, split; the train parts kept only while a tokenizer
  // trains on them. Pass 2 reads each input again to encode it, so the whole text is never held
  // with its ids (it was: 491 MB of text took 2.66 GB with --tokenizer bytes).
  struct Split {
    size_t size, at;  // the input's bytes; its val part starts at `at`
  };
  std::vector<Split> splits;
  std::vector<std::string> train_parts;
  // An input that is no regular file (a pipe, <(zcat corpus.gz)) cannot be read twice: kept.
  std::vector<std::vector<unsigned char>> kept(opt.inputs.size());
  const bool training = !bytes && !user_model;
  PrepareReport r;
  for (size_t i = 0; i < opt.inputs.size(); ++i) {
    const std::string& input = opt.inputs[i];
    std::vector<unsigned char> content = read_input(input);
    const size_t n = content.size();
    // Before SentencePiece trains (minutes on a large corpus), not when encoding after it.
    const int64_t bad = bytes ? -1
                              : first_invalid_utf8(std::string_view(
                                    reinterpret_cast<const char*>(content.data()), n));
    if (bad >= 0)
      throw UsageError(
          "input file '" + input + "': the text is not valid UTF-8 at byte offset " +
          std::to_string(bad) +
          " (SentencePiece encodes UTF-8 text only; --tokenizer bytes takes any bytes)");
    // SentencePiece writes a space as U+2581: a tokenizer it trains gives that character back as
    // a space. Said before training (the check after it came minutes later, and blamed the
    // normalization); a user's model is checked when it encodes.
    if (training)
      if (const auto at = std::string_view(reinterpret_cast<const char*>(content.data()), n)
                              .find("\xE2\x96\x81");
          at != std::string_view::npos)
        throw UsageError("input file '" + input +
                         "': the text holds U+2581 ('\xE2\x96\x81') at byte "
                         "offset " +
                         std::to_string(at) +
                         ", which SentencePiece uses for a space: the tokenizer would give it "
                         "back as a space, not as itself; replace it, or use --tokenizer bytes");
    size_t split = n - static_cast<size_t>(std::floor(static_cast<double>(n) * opt.val_fraction));
    // SentencePiece reads UTF-8: never cut a character in two.
    while (!bytes && split < n && (content[split] & 0xC0) == 0x80) ++split;
    splits.push_back({n, split});
    if (training)
      train_parts.emplace_back(content.begin(),
                               content.begin() + static_cast<std::ptrdiff_t>(split));
    r.train_bytes += static_cast<int64_t>(split);
    r.val_bytes += static_cast<int64_t>(n - split);
    std::error_code ec;
    if (!fs::is_regular_file(input, ec)) kept[i] = std::move(content);
  }
  if (r.val_bytes == 0)
    throw UsageError("data prepare: --val-fraction " + number_text(opt.val_fraction) + " of " +
                     std::to_string(r.train_bytes) +
                     " bytes holds out no text, so /val would be empty; raise --val-fraction");
  say("read " + std::to_string(opt.inputs.size()) +
      " input file(s): " + std::to_string(r.train_bytes) + " bytes of train text, " +
      std::to_string(r.val_bytes) + " bytes of val text");

  if (user_model) {
    say("encoding with the SentencePiece model '" + opt.tokenizer_model + "' (" +
        std::to_string(trained->vocab_size()) + " pieces" +
        (trained->has_byte_fallback()
             ? ", byte fallback)"
             : "; no byte fallback: a character it has no piece for cannot be encoded)"));
  } else if (training) {
    const int64_t lines = count_sentences(train_parts);
    const bool sampled = train_sentences > 0 && lines > train_sentences;
    say("training the " + kind + " tokenizer (" + std::to_string(opt.vocab_size) + " pieces) on " +
        (sampled ? "a random sample of " + std::to_string(train_sentences) + " of the " +
                       std::to_string(lines) + " lines (--train-sentences)"
                 : "all " + std::to_string(lines) + " lines") +
        " of the train text ...");
    const ProgressEta clock(1, 0.0);
    trained.emplace(train_sentencepiece(
        train_parts, kind == "bpe" ? SentencePieceType::kBpe : SentencePieceType::kUnigram,
        opt.vocab_size, train_sentences));
    char buf[64];
    std::snprintf(buf, sizeof buf, "trained the tokenizer in %.1f s", clock.elapsed_s());
    say(buf);
  }
  std::vector<std::string>().swap(train_parts);  // encoded from the files again, below
  const Tokenizer tok = bytes ? Tokenizer::bytes() : *trained;
  r.vocab_size = tok.vocab_size();
  r.tokenizer = tok.name();

  ProgressEta eta(r.train_bytes + r.val_bytes, opt.progress_every_s);
  int64_t encoded = 0;
  // Input i read again (the same bytes as in pass 1, or an error); its train part ends at
  // splits[i].at.
  auto read_again = [&](size_t i) {
    std::vector<unsigned char> content =
        kept[i].empty() ? read_input(opt.inputs[i]) : std::move(kept[i]);
    if (content.size() != splits[i].size)
      throw UsageError("input file '" + opt.inputs[i] + "' changed while data prepare read it (" +
                       std::to_string(splits[i].size) + " bytes, then " +
                       std::to_string(content.size()) + ")");
    return content;
  };
  const auto part = [&](const std::vector<unsigned char>& content, size_t i, bool train) {
    const std::string_view all(reinterpret_cast<const char*>(content.data()), content.size());
    return train ? all.substr(0, splits[i].at) : all.substr(splits[i].at);
  };

  if (bytes) {
    // Byte tokens: as many as the text's bytes, known before encoding, so the file is written
    // as the inputs are read, a block at a time.
    TokenFileWriter writer(opt.output, tok.vocab_size(),
                           token_file_bytes(tok.vocab_size(), r.train_bytes + r.val_bytes, 0));
    std::vector<int64_t> train_counts(kByteVocab, 0), val_counts(kByteVocab, 0);
    constexpr size_t kBlock = size_t{1} << 22;
    std::vector<uint32_t> ids;
    const auto append = [&](std::string_view text, bool train) {
      for (size_t at = 0; at < text.size(); at += kBlock) {
        const size_t end = std::min(text.size(), at + kBlock);
        ids.resize(end - at);
        for (size_t k = 0; k < ids.size(); ++k) {
          ids[k] = static_cast<unsigned char>(text[at + k]);
          ++(train ? train_counts : val_counts)[ids[k]];
        }
        if (train)
          writer.append_train(ids);
        else
          writer.append_val(ids);
        encoded += static_cast<int64_t>(end - at);
        if (auto line = eta.update(encoded)) say("encoding: " + *line);
      }
    };
    for (size_t i = 0; i < opt.inputs.size(); ++i) {
      const std::vector<unsigned char> content = read_again(i);
      append(part(content, i, true), true);
      append(part(content, i, false), false);
    }
    writer.commit(tok);
    r.train_tokens = r.train_bytes;
    r.val_tokens = r.val_bytes;
    r.train_unigram_nats = entropy_of_counts(train_counts);
    r.val_unigram_nats = entropy_of_counts(val_counts);
    return r;
  }

  std::vector<uint32_t> train, val;
  // A split's parts follow one another: a part after the first is encoded as it reads after a
  // newline (a model's dummy "▁" prefix belongs in front of a split's first text only).
  auto encode_into = [&](std::vector<uint32_t>& dst, std::string_view text, size_t input,
                         int64_t file_offset) {
    try {
      encode_part(tok, text, file_offset, !dst.empty(), dst, opt.encode_block_bytes, [&](size_t n) {
        encoded += static_cast<int64_t>(n);
        if (auto line = eta.update(encoded)) say("encoding: " + *line);
      });
    } catch (const UsageError& e) {
      throw UsageError("input file '" + opt.inputs[input] + "': " + e.what() +
                       (user_model ? "; encode with a model that gives any text back exactly "
                                     "(spm_train --normalization_rule_name=identity "
                                     "--remove_extra_whitespaces=false --byte_fallback=true), or "
                                     "let data prepare train one (--tokenizer bpe|unigram "
                                     "--vocab-size N)"
                                   : ""));
    }
  };
  for (size_t i = 0; i < opt.inputs.size(); ++i) {
    const std::vector<unsigned char> content = read_again(i);
    encode_into(train, part(content, i, true), i, 0);
    encode_into(val, part(content, i, false), i, static_cast<int64_t>(splits[i].at));
  }
  char buf[96];
  std::snprintf(buf, sizeof buf, "encoded %zu tokens in %.1f s", train.size() + val.size(),
                eta.elapsed_s());
  say(buf);

  TokenFileWriter writer(
      opt.output, tok.vocab_size(),
      token_file_bytes(tok.vocab_size(), static_cast<int64_t>(train.size() + val.size()),
                       static_cast<int64_t>(tok.model().size())));
  writer.append_train(train);
  writer.append_val(val);
  writer.commit(tok);

  r.train_tokens = static_cast<int64_t>(train.size());
  r.val_tokens = static_cast<int64_t>(val.size());
  r.train_unigram_nats = unigram_entropy_nats(train);
  r.val_unigram_nats = unigram_entropy_nats(val);
  return r;
}

}  // namespace sy
