// The dashboard in real headless Chromium, driven through chromedriver's W3C WebDriver HTTP API:
// the page shows what /api/cluster says, screenshots at 1280x800 and 240x240 are kept in the
// build directory, and a switchover and a failover reach both pages within 2 s of the API.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "harness.hpp"
#include "util/process.hpp"

namespace pgfleet::itest {
namespace {

using Clock = std::chrono::steady_clock;

struct HttpReply {
  int status = 0;
  std::string body;
};

// One HTTP/1.1 request to 127.0.0.1:port with Connection: close; throws on a socket error.
HttpReply http_request(int port, const std::string& method, const std::string& path, const std::string& body = "",
                       const std::string& accept = "application/json") {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket");
  timeval tv{30, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    throw std::runtime_error("connect to port " + std::to_string(port) + " failed");
  }
  std::string req = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                    "\r\nAccept: " + accept + "\r\nConnection: close\r\n";
  if (!body.empty() || method == "POST") {
    req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  }
  req += "\r\n" + body;
  for (size_t done = 0; done < req.size();) {
    ssize_t n = ::send(fd, req.data() + done, req.size() - done, MSG_NOSIGNAL);
    if (n <= 0) {
      ::close(fd);
      throw std::runtime_error("send failed");
    }
    done += static_cast<size_t>(n);
  }
  // Read until the body is complete (Content-Length, last chunk) or the peer closes: chromedriver
  // keeps connections open whatever the request says.
  std::string raw;
  char buf[65536];
  auto complete = [&] {
    size_t end = raw.find("\r\n\r\n");
    if (end == std::string::npos) return false;
    std::string head = raw.substr(0, end);
    for (auto& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (auto at = head.find("content-length:"); at != std::string::npos) {
      return raw.size() >= end + 4 + std::stoul(head.substr(at + 15));
    }
    if (head.find("transfer-encoding: chunked") != std::string::npos) return raw.find("\r\n0\r\n\r\n", end) != std::string::npos;
    return false;
  };
  while (!complete()) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    raw.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  size_t head_end = raw.find("\r\n\r\n");
  if (raw.rfind("HTTP/1.", 0) != 0 || head_end == std::string::npos) throw std::runtime_error("bad reply: " + raw);
  HttpReply reply;
  reply.status = std::stoi(raw.substr(9, 3));
  std::string head = raw.substr(0, head_end);
  for (auto& c : head) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::string rest = raw.substr(head_end + 4);
  if (head.find("transfer-encoding: chunked") != std::string::npos) {
    size_t at = 0;
    while (at < rest.size()) {
      size_t eol = rest.find("\r\n", at);
      size_t len = std::stoul(rest.substr(at, eol - at), nullptr, 16);
      if (len == 0) break;
      reply.body += rest.substr(eol + 2, len);
      at = eol + 2 + len + 2;
    }
  } else {
    reply.body = rest;
  }
  return reply;
}

std::string base64_decode(const std::string& in) {
  static const std::string chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  int val = 0, bits = -8;
  for (char c : in) {
    auto pos = chars.find(c);
    if (pos == std::string::npos) continue;
    val = (val << 6) + static_cast<int>(pos);
    bits += 6;
    if (bits >= 0) {
      out.push_back(static_cast<char>((val >> bits) & 0xFF));
      bits -= 8;
    }
  }
  return out;
}

// Width and height from a PNG's IHDR chunk.
std::pair<int, int> png_size(const std::string& png) {
  if (png.size() < 24 || png.compare(1, 3, "PNG") != 0) return {0, 0};
  auto be32 = [&](size_t at) {
    return (static_cast<unsigned char>(png[at]) << 24) | (static_cast<unsigned char>(png[at + 1]) << 16) |
           (static_cast<unsigned char>(png[at + 2]) << 8) | static_cast<unsigned char>(png[at + 3]);
  };
  return {be32(16), be32(20)};
}

// A chromedriver process (ours, ended by pid) and the sessions opened through it.
class Browser {
 public:
  Browser(int port, const std::string& log) : port_(port) {
    pid_ = process::spawn({"chromedriver", "--port=" + std::to_string(port)}, log);
    if (pid_ <= 0) throw std::runtime_error("cannot start chromedriver (scripts/setup.sh installs chromium-driver)");
    bool up = eventually([&] { return http_request(port_, "GET", "/status").status == 200; }, 20s, 100ms);
    if (!up) throw std::runtime_error("chromedriver did not answer on port " + std::to_string(port));
  }
  ~Browser() {
    for (const auto& s : sessions_) {
      try {
        (void)http_request(port_, "DELETE", "/session/" + s);
      } catch (const std::exception&) {
      }
    }
    ::kill(-pid_, SIGTERM);  // its own process group: chromedriver and nothing else of ours
    process::wait_gone(pid_, 10s);
  }
  Browser(const Browser&) = delete;
  Browser& operator=(const Browser&) = delete;

  // A new headless window of exactly width x height CSS pixels (as root: --no-sandbox).
  std::string open(int width, int height) {
    nlohmann::json caps = {
        {"capabilities",
         {{"alwaysMatch",
           {{"browserName", "chrome"},
            {"goog:chromeOptions",
             {{"args", {"--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                        "--hide-scrollbars", "--window-size=" + std::to_string(width) + "," + std::to_string(height)}}}}}}}}};
    auto r = call("POST", "/session", caps);
    std::string id = r["value"]["sessionId"];
    sessions_.push_back(id);
    // The viewport itself, independent of window decorations: what the small screen has.
    call("POST", "/session/" + id + "/goog/cdp/execute",
         {{"cmd", "Emulation.setDeviceMetricsOverride"},
          {"params", {{"width", width}, {"height", height}, {"deviceScaleFactor", 1}, {"mobile", false}}}});
    return id;
  }
  void go(const std::string& session, const std::string& url) {
    call("POST", "/session/" + session + "/url", {{"url", url}});
  }
  nlohmann::json script(const std::string& session, const std::string& js) {
    return call("POST", "/session/" + session + "/execute/sync", {{"script", js}, {"args", nlohmann::json::array()}})["value"];
  }
  std::string screenshot(const std::string& session) {
    return base64_decode(call("GET", "/session/" + session + "/screenshot", nullptr)["value"].get<std::string>());
  }

 private:
  nlohmann::json call(const std::string& method, const std::string& path, const nlohmann::json& body) {
    auto r = http_request(port_, method, path, body.is_null() ? "" : body.dump());
    auto j = nlohmann::json::parse(r.body);
    if (r.status != 200) throw std::runtime_error(method + " " + path + ": " + r.body);
    return j;
  }
  int port_;
  pid_t pid_ = -1;
  std::vector<std::string> sessions_;
};

// What the dashboard page shows, read from its DOM.
constexpr const char* kReadDashboard = R"js(
  return {
    leader: document.body.dataset.leader ?? null,
    badge: document.getElementById("primary-badge").textContent,
    nodes: [...document.querySelectorAll("#cards .card")].map(c => ({
      name: c.dataset.node, role: c.dataset.role, state: c.querySelector(".st").textContent,
      roleText: c.querySelector(".role").textContent, tps: c.querySelector(".tps").textContent,
      pending: c.querySelector(".pending")?.textContent ?? null,
      tags: c.querySelector(".tags")?.textContent ?? null })),
    edges: [...document.querySelectorAll("#topo line")].map(l => l.dataset.edge),
    events: [...document.querySelectorAll("#event-list li")].map(li => li.dataset.kind + " " + li.textContent),
    connection: document.getElementById("conn").textContent,
    backup: document.getElementById("backup").hidden ? null : document.getElementById("backup").textContent,
  };)js";

constexpr const char* kReadDisplay = R"js(
  return {
    leader: document.body.dataset.leader ?? null,
    primary: document.getElementById("primary").textContent,
    nodes: [...document.querySelectorAll("#nodes .n")].map(n => ({ name: n.dataset.node, role: n.dataset.role })),
    width: document.documentElement.scrollWidth, height: document.documentElement.scrollHeight,
    innerWidth: window.innerWidth, innerHeight: window.innerHeight,
  };)js";

class DashboardTest : public PgfleetTest {
 protected:
  int http_port() { return base_port_ + 3; }
  nlohmann::json api() { return nlohmann::json::parse(http_request(http_port(), "GET", "/api/cluster").body); }
  std::string artifacts() {
    auto dir = std::filesystem::current_path() / "dashboard-artifacts";
    std::filesystem::create_directories(dir);
    return dir.string();
  }
  void save(const std::string& name, const std::string& png) {
    std::ofstream(artifacts() + "/" + name, std::ios::binary) << png;
    std::cout << "screenshot: " << artifacts() << "/" << name << "\n";
  }
};

// The page's node list agrees with the API's: same names in order, same roles and states.
bool same_nodes(const nlohmann::json& page, const nlohmann::json& api, bool with_state) {
  if (page["nodes"].size() != api["nodes"].size()) return false;
  for (size_t i = 0; i < api["nodes"].size(); ++i) {
    const auto &p = page["nodes"][i], a = api["nodes"][i];
    if (p["name"] != a["name"] || p["role"] != a["role"]) return false;
    if (with_state && p["state"] != a["state"]) return false;
  }
  return page["leader"] == api["leader"];
}

TEST_F(DashboardTest, ChromiumShowsTheClusterAsTheApiDoesAndSwitchoverAndFailoverWithinTwoSeconds) {
  ASSERT_NO_FATAL_FAILURE(start_cluster());
  auto status = status_json();
  std::string dashboard = str(status, "dashboard_url");
  ASSERT_EQ(dashboard, "http://127.0.0.1:" + std::to_string(http_port()) + "/") << status.dump(2);
  // Browsers get the page at /, other clients JSON; /display is always the page.
  EXPECT_NE(http_request(http_port(), "GET", "/", "", "text/html").body.find("<title>pgfleet dashboard"), std::string::npos);
  auto agent_root = http_request(static_cast<int>(num(node_status("node1"), "api_port")), "GET", "/", "",
                                 "text/html,application/xhtml+xml");
  EXPECT_NE(agent_root.body.find("<title>pgfleet dashboard"), std::string::npos) << "agents serve the page too";
  // Load through the proxy, so the page has TPS and a traffic split to show.
  std::string proxy = with_param(url({"--proxy"}), "connect_timeout=5");
  sql(proxy, "CREATE TABLE t (id int)");
  std::atomic<bool> stop{false};
  std::thread load([&] {
    for (int i = 0; !stop; ++i) (void)try_sql(proxy, "INSERT INTO t VALUES (" + std::to_string(i) + ")", 5s);
  });
  struct Join {
    std::atomic<bool>& stop;
    std::thread& t;
    ~Join() {
      stop = true;
      if (t.joinable()) t.join();
    }
  } join{stop, load};

  Browser browser(base_port_ + 90, tmp_ + "/chromedriver.log");
  std::string big = browser.open(1280, 800);
  std::string small = browser.open(240, 240);
  browser.go(big, dashboard);
  browser.go(small, dashboard + "display");

  nlohmann::json page, disp, truth;
  ASSERT_TRUE(eventually([&] {
    truth = api();
    page = browser.script(big, kReadDashboard);
    return same_nodes(page, truth, true);
  }, 20s, 200ms)) << "page: " << page.dump(2) << "\napi: " << truth.dump(2);
  EXPECT_EQ(page["badge"], "node1");
  EXPECT_EQ(page["nodes"][0]["roleText"], "primary");
  EXPECT_EQ(page["edges"], (nlohmann::json{"node1->node2", "node1->node3"}));
  ASSERT_TRUE(eventually([&] {
    truth = api();
    disp = browser.script(small, kReadDisplay);
    return same_nodes(disp, truth, false) && disp["primary"] == truth["leader"];
  }, 20s, 200ms)) << "display: " << disp.dump(2) << "\napi: " << truth.dump(2);
  // Exactly 240x240 and nothing spills out of it.
  EXPECT_EQ(disp["innerWidth"], 240);
  EXPECT_EQ(disp["innerHeight"], 240);
  EXPECT_LE(disp["width"].get<int>(), 240);
  EXPECT_LE(disp["height"].get<int>(), 240);
  // The primary's TPS is a number once the agent has two samples under load.
  ASSERT_TRUE(eventually([&] {
    page = browser.script(big, kReadDashboard);
    return page["nodes"][0]["tps"] != "–" && std::stod(page["nodes"][0]["tps"].get<std::string>()) > 0;
  }, 15s, 250ms)) << page.dump(2);

  // A backup shows in the header with its age.
  EXPECT_TRUE(page["backup"].is_null()) << page.dump(2);
  auto backup = pgfleet({"backup"});
  ASSERT_TRUE(backup.ok()) << backup.output;
  ASSERT_TRUE(eventually([&] {
    page = browser.script(big, kReadDashboard);
    return page["backup"].is_string() && page["backup"].get<std::string>().find(" s ago") != std::string::npos;
  }, 10s, 250ms)) << page.dump(2);
  EXPECT_TRUE(page["backup"].get<std::string>().starts_with("last backup ")) << page.dump(2);

  // A parameter reloaded that waits for a restart shows on every node's card, a tag on its node's.
  EXPECT_TRUE(page["nodes"][0]["pending"].is_null()) << page.dump(2);
  EXPECT_TRUE(page["nodes"][2]["tags"].is_null()) << page.dump(2);
  ASSERT_NO_FATAL_FAILURE(add_postgresql_parameters("  shared_buffers: 64MB\n"));
  ASSERT_NO_FATAL_FAILURE(add_node_settings("node3", "    noloadbalance: true\n"));
  auto reload = pgfleet({"reload"});
  ASSERT_TRUE(reload.ok()) << reload.output;
  ASSERT_TRUE(eventually([&] {
    page = browser.script(big, kReadDashboard);
    for (const auto& n : page["nodes"])
      if (n["pending"] != "pending restart: shared_buffers") return false;
    return page["nodes"][2]["tags"] == "tags: noloadbalance" && page["nodes"][1]["tags"].is_null();
  }, 15s, 250ms)) << page.dump(2);

  auto shot = browser.screenshot(big);
  EXPECT_EQ(png_size(shot), std::make_pair(1280, 800));
  save("dashboard-1280x800.png", shot);
  shot = browser.screenshot(small);
  EXPECT_EQ(png_size(shot), std::make_pair(240, 240));
  save("display-240x240.png", shot);

  // A switchover while both pages are open: each shows node2 as primary within 2 s of the API.
  CmdResult sw;
  std::thread switcher([&] { sw = pgfleet({"switchover", "--to", "node2"}, 120s); });
  // Clock::time_point{} = not seen yet (plain values: GCC's maybe-uninitialized misfires on optionals).
  const Clock::time_point never{};
  Clock::time_point api_at{}, page_at{}, display_at{};
  auto deadline = Clock::now() + 90s;
  while (Clock::now() < deadline && (api_at == never || page_at == never || display_at == never)) {
    auto now = Clock::now();
    try {
      if (api_at == never && api()["leader"] == "node2") api_at = now;
      if (page_at == never && browser.script(big, kReadDashboard)["leader"] == "node2") page_at = Clock::now();
      if (display_at == never && browser.script(small, kReadDisplay)["primary"] == "node2") display_at = Clock::now();
    } catch (const std::exception&) {
    }
    std::this_thread::sleep_for(50ms);
  }
  switcher.join();
  ASSERT_TRUE(sw.ok()) << sw.output;
  ASSERT_TRUE(api_at != never && page_at != never && display_at != never)
      << "api " << (api_at != never) << " page " << (page_at != never) << " display " << (display_at != never);
  auto ms = [&](Clock::time_point t) { return std::chrono::duration_cast<std::chrono::milliseconds>(t - api_at).count(); };
  std::cout << "new primary on the dashboard " << ms(page_at) << " ms and on /display " << ms(display_at)
            << " ms after /api/cluster\n";
  EXPECT_LE(ms(page_at), 2000);
  EXPECT_LE(ms(display_at), 2000);

  // The timeline records it; the topology redraws from the new primary.
  ASSERT_TRUE(eventually([&] {
    page = browser.script(big, kReadDashboard);
    bool listed = false;
    for (const auto& e : page["events"]) listed |= e.get<std::string>().find("switchover from node1 to node2") != std::string::npos;
    return listed && same_nodes(page, api(), false) && page["edges"].size() == 2 &&
           page["edges"][0].get<std::string>().rfind("node2->", 0) == 0;
  }, 30s, 250ms)) << page.dump(2);
  save("dashboard-after-switchover-1280x800.png", browser.screenshot(big));
  save("display-after-switchover-240x240.png", browser.screenshot(small));

  // An unplanned failover: the new primary's host dies (agent and postmaster). Whoever the
  // API names next, both pages name within 2 s; the dead node shows as down.
  auto lost = node_status("node2");
  ASSERT_EQ(::kill(static_cast<pid_t>(num(lost, "agent_pid")), SIGKILL), 0);
  ASSERT_EQ(::kill(static_cast<pid_t>(num(lost, "pid")), SIGKILL), 0);
  std::string elected;
  api_at = page_at = display_at = never;
  deadline = Clock::now() + 90s;
  while (Clock::now() < deadline && (api_at == never || page_at == never || display_at == never)) {
    try {
      if (api_at == never) {
        auto now_api = api();
        std::string leader = now_api["leader"].is_string() ? now_api["leader"].get<std::string>() : "";
        if (!leader.empty() && leader != "node2") elected = leader, api_at = Clock::now();
      }
      if (api_at != never && page_at == never && browser.script(big, kReadDashboard)["leader"] == elected) page_at = Clock::now();
      if (api_at != never && display_at == never && browser.script(small, kReadDisplay)["primary"] == elected) display_at = Clock::now();
    } catch (const std::exception&) {
    }
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(api_at != never && page_at != never && display_at != never)
      << "api " << (api_at != never) << " page " << (page_at != never) << " display " << (display_at != never) << "\n" << api().dump(2);
  std::cout << "failover to " << elected << ": dashboard " << ms(page_at) << " ms, /display " << ms(display_at)
            << " ms after /api/cluster\n";
  EXPECT_LE(ms(page_at), 2000);
  EXPECT_LE(ms(display_at), 2000);
  ASSERT_TRUE(eventually([&] {
    page = browser.script(big, kReadDashboard);
    bool failover = false;
    for (const auto& e : page["events"]) failover |= e.get<std::string>().rfind("failover", 0) == 0;
    const auto& n2 = page["nodes"][1];
    return failover && n2["name"] == "node2" && n2["state"] != "running" && n2["state"] != "streaming";
  }, 20s, 250ms)) << page.dump(2);
  save("dashboard-after-failover-1280x800.png", browser.screenshot(big));
  save("display-after-failover-240x240.png", browser.screenshot(small));
}

}  // namespace
}  // namespace pgfleet::itest
