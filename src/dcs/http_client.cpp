// HttpClient over libcurl easy handles: keep-alive connections, bounded timeouts, optional TLS.
#include "dcs/http_client.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <mutex>

namespace pgfleet::dcs {
namespace {

void global_init() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct CurlHeaders {
  curl_slist* list = nullptr;
  CurlHeaders() = default;
  CurlHeaders(const CurlHeaders&) = delete;
  CurlHeaders& operator=(const CurlHeaders&) = delete;
  ~CurlHeaders() { curl_slist_free_all(list); }
};

size_t append_body(char* data, size_t size, size_t count, void* user) {
  static_cast<std::string*>(user)->append(data, size * count);
  return size * count;
}

struct StreamState {
  const std::function<bool(std::string_view)>* on_data;
  bool stopped = false;
};

size_t feed_stream(char* data, size_t size, size_t count, void* user) {
  auto* state = static_cast<StreamState*>(user);
  if (!(*state->on_data)(std::string_view(data, size * count))) {
    state->stopped = true;
    return 0;  // curl ends the transfer with CURLE_WRITE_ERROR
  }
  return size * count;
}

}  // namespace

HttpClient::HttpClient(HttpTls tls) : tls_(std::move(tls)) { global_init(); }

HttpClient::~HttpClient() {
  if (easy_) curl_easy_cleanup(static_cast<CURL*>(easy_));
  if (stream_) curl_easy_cleanup(static_cast<CURL*>(stream_));
}

void* HttpClient::prepare(void* handle, const std::string& url, std::string_view body,
                          std::chrono::milliseconds timeout) {
  auto* curl = static_cast<CURL*>(handle);
  if (!curl) curl = curl_easy_init();
  curl_easy_reset(curl);  // keeps the connection cache
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_POST, 1L);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  curl_easy_setopt(curl, CURLOPT_COPYPOSTFIELDS, std::string(body).c_str());
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  // At least 1 ms: curl reads 0 as "no timeout", and a request must never wait forever.
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, std::max(1L, static_cast<long>(timeout.count())));
  // A dead endpoint must cost little of the lease: connecting gets at most a third of the budget.
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, std::max(100L, static_cast<long>(timeout.count() / 3)));
  curl_easy_setopt(curl, CURLOPT_TCP_NODELAY, 1L);
  if (!tls_.ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, tls_.ca_file.c_str());
  if (!tls_.ca_pem.empty()) {
    curl_blob blob{tls_.ca_pem.data(), tls_.ca_pem.size(), CURL_BLOB_NOCOPY};  // tls_ outlives the handle's use
    curl_easy_setopt(curl, CURLOPT_CAINFO_BLOB, &blob);
  }
  if (!tls_.cert_file.empty()) curl_easy_setopt(curl, CURLOPT_SSLCERT, tls_.cert_file.c_str());
  if (!tls_.key_file.empty()) curl_easy_setopt(curl, CURLOPT_SSLKEY, tls_.key_file.c_str());
  return curl;
}

Result<HttpResponse> HttpClient::post(const std::string& url, std::string_view body,
                                      const std::vector<std::string>& headers,
                                      std::chrono::milliseconds timeout) {
  easy_ = prepare(easy_, url, body, timeout);
  auto* curl = static_cast<CURL*>(easy_);
  CurlHeaders h;
  h.list = curl_slist_append(h.list, "Content-Type: application/json");
  for (const auto& header : headers) h.list = curl_slist_append(h.list, header.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h.list);
  HttpResponse response;
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, append_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &response.body);
  const CURLcode rc = curl_easy_perform(curl);
  if (rc != CURLE_OK) return make_error(url + ": " + curl_easy_strerror(rc));
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &response.status);
  return response;
}

Result<long> HttpClient::post_stream(const std::string& url, std::string_view body,
                                     const std::vector<std::string>& headers,
                                     std::chrono::milliseconds timeout,
                                     const std::function<bool(std::string_view)>& on_data) {
  stream_ = prepare(stream_, url, body, timeout);
  auto* curl = static_cast<CURL*>(stream_);
  CurlHeaders h;
  h.list = curl_slist_append(h.list, "Content-Type: application/json");
  for (const auto& header : headers) h.list = curl_slist_append(h.list, header.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, h.list);
  StreamState state{&on_data};
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, feed_stream);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &state);
  const CURLcode rc = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  if (rc == CURLE_OK || (rc == CURLE_WRITE_ERROR && state.stopped)) return status;
  // The stream ran for the whole timeout: a quiet watch, not a failure, once it was answered.
  if (rc == CURLE_OPERATION_TIMEDOUT && status != 0) return status;
  return make_error(url + ": " + curl_easy_strerror(rc));
}

}  // namespace pgfleet::dcs
