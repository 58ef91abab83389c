// TCP ports: is one free to listen on, and if not, which process holds it.
#pragma once

#include <string>

namespace pgfleet::ports {

// True if a listening socket could be bound on host:port right now.
bool is_free(const std::string& host, int port);
// "postgres (pid 1234)" for the process listening on `port`, or "" when unknown
// (needs /proc access to the holder's fds: root, or the same user).
std::string holder(int port);
// True for "localhost", 127.0.0.0/8 and ::1: traffic that never leaves the host.
bool is_loopback_host(const std::string& host);

}  // namespace pgfleet::ports
