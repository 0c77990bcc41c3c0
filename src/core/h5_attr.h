// Scalar HDF5 attributes, written and read the same way by every file switchyard owns
// (checkpoints, token files, co-activation files): strings are variable-length UTF-8, as h5py
// writes them; readers also take fixed-length strings (h5dump and C writers make those).
// Header-only like src/core/h5.h, and included only by code that links HDF5.
//
// The readers throw h5::AttrError("attribute '<name>' ...") when the attribute is absent, not a
// single value, or of another class; callers add the file's name. (A failed HDF5 call is still
// h5::Error, a different type.)
#pragma once

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "src/core/h5.h"

namespace sy::h5 {

// An attribute that is absent, not a single value, or of another class than the reader's.
class AttrError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The name of a datatype class, as messages say it: "integer", "float", "string", ...
inline const char* class_name(H5T_class_t c) {
  switch (c) {
    case H5T_INTEGER:
      return "integer";
    case H5T_FLOAT:
      return "float";
    case H5T_STRING:
      return "string";
    case H5T_COMPOUND:
      return "compound";
    case H5T_ARRAY:
      return "array";
    case H5T_ENUM:
      return "enum";
    default:
      return "non-numeric";
  }
}

namespace detail {

inline Datatype vlen_utf8() {
  Datatype t{H5_CHECK(H5Tcopy(H5T_C_S1))};
  H5_CHECK(H5Tset_size(t, H5T_VARIABLE));
  H5_CHECK(H5Tset_cset(t, H5T_CSET_UTF8));
  return t;
}

// Creates (or replaces) a scalar attribute and writes one value of `mem_type` from `value`.
inline void write_scalar(hid_t obj, const char* name, hid_t file_type, hid_t mem_type,
                         const void* value) {
  if (H5_CHECK(H5Aexists(obj, name)) > 0) H5_CHECK(H5Adelete(obj, name));
  Dataspace scalar{H5_CHECK(H5Screate(H5S_SCALAR))};
  Attribute a{H5_CHECK(H5Acreate2(obj, name, file_type, scalar, H5P_DEFAULT, H5P_DEFAULT))};
  H5_CHECK(H5Awrite(a, mem_type, value));
}

// The attribute, checked to hold one value of class `want`.
inline Attribute open_scalar(hid_t obj, const char* name, H5T_class_t want) {
  const std::string attr = std::string("attribute '") + name + "'";
  if (H5_CHECK(H5Aexists(obj, name)) <= 0) throw AttrError(attr + " missing");
  Attribute a{H5_CHECK(H5Aopen(obj, name, H5P_DEFAULT))};
  Datatype t{H5_CHECK(H5Aget_type(a))};
  Dataspace s{H5_CHECK(H5Aget_space(a))};
  if (H5_CHECK(H5Sget_simple_extent_npoints(s)) != 1)
    throw AttrError(attr + " must be a single value");
  if (const H5T_class_t got = H5_CHECK(H5Tget_class(t)); got != want)
    throw AttrError(attr + " must be " + (want == H5T_INTEGER ? "an " : "a ") + class_name(want) +
                    ", it is " + class_name(got));
  return a;
}

}  // namespace detail

inline void write_attr(hid_t obj, const char* name, const std::string& value) {
  const Datatype t = detail::vlen_utf8();
  const char* text = value.c_str();
  detail::write_scalar(obj, name, t, t, &text);
}
inline void write_attr(hid_t obj, const char* name, int64_t value) {
  detail::write_scalar(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}
inline void write_attr(hid_t obj, const char* name, uint64_t value) {
  detail::write_scalar(obj, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &value);
}
inline void write_attr(hid_t obj, const char* name, double value) {
  detail::write_scalar(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value);
}

inline bool has_attr(hid_t obj, const char* name) {
  return H5_CHECK(H5Aexists(obj, name)) > 0;
}

inline std::string read_attr_string(hid_t obj, const char* name) {
  Attribute a = detail::open_scalar(obj, name, H5T_STRING);
  Datatype t{H5_CHECK(H5Aget_type(a))};
  if (H5_CHECK(H5Tis_variable_str(t)) > 0) {
    // In the stored character set: HDF5 has no conversion between ASCII and UTF-8 (h5py and C
    // writers make variable-length ASCII too).
    const Datatype mem = detail::vlen_utf8();
    H5_CHECK(H5Tset_cset(mem, H5Tget_cset(t)));
    char* text = nullptr;
    H5_CHECK(H5Aread(a, mem, &text));
    std::string out = text ? text : "";
    H5free_memory(text);
    return out;
  }
  // Fixed length, read as stored (a same-size null-terminated memory type would drop the last
  // character of a full-width string); null- or space-padded.
  std::string out(H5Tget_size(t), '\0');
  H5_CHECK(H5Aread(a, t, out.data()));
  out.resize(std::strlen(out.c_str()));
  if (H5Tget_strpad(t) == H5T_STR_SPACEPAD)
    while (!out.empty() && out.back() == ' ') out.pop_back();
  return out;
}

namespace detail {
// One value of class `want`, read as `mem_type` (HDF5 converts within the class).
template <class V>
V read_number(hid_t obj, const char* name, H5T_class_t want, hid_t mem_type) {
  Attribute a = open_scalar(obj, name, want);
  V v{};
  H5_CHECK(H5Aread(a, mem_type, &v));
  return v;
}
}  // namespace detail

inline int64_t read_attr_i64(hid_t obj, const char* name) {
  return detail::read_number<int64_t>(obj, name, H5T_INTEGER, H5T_NATIVE_INT64);
}
inline uint64_t read_attr_u64(hid_t obj, const char* name) {
  return detail::read_number<uint64_t>(obj, name, H5T_INTEGER, H5T_NATIVE_UINT64);
}
inline double read_attr_f64(hid_t obj, const char* name) {
  return detail::read_number<double>(obj, name, H5T_FLOAT, H5T_NATIVE_DOUBLE);
}

}  // namespace sy::h5
