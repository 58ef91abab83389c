// The dashboard's pages, compiled into the binary (no CDN, no files to install): the full live
// view at `/`, the 240x240 `/display` page, and the script both share.
#pragma once

namespace pgfleet::dashboard {

extern const char* const kDashboardHtml;  // GET / (browsers)
extern const char* const kDisplayHtml;    // GET /display: exactly 240x240 CSS pixels
extern const char* const kCommonJs;       // GET /dashboard/common.js: polling and formatting

}  // namespace pgfleet::dashboard
