// Secrets: random passwords and tokens from the kernel's CSPRNG.
#pragma once

#include <string>

namespace pgfleet {

// `length` characters from [A-Za-z0-9], uniformly (rejection sampling); throws if getrandom fails.
std::string random_secret(size_t length = 32);

}  // namespace pgfleet
