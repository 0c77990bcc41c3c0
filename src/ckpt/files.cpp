#include "src/ckpt/files.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <sstream>

#include "src/ckpt/checkpoint.h"
#include "src/core/durable_file.h"

namespace sy::ckpt {

std::string checkpoint_file_name(int64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "step_%08lld.h5", static_cast<long long>(step));
  return buf;
}

int64_t step_of_file_name(const std::string& name) {
  constexpr std::string_view prefix = "step_", suffix = ".h5";
  if (name.size() < prefix.size() + 8 + suffix.size() || !name.starts_with(prefix) ||
      !name.ends_with(suffix))
    return -1;
  const std::string digits =
      name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  if (digits.find_first_not_of("0123456789") != std::string::npos || digits.size() > 18) return -1;
  return std::stoll(digits);
}

namespace files {

namespace fs = std::filesystem;

std::optional<std::string> read_latest(const std::string& dir) {
  const fs::path p = fs::path(dir) / "latest";
  std::error_code ec;
  if (!fs::exists(p, ec)) return std::nullopt;
  std::ifstream in(p);
  std::string name;
  in >> name;  // one token: the file name, whitespace trimmed
  return name;
}

std::vector<StepFile> list_step_files(const std::string& dir) {
  std::vector<StepFile> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const int64_t step = step_of_file_name(entry.path().filename().string());
    if (step >= 0 && entry.is_regular_file(ec)) out.push_back({step, entry.path().string()});
  }
  std::sort(out.begin(), out.end(),
            [](const StepFile& a, const StepFile& b) { return a.step < b.step; });
  return out;
}

namespace {
// Every file in `dir` named a step file's name followed by one of `suffixes`, by name.
std::vector<std::string> step_files_with_suffix(const std::string& dir,
                                                std::initializer_list<std::string_view> suffixes) {
  std::vector<std::string> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    for (const std::string_view suffix : suffixes)
      if (name.ends_with(suffix) &&
          step_of_file_name(name.substr(0, name.size() - suffix.size())) >= 0) {
        out.push_back(entry.path().string());
        break;
      }
  }
  std::sort(out.begin(), out.end());
  return out;
}
}  // namespace

std::vector<std::string> list_temp_files(const std::string& dir) {
  const std::string spare = std::string(".tmp") + kSpareSuffix;
  return step_files_with_suffix(dir, {".tmp", spare});
}

std::vector<std::string> list_set_aside(const std::string& dir) {
  return step_files_with_suffix(dir, {kNonFiniteSuffix});
}

std::vector<std::string> rotate(const std::string& dir, int64_t new_step, int64_t keep,
                                std::vector<std::string>& notes) {
  std::vector<std::string> removed;
  std::vector<StepFile> older;
  for (auto& f : list_step_files(dir)) {
    if (f.step <= new_step)
      older.push_back(f);
    else
      notes.push_back(f.path + " is of a later step than the checkpoint just written (left by a " +
                      "run resumed from an older checkpoint); kept");
  }
  if (keep > 0 && static_cast<int64_t>(older.size()) > keep) {
    const size_t drop = older.size() - static_cast<size_t>(keep);
    for (size_t i = 0; i < drop; ++i) {
      std::error_code ec;
      if (fs::remove(older[i].path, ec))
        removed.push_back(older[i].path);
      else if (ec)
        notes.push_back("could not remove " + older[i].path + ": " + ec.message());
    }
  }
  return removed;
}

std::vector<std::string> remove_temp_files(const std::string& dir) {
  std::vector<std::string> removed;
  for (const auto& tmp : list_temp_files(dir)) {
    std::error_code ec;
    if (fs::remove(tmp, ec)) removed.push_back(tmp);
  }
  return removed;
}

std::string set_aside(const std::string& dir, int64_t step, const std::vector<int64_t>& previous) {
  const std::string name = checkpoint_file_name(step);
  const std::string path = (fs::path(dir) / name).string();
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return "";
  try {
    sy::files::durable_rename(path, path + kNonFiniteSuffix);
  } catch (const std::exception& e) {
    return path + " could not be set aside (" + std::string(e.what()) +
           "): resume from an earlier checkpoint by its path";
  }
  std::string said = path + " is set aside as " + name + kNonFiniteSuffix;
  if (read_latest(dir) != name) return said;
  const std::string latest = (fs::path(dir) / "latest").string();
  std::optional<std::string> back;  // the newest of `previous` still there
  for (const int64_t p : previous)
    if (p != step && fs::is_regular_file(fs::path(dir) / checkpoint_file_name(p), ec))
      back = checkpoint_file_name(p);
  try {
    if (back) {
      sy::files::atomic_write_text(latest, *back);
      return said + "; latest names " + *back + " again";
    }
    fs::remove(latest);
    return said + "; no earlier checkpoint of this run is left, so latest is removed";
  } catch (const std::exception& e) {
    // --resume auto falls back to the newest step file when latest's target is gone.
    return said + "; latest could not be updated (" + std::string(e.what()) + ")";
  }
}

}  // namespace files
}  // namespace sy::ckpt
