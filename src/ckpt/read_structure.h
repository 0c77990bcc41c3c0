// Pass 1 of reading a checkpoint (read.cpp): rank 0 alone, with HDF5's POSIX driver, opens the
// file and reads what it is -- the format attributes, the root/optim/state attributes, and for
// every manifest entry (or, in another tool's file, every dataset its stored config's model has)
// whether it is present, float32, of the listed shape and checksummed -- and the metadata seal.
// Internal to src/ckpt.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "src/ckpt/checkpoint.h"
#include "src/ckpt/detail.h"

namespace sy::ckpt::detail {

struct EntryInfo {
  ManifestEntry m;
  std::vector<int64_t> chunk;  // the dataset's chunk shape (empty when it has no data)
  int64_t chunks = 0;
  std::string problem;
};

struct FileInfo {
  TrainState state;
  std::vector<EntryInfo> entries;
  std::string metadata_problem;  // the seal (seal.h) is missing or does not match
};

// "/model/embed" for the manifest path "model/embed".
inline std::string dataset_name(const std::string& path) {
  return "/" + path;
}

// Throws CheckpointError for a file that cannot be used at all (missing, not HDF5, truncated,
// foreign without a usable config, an unknown format_version); problems of single datasets go
// into their EntryInfo.
FileInfo read_structure(const std::string& file);

}  // namespace sy::ckpt::detail
