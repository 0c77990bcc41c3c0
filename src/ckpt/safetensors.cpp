#include "src/ckpt/safetensors.h"

#include <bit>
#include <cstdio>

#include "src/core/durable_file.h"
#include "src/core/utf8.h"

namespace sy::ckpt {

static_assert(std::endian::native == std::endian::little,
              "safetensors and the checkpoints are little-endian; a big-endian host needs swaps");

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size(); ++i) {
    const char ch = s[i];
    const auto c = static_cast<unsigned char>(ch);
    // JSON is UTF-8: a byte of no well-formed sequence (a Latin-1 file name, a config's path)
    // becomes U+FFFD, or safetensors and transformers refuse the whole header.
    if (c >= 0x80) {
      const size_t n = utf8_length(s, i);
      if (n == 0) {
        out += "\\ufffd";
      } else {
        out.append(s, i, n);
        i += n - 1;
      }
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  return out + "\"";
}

void stage_safetensors(files::StagedFiles& staged, const std::string& path,
                       const std::vector<WholeTensor>& tensors,
                       const std::vector<std::pair<std::string, std::string>>& metadata) {
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    for (size_t i = 0; i < metadata.size(); ++i) {
      if (i) header += ",";
      header += json_string(metadata[i].first) + ":" + json_string(metadata[i].second);
    }
    header += "}";
  }
  uint64_t offset = 0;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& t = tensors[i];
    if (i > 0 || !metadata.empty()) header += ",";
    header += json_string(t.path) + ":{\"dtype\":\"F32\",\"shape\":[";
    for (size_t d = 0; d < t.shape.size(); ++d) {
      if (d) header += ",";
      header += std::to_string(t.shape[d]);
    }
    const uint64_t bytes = t.data.size() * sizeof(float);
    header += "],\"data_offsets\":[" + std::to_string(offset) + "," +
              std::to_string(offset + bytes) + "]}";
    offset += bytes;
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' ');  // data starts 8-byte aligned

  staged.stage_stream(path, [&](std::ostream& out) {
    const uint64_t n = header.size();
    out.write(reinterpret_cast<const char*>(&n), sizeof n);
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    for (const auto& t : tensors)
      out.write(reinterpret_cast<const char*>(t.data.data()),
                static_cast<std::streamsize>(t.data.size() * sizeof(float)));
  });
}

void write_safetensors(const std::string& path, const std::vector<WholeTensor>& tensors,
                       const std::vector<std::pair<std::string, std::string>>& metadata) {
  try {
    files::StagedFiles staged(files::StagedFiles::kCreateParents);
    stage_safetensors(staged, path, tensors, metadata);
    staged.commit();
  } catch (const std::runtime_error& e) {
    files::throw_output_error("--output '" + path + "'", e.what());
  }
}

}  // namespace sy::ckpt
