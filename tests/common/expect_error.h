// Checks that code fails the way a user must see it fail: a UsageError (exit code 2) whose
// message names every given part (the file, the key, the offset...).
#pragma once

#include <gtest/gtest.h>

#include <exception>
#include <functional>
#include <string>
#include <vector>

#include "src/core/error.h"

namespace sy::test {

inline void expect_usage_error(const std::function<void()>& f,
                               const std::vector<std::string>& parts, const std::string& label) {
  try {
    f();
    ADD_FAILURE() << label << ": no UsageError";
  } catch (const UsageError& e) {
    for (const auto& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
          << label << ": '" << p << "' not in: " << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << label << ": wrong exception type: " << e.what();
  }
}

}  // namespace sy::test
