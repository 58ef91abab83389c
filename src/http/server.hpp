// Server: a small HTTP/1.1 server on its own thread and epoll loop (keep-alive, pipelining,
// optional TLS), for the agents' health/metrics API and the cluster API. Never blocks its owner.
#pragma once

#include <openssl/ssl.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "http/request.hpp"
#include "http/response.hpp"

namespace pgfleet::http {

struct ServerOptions {
  std::string address = "127.0.0.1";
  int port = 0;                 // 0: any free port (see Server::port())
  SSL_CTX* tls = nullptr;       // when set, every connection is TLS; not owned, must outlive the server
  Limits limits;
  int max_connections = 256;    // more are accepted and closed at once
  int idle_timeout_ms = 60000;  // keep-alive connections idle this long are closed
  bool reuse_port = false;      // SO_REUSEPORT: a successor process may bind while this one drains
};

// Handlers run on the server's thread, one request at a time: keep them short (no waiting on
// the HA loop), they delay every other request.
class Server {
 public:
  Server(ServerOptions options, Router router);
  ~Server();  // stops and joins
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and listens (throws std::runtime_error naming the address and errno), then serves
  // on a new thread.
  void start();
  void stop();
  [[nodiscard]] int port() const { return port_; }

 private:
  struct Impl;
  void run();

  ServerOptions options_;
  Router router_;
  int listen_fd_ = -1;
  int wake_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace pgfleet::http
