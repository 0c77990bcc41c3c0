// What the config tests share: a minimal config and a check for a UsageError's message.
#pragma once

#include <gtest/gtest.h>

#include <exception>
#include <functional>
#include <string>
#include <vector>

#include "src/core/error.h"

namespace sy::test {

inline const std::string kMinimal = "data:\n  path: tokens.h5\n";

// Runs f, expects a UsageError whose message contains every one of `parts`.
inline void expect_usage_error(const std::function<void()>& f,
                               const std::vector<std::string>& parts,
                               const std::string& label = "") {
  try {
    f();
    ADD_FAILURE() << label << ": no UsageError";
  } catch (const UsageError& e) {
    const std::string msg = e.what();
    for (const auto& p : parts)
      EXPECT_NE(msg.find(p), std::string::npos) << label << ": '" << p << "' not in: " << msg;
  } catch (const std::exception& e) {
    ADD_FAILURE() << label << ": wrong exception type: " << e.what();
  }
}

}  // namespace sy::test
