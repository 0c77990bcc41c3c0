// Pass 1 of reading a checkpoint: read_structure.h.
#include "src/ckpt/read_structure.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "src/ckpt/files.h"
#include "src/ckpt/seal.h"
#include "src/config/config.h"
#include "src/core/paths.h"

namespace sy::ckpt::detail {

namespace {

namespace fs = std::filesystem;

// HDF5 looks for its signature at 0, 512, 1024, 2048, ... (a user block may precede it).
bool has_hdf5_signature(const std::string& file) {
  static constexpr char kSig[8] = {'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n'};
  std::ifstream in(file, std::ios::binary);
  std::error_code ec;
  const auto size = static_cast<int64_t>(fs::file_size(file, ec));
  if (!in || ec) return false;
  for (int64_t off = 0; off + 8 <= size; off = off ? off * 2 : 512) {
    char buf[8];
    in.seekg(off);
    if (!in.read(buf, 8)) return false;
    if (std::memcmp(buf, kSig, 8) == 0) return true;
  }
  return false;
}

// For a checkpoint directory's `latest` given as a checkpoint: what it points to.
std::string pointer_hint(const std::string& file) {
  const fs::path p(file);
  if (p.filename() != "latest") return "";
  const auto name = files::read_latest(p.parent_path().string());
  if (!name || step_of_file_name(*name) < 0) return "";
  return "; this is the checkpoint directory's pointer file: pass the file it names, '" +
         (p.parent_path() / *name).string() + "'";
}

// Another tool's checkpoint has no manifest: the datasets of the model its stored config
// describes (the parameter table's names and global shapes, and their two moments), so that a
// missing one is named, an extra one is left alone, and nothing the model does not have is read.
std::vector<ManifestEntry> datasets_of_config(const std::string& config_yaml,
                                              const std::string& file) {
  Config cfg;
  try {
    cfg = parse_stored_config(config_yaml, "checkpoint '" + file + "' (its stored config)");
  } catch (const UsageError& e) {
    throw CheckpointError(file, "/", std::string("root attribute 'config': ") + e.what());
  }
  const ParamTable table = make_param_table(cfg);
  std::vector<ManifestEntry> out;
  for (const ParamSpec& p : table.specs()) out.push_back({p.name, p.shape});
  for (const char* moment : {"m", "v"})
    for (const ParamSpec& p : table.specs()) out.push_back({moment_path(moment, p.name), p.shape});
  return out;
}

}  // namespace

FileInfo read_structure(const std::string& file) {
  std::error_code ec;
  const fs::file_status st = fs::status(file, ec);
  if (ec && ec != std::errc::no_such_file_or_directory)  // e.g. a directory it cannot enter
    throw CheckpointError(file, "", CheckpointError::kUnreadable + ec.message());
  if (!fs::exists(st)) throw CheckpointError(file, "", "file not found");
  if (!fs::is_regular_file(st)) throw CheckpointError(file, "", "not a regular file");
  if (const std::string why = unreadable_reason(file); !why.empty())  // HDF5: "not HDF5"
    throw CheckpointError(file, "", why);
  h5::PropList fapl = serial_fapl();
  const hid_t id = H5Fopen(file.c_str(), H5F_ACC_RDONLY, fapl);
  if (id < 0) {
    if (!has_hdf5_signature(file))
      throw CheckpointError(file, "", "not an HDF5 file (no HDF5 signature)" + pointer_hint(file));
    throw CheckpointError(file, "", "HDF5 file " + h5::file_open_problem());
  }
  h5::File f{id};

  auto attr_error = [&](const std::string& where, const std::exception& e) {
    return CheckpointError(file, where, e.what());
  };
  // Whether a root attribute is there: a damaged object header or attribute index fails the
  // question itself, which is a damaged checkpoint (exit 2; --resume auto goes on to an older
  // one), not an error of the reader (it was exit 1 and ended the resume's scan).
  auto has_root_attr = [&](const char* name) {
    try {
      return has_attr(f, name);
    } catch (const std::exception& e) {
      throw attr_error("/", e);
    }
  };
  if (!has_root_attr("format"))
    throw CheckpointError(file, "",
                          "not a switchyard checkpoint (no root attribute 'format'; a foreign "
                          "HDF5 file?)");
  FileInfo info;
  std::string manifest_text;
  // Written by another tool to SPEC 5 alone: neither of the two attributes switchyard adds (a
  // file with one of them is ours, and damaged or edited without the other).
  const bool foreign = !has_root_attr("tensors") && !has_root_attr(kChecksumAttr);
  info.state.sealed = !foreign;
  // A count the trainer continues from (another tool's file is checked by nothing else).
  auto non_negative = [](const char* name, int64_t v) {
    if (v < 0)
      throw std::runtime_error(std::string("attribute '") + name + "' is " + std::to_string(v) +
                               ", expected >= 0");
    return v;
  };
  try {
    const std::string format = read_attr_string(f, "format");
    if (format != kFormat)
      throw CheckpointError(file, "",
                            "not a switchyard checkpoint (root attribute format is '" + format +
                                "', expected '" + kFormat + "')");
    const int64_t version = read_attr_i64(f, "format_version");
    if (version != kFormatVersion)
      throw CheckpointError(file, "",
                            "format_version " + std::to_string(version) +
                                " is not supported (this switchyard reads version " +
                                std::to_string(kFormatVersion) + ")");
    TrainState& s = info.state;
    s.step = non_negative("step", read_attr_i64(f, "step"));
    s.tokens_seen = non_negative("tokens_seen", read_attr_i64(f, "tokens_seen"));
    s.config_yaml = read_attr_string(f, "config");
    s.layout = read_attr_string(f, "layout");
    s.created_unix = read_attr_i64(f, "created_unix");
    if (!foreign) manifest_text = read_attr_string(f, "tensors");
    if (has_attr(f, "written_by")) s.written_by = read_attr_string(f, "written_by");
    if (has_attr(f, "tokenizer")) s.tokenizer = read_attr_string(f, "tokenizer");
    if (has_attr(f, "tokenizer_vocab_size"))
      s.tokenizer_vocab_size = read_attr_i64(f, "tokenizer_vocab_size");
  } catch (const CheckpointError&) {
    throw;
  } catch (const std::exception& e) {
    throw attr_error("/", e);
  }
  // SPEC 5 leaves /state's contents open: another tool's file may lack it (the defaults stand;
  // the data order's position is derived below).
  auto group_attrs = [&](const char* group, auto&& read) {
    try {
      if (!path_exists(f, group)) {
        if (foreign && std::string_view(group).starts_with("state/")) {
          info.state.state_missing.emplace_back(group);
          return;
        }
        throw std::runtime_error("group missing");
      }
      h5::Group g{H5_CHECK(H5Gopen2(f, group, H5P_DEFAULT))};
      read(g.get());
    } catch (const std::exception& e) {
      throw attr_error(std::string("/") + group, e);
    }
  };
  TrainState& s = info.state;
  group_attrs("optim", [&](hid_t g) {
    s.optim_step = non_negative("step", read_attr_i64(g, "step"));
    s.lr = read_attr_f64(g, "lr");
  });
  s.loader.consumed = -1;
  group_attrs("state/data", [&](hid_t g) {
    s.loader.seed = read_attr_u64(g, "seed");
    s.loader.step = read_attr_i64(g, "next_step");
    if (has_attr(g, "consumed_sequences"))
      s.loader.consumed =
          non_negative("consumed_sequences", read_attr_i64(g, "consumed_sequences"));
    if (has_attr(g, "data_fingerprint"))
      s.data_fingerprint = read_attr_string(g, "data_fingerprint");
  });
  group_attrs("state/rng", [&](hid_t g) {
    s.rng.seed = read_attr_u64(g, "seed");
    s.rng.offset = read_attr_u64(g, "offset");
  });
  group_attrs("state/train", [&](hid_t g) {
    s.best_val_loss = read_attr_f64(g, "best_val_loss");
    s.last_val_loss = read_attr_f64(g, "last_val_loss");
  });
  // A file without consumed_sequences (written before it, or by another tool): step * the
  // stored global batch, exact unless an earlier resume changed the batch. A stored config
  // that does not parse leaves -1: the trainer then uses its own global batch.
  if (s.loader.consumed < 0) {
    s.consumed_derived = true;
    try {
      const int64_t gb = parse_stored_config(s.config_yaml, "stored config").train.global_batch;
      int64_t consumed = 0;
      if (!__builtin_mul_overflow(s.step, gb, &consumed)) s.loader.consumed = consumed;
    } catch (const UsageError&) {
    }
  }

  std::vector<ManifestEntry> manifest;
  if (foreign) {
    manifest = datasets_of_config(info.state.config_yaml, file);
  } else {
    try {
      manifest = parse_manifest(manifest_text);
    } catch (const std::exception& e) {
      throw CheckpointError(file, "/", std::string("root attribute 'tensors': ") + e.what());
    }
  }
  const char* listed = foreign ? "the stored config's model has it" : "listed in the manifest";
  const char* says = foreign ? "the stored config's model has " : "the manifest says ";
  for (auto& m : manifest) {
    EntryInfo e;
    e.m = m;
    try {
      if (!path_exists(f, m.path))
        throw std::runtime_error(std::string("dataset missing (") + listed + ")");
      const hid_t opened = H5Dopen2(f, m.path.c_str(), H5P_DEFAULT);
      if (opened < 0) throw std::runtime_error(h5::dataset_open_problem(f, m.path.c_str()));
      h5::Dataset ds{opened};
      h5::Datatype type{H5_CHECK(H5Dget_type(ds))};
      if (H5_CHECK(H5Tequal(type, H5T_IEEE_F32LE)) <= 0)
        throw std::runtime_error("not float32 little-endian");
      h5::Dataspace space{H5_CHECK(H5Dget_space(ds))};
      const int nd = H5_CHECK(H5Sget_simple_extent_ndims(space));
      std::vector<hsize_t> dims(static_cast<size_t>(nd));
      H5_CHECK(H5Sget_simple_extent_dims(space, dims.data(), nullptr));
      const std::vector<int64_t> shape(dims.begin(), dims.end());
      if (nd == 0) throw std::runtime_error("a scalar dataset, not a tensor");
      if (shape != m.shape)
        throw std::runtime_error("shape " + shape_string(shape) + ", " + says +
                                 shape_string(m.shape));
      if (numel_of(shape) > 0) {
        // Created but never written: HDF5 would read it back as its fill value, silently.
        H5D_space_status_t status = H5D_SPACE_STATUS_ERROR;
        H5_CHECK(H5Dget_space_status(ds, &status));
        if (status == H5D_SPACE_STATUS_NOT_ALLOCATED)
          throw std::runtime_error("never written (no data stored)");
        h5::PropList dcpl{H5_CHECK(H5Dget_create_plist(ds))};
        unsigned flags = 0, config = 0;
        size_t nelem = 0;
        const bool fletcher = H5Pget_filter_by_id2(dcpl, H5Z_FILTER_FLETCHER32, &flags, &nelem,
                                                   nullptr, 0, nullptr, &config) >= 0;
        if (!fletcher && !foreign) throw std::runtime_error("has no Fletcher32 checksum");
        // The units the data pass reads: the dataset's chunks, or (another tool's contiguous
        // dataset) the blocks of rows switchyard would have chunked it in.
        if (H5_CHECK(H5Pget_layout(dcpl)) == H5D_CHUNKED) {
          std::vector<hsize_t> chunk(static_cast<size_t>(nd));
          H5_CHECK(H5Pget_chunk(dcpl, nd, chunk.data()));
          e.chunk.assign(chunk.begin(), chunk.end());
        } else {
          e.chunk = chunk_shape(shape);
        }
        e.chunks = 1;
        for (int d = 0; d < nd; ++d)
          e.chunks *= (shape[static_cast<size_t>(d)] + e.chunk[static_cast<size_t>(d)] - 1) /
                      e.chunk[static_cast<size_t>(d)];
      }
    } catch (const std::exception& ex) {
      e.problem = ex.what();
    }
    info.entries.push_back(std::move(e));
  }
  // Last, so that damage a check above names precisely (a dataset, the format) is reported as
  // such; the seal then catches what nothing else can see (an attribute's value, a dataset
  // deleted together with its manifest line).
  try {
    if (!foreign) info.metadata_problem = check_seal(f);
  } catch (const std::exception& e) {
    info.metadata_problem = std::string("metadata checksum cannot be computed: ") + e.what();
  }
  return info;
}

}  // namespace sy::ckpt::detail
