#include "src/data/tokens.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <optional>

#include "src/core/durable_file.h"
#include "src/core/error.h"
#include "src/core/h5.h"
#include "src/core/h5_attr.h"
#include "src/data/tokenizer_h5.h"

namespace sy {

namespace {

namespace fs = std::filesystem;

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
  // A checksum per chunk (as checkpoints have): a damaged page of ids is refused when read
  // (QA: a zeroed 4 KiB page was trained on, unsaid). Any HDF5 reader checks it on its own.
  H5_CHECK(H5Pset_fletcher32(dcpl));
  H5_CHECK(H5Pset_obj_track_times(dcpl, false));  // the same inputs make the same bytes
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
  h5::PropList gcpl{H5_CHECK(H5Pcreate(H5P_GROUP_CREATE))};
  H5_CHECK(H5Pset_obj_track_times(gcpl, false));
  h5::Group group{H5_CHECK(H5Gcreate2(file, "tokenizer", H5P_DEFAULT, gcpl, H5P_DEFAULT))};
  h5::PropList dcpl{H5_CHECK(H5Pcreate(H5P_DATASET_CREATE))};
  H5_CHECK(H5Pset_obj_track_times(dcpl, false));
  h5::Dataset ds{
      H5_CHECK(H5Dcreate2(group, "model", H5T_STD_U8LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT))};
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
  // the data commands turn that clean-up off (prepare_for_token_file_writes), and
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
  // Both splits' last chunks whole, the tokenizer model, and HDF5's metadata: 64 KiB and 64
  // bytes a chunk (its index; a 60 MB file of 458 chunks has 61 KB besides its tokens). A MiB
  // for it made a 272 KB file "need about 1.3 MiB" under a 1 MiB ulimit -f (QA).
  const int64_t chunks = tokens / chunk + 2;
  return width * (tokens + 2 * chunk) + tokenizer_model_bytes + (int64_t{64} << 10) + 64 * chunks;
}

void prepare_for_token_file_writes() {
  H5dont_atexit();
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

}  // namespace sy
