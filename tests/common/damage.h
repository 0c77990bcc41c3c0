// Damaging a checkpoint on purpose (tests of what reading one refuses): a flipped byte, where a
// dataset's first chunk lies in the file, an object header.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "src/core/h5.h"

namespace sy::test {

// XORs the byte at `offset` of `file` with 0x5A.
inline void xor_byte(const std::string& file, int64_t offset) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(offset);
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x5A);
  f.seekp(offset);
  f.write(&c, 1);
}

// File offset and size of chunk 0 of `dataset` (HDF5 1.10.5+ H5Dget_chunk_info), of any rank.
inline std::pair<int64_t, int64_t> first_chunk(const std::string& file, const char* dataset) {
  h5::File f{H5_CHECK(H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT))};
  h5::Dataset ds{H5_CHECK(H5Dopen2(f, dataset, H5P_DEFAULT))};
  h5::Dataspace space{H5_CHECK(H5Dget_space(ds))};
  std::vector<hsize_t> offset(static_cast<size_t>(H5_CHECK(H5Sget_simple_extent_ndims(space))));
  unsigned mask = 0;
  haddr_t addr = 0;
  hsize_t size = 0;
  H5_CHECK(H5Dget_chunk_info(ds, space, 0, offset.data(), &mask, &addr, &size));
  return {static_cast<int64_t>(addr), static_cast<int64_t>(size)};
}

// XORs the byte `offset` bytes into the object header of `object` ("/": the root group's): 0 is
// its "OHDR" signature; from 10 on, what the header's own checksum covers (a load fails its
// checksum; HDF5 1.10.8 then leaks the header, HDFGroup/hdf5#3790).
inline void damage_object_header(const std::string& file, const char* object, int64_t offset) {
  haddr_t addr = 0;
  {
    h5::ErrorSilencer quiet;
    h5::File f{H5_CHECK(H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT))};
    H5O_info_t info{};
    H5_CHECK(H5Oget_info_by_name2(f, object, &info, H5O_INFO_BASIC, H5P_DEFAULT));
    addr = info.addr;
  }
  xor_byte(file, static_cast<int64_t>(addr) + offset);
}

}  // namespace sy::test
