// The metadata checksum of a checkpoint (root attribute `metadata_checksum`, "crc64:<16 hex>").
//
// HDF5 checks the file's structure (superblock and object headers carry checksums in the 1.10
// format) and Fletcher32 checks each chunk of tensor data, but nothing checks an attribute's
// value kept outside its object header -- a variable-length string such as `config` lives in the
// global heap -- nor a value rewritten with a valid header checksum (h5py editing `step`), nor a
// dataset deleted together with its line in the manifest. The seal covers all of that
// generically: a CRC-64 (ECMA-182, as in xz) over a canonical listing of the file, walked in name
// order:
//   every object    its path, its kind (group, dataset, named type); for a dataset its type
//                   (class, size, sign, string form) and shape, and its contents too when it has
//                   no Fletcher32 filter of its own (so an unfiltered dataset such as a tokenizer
//                   model is covered);
//   every attribute of every object, in name order: its name, type, shape and value (strings as
//                   text), except `metadata_checksum` itself.
// Attributes and datasets that later code adds are covered without listing them anywhere.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "src/core/h5.h"

namespace sy::ckpt::detail {

inline constexpr const char* kChecksumAttr = "metadata_checksum";

// CRC-64/XZ of `bytes` continuing from `crc` (start with 0).
uint64_t crc64(uint64_t crc, std::string_view bytes);

// "crc64:<16 lowercase hex digits>" of the open file `file` (any driver, read access).
std::string metadata_checksum(hid_t file);

// Opens the closed checkpoint `path` alone (POSIX driver), writes its metadata checksum and
// closes it. Throws h5::Error on an HDF5 failure.
void seal_checkpoint(const std::string& path);

// Empty when `file`'s stored checksum matches its contents; else what is wrong (missing, or
// "stored ..., computed ...").
std::string check_seal(hid_t file);

}  // namespace sy::ckpt::detail
