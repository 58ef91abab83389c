// UserError: a problem the person running pgfleet can fix; main() prints it and exits non-zero.
#pragma once

#include <stdexcept>
#include <string>

namespace pgfleet {

// `what()` says what is wrong; `hint` says what to do about it (may be empty).
struct UserError : std::runtime_error {
  UserError(const std::string& message, std::string hint_text = {})
      : std::runtime_error(message), hint(std::move(hint_text)) {}
  std::string hint;
};

}  // namespace pgfleet
