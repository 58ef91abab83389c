// HttpClient: a small blocking HTTP/1.1 client (libcurl) for JSON POSTs, plain or streamed.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.hpp"

namespace pgfleet::dcs {

struct HttpTls {
  std::string ca_file;    // verify the server against this CA ("" = system store)
  std::string cert_file;  // client certificate, for servers that require one
  std::string key_file;
  std::string ca_pem;     // or verify against this CA given as PEM text (read from etcd, no file here)
};

struct HttpResponse {
  long status = 0;
  std::string body;
};

// One connection cache per instance; not thread-safe (one thread per instance, like Dcs).
class HttpClient {
 public:
  explicit HttpClient(HttpTls tls = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // POSTs `body` (JSON) to `url`; an error means no HTTP answer arrived (refused, timed out, TLS).
  Result<HttpResponse> post(const std::string& url, std::string_view body,
                            const std::vector<std::string>& headers,
                            std::chrono::milliseconds timeout);

  // POSTs and feeds the response body to `on_data` as it arrives; `on_data` returns false to end
  // the transfer early (that is not an error). Ends without error at `timeout` too. Returns the
  // HTTP status (0 if the transfer was ended before the headers).
  Result<long> post_stream(const std::string& url, std::string_view body,
                           const std::vector<std::string>& headers, std::chrono::milliseconds timeout,
                           const std::function<bool(std::string_view)>& on_data);

 private:
  void* prepare(void* handle, const std::string& url, std::string_view body, std::chrono::milliseconds timeout);

  HttpTls tls_;
  void* easy_ = nullptr;    // CURL*, reused for keep-alive
  void* stream_ = nullptr;  // CURL* for streaming calls (watch), so both can coexist
};

}  // namespace pgfleet::dcs
