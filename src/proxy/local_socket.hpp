// Unix-socket listeners of the proxy, named .s.PGSQL.<port> as PostgreSQL and PgBouncer name
// theirs, so that `psql -h DIR -p PORT` (or host=DIR in any libpq URI) finds them.
#pragma once

#include <string>

namespace pgfleet::proxy {

std::string local_socket_path(const std::string& dir, int port);

// A non-blocking listening socket at `path`. A socket file left by a process that is gone is
// replaced; a socket that still accepts connections, or a file that is not a socket, is an error
// (std::runtime_error saying which).
int listen_local(const std::string& path);

// The path a Unix socket is bound to; "" for any other socket.
std::string bound_local_path(int fd);

}  // namespace pgfleet::proxy
