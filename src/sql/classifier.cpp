#include "sql/classifier.hpp"

#include <pg_query.h>
#include <pthread.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <exception>
#include <list>
#include <unordered_map>
#include <utility>

#include "sql/functions.hpp"
#include "sql/json_tree.hpp"

namespace pgfleet::sql {

const char* to_string(Route route) {
  return route == Route::Primary ? "primary" : "replica";
}

namespace {

using Value = JsonTree::Value;

// ---------------------------------------------------------------------------------------------------------------
// Hints

char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool is_word_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_';
}

// "pgfleet:primary" or "pgfleet:replica" (any case, blanks allowed after the colon) anywhere in a comment's text.
std::optional<Route> hint_in_comment(std::string_view body) {
  static constexpr std::string_view kTag = "pgfleet:";
  for (std::size_t i = 0; i + kTag.size() <= body.size(); ++i) {
    std::size_t k = 0;
    while (k < kTag.size() && ascii_lower(body[i + k]) == kTag[k]) ++k;
    if (k < kTag.size()) continue;
    if (i > 0 && is_word_char(body[i - 1])) continue;
    std::size_t j = i + kTag.size();
    while (j < body.size() && (body[j] == ' ' || body[j] == '\t')) ++j;
    std::string word;
    while (j < body.size() && is_word_char(body[j])) word += ascii_lower(body[j++]);
    if (word == "primary") return Route::Primary;
    if (word == "replica") return Route::Replica;
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------------------------
// Reading libpg_query's JSON parse tree. Fields at their default (false, 0, empty) are left out of it.

// A Node is an object with one member: {"SelectStmt": {...}}. Returns its type and body (absent if not a Node).
std::pair<std::string_view, Value> unwrap(Value node) {
  if (!node.is_object() || node.size() != 1) return {{}, {}};
  Value body = *node.begin();
  return {body.key(), body};
}

// The strings of a list of String nodes (qualified names): [{"String":{"sval":"pg_catalog"}}, ...].
std::vector<std::string_view> name_list(Value list) {
  std::vector<std::string_view> out;
  for (Value item : list) {
    auto [type, body] = unwrap(item);
    if (type == "String") out.push_back(body["sval"].str());
  }
  return out;
}

// The value of a DefElem's argument as PostgreSQL's defGetBoolean reads it: no argument means true.
bool def_bool(Value def_elem) {
  Value arg = def_elem["arg"];
  if (!arg.present()) return true;
  auto [type, body] = unwrap(arg);
  if (!body.present()) return true;
  if (type == "A_Const") {
    if (Value ival = body["ival"]; ival.present()) return ival["ival"].integer() != 0;
    if (Value bval = body["boolval"]; bval.present()) return bval["boolval"].boolean();
    if (Value sval = body["sval"]; sval.present()) body = sval;
  }
  if (type == "Integer") return body["ival"].integer() != 0;
  if (type == "Boolean") return body["boolval"].boolean();
  std::string s;
  for (char c : body["sval"].str()) s += ascii_lower(c);
  return !(s == "false" || s == "off" || s == "no" || s == "0" || s == "f" || s == "n" || s == "of");
}

// The string value of a DefElem's A_Const argument ("serializable" for transaction_isolation).
std::string_view def_string(Value def_elem) {
  auto [type, body] = unwrap(def_elem["arg"]);
  if (type != "A_Const") return {};
  return body["sval"]["sval"].str();
}

bool is_temp_schema(std::string_view schema) {
  return schema == "pg_temp" || (schema.starts_with("pg_temp_") && schema.size() > 8);
}

// "AlterTableStmt" -> "ALTER TABLE": the generic name of a statement type for reasons.
std::string generic_statement_name(std::string_view type) {
  if (type.ends_with("Stmt")) type.remove_suffix(4);
  std::string out;
  for (std::size_t i = 0; i < type.size(); ++i) {
    char c = type[i];
    if (i > 0 && std::isupper(static_cast<unsigned char>(c)) != 0 &&
        std::islower(static_cast<unsigned char>(type[i - 1])) != 0) {
      out += ' ';
    }
    out += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  }
  return out;
}

std::string statement_name(std::string_view type, Value body) {
  struct Name {
    std::string_view type;
    const char* name;
  };
  static constexpr Name kNames[] = {
      {"InsertStmt", "INSERT"},
      {"UpdateStmt", "UPDATE"},
      {"DeleteStmt", "DELETE"},
      {"MergeStmt", "MERGE"},
      {"CreateStmt", "CREATE TABLE"},
      {"IndexStmt", "CREATE INDEX"},
      {"ViewStmt", "CREATE VIEW"},
      {"CreateSeqStmt", "CREATE SEQUENCE"},
      {"AlterSeqStmt", "ALTER SEQUENCE"},
      {"CreateTrigStmt", "CREATE TRIGGER"},
      {"RuleStmt", "CREATE RULE"},
      {"CreatedbStmt", "CREATE DATABASE"},
      {"DropdbStmt", "DROP DATABASE"},
      {"DropStmt", "DROP"},
      {"TruncateStmt", "TRUNCATE"},
      {"RenameStmt", "ALTER ... RENAME"},
      {"RefreshMatViewStmt", "REFRESH MATERIALIZED VIEW"},
      {"CheckPointStmt", "CHECKPOINT"},
      {"SecLabelStmt", "SECURITY LABEL"},
      {"CommentStmt", "COMMENT"},
      {"LockStmt", "LOCK"},
      {"CallStmt", "CALL"},
      {"DoStmt", "DO"},
      {"ListenStmt", "LISTEN"},
      {"UnlistenStmt", "UNLISTEN"},
      {"NotifyStmt", "NOTIFY"},
      {"DiscardStmt", "DISCARD"},
      {"PrepareStmt", "PREPARE"},
      {"DeallocateStmt", "DEALLOCATE"},
      {"ExecuteStmt", "EXECUTE"},
      {"LoadStmt", "LOAD"},
      {"ClosePortalStmt", "CLOSE"},
      {"ConstraintsSetStmt", "SET CONSTRAINTS"},
      {"AlterSystemStmt", "ALTER SYSTEM"},
      {"CreatePLangStmt", "CREATE LANGUAGE"},
  };
  for (const auto& n : kNames) {
    if (n.type == type) return n.name;
  }
  if (type == "VacuumStmt") return body["is_vacuumcmd"].boolean() ? "VACUUM" : "ANALYZE";
  if (type == "GrantStmt") return body["is_grant"].boolean() ? "GRANT" : "REVOKE";
  if (type == "GrantRoleStmt") return body["is_grant"].boolean() ? "GRANT ROLE" : "REVOKE ROLE";
  if (type == "FetchStmt") return body["ismove"].boolean() ? "MOVE" : "FETCH";
  if (type == "CreateFunctionStmt") return body["is_procedure"].boolean() ? "CREATE PROCEDURE" : "CREATE FUNCTION";
  if (type == "CreateTableAsStmt") {
    return body["objtype"].str() == "OBJECT_MATVIEW" ? "CREATE MATERIALIZED VIEW" : "CREATE TABLE AS";
  }
  return generic_statement_name(type);
}

// ---------------------------------------------------------------------------------------------------------------
// Analysis: everything about a query string that does not depend on the options (cached), plus the functions it
// calls (resolved against the options on every call).

struct FunctionRef {
  std::string schema;  // empty when unqualified
  std::string name;
  std::int64_t location = 0;  // of its first call in the query text
  FunctionKind builtin = FunctionKind::Unknown;
};

struct Analysis {
  Classification base;                 // route and reason from the statements alone; flags; hint
  std::vector<FunctionRef> functions;  // in the order of their first call in the text
};

// One statement's own verdict (the flags go straight into the Analysis).
struct Verdict {
  bool primary = false;
  std::string reason;
};

Verdict replica() {
  return {};
}
Verdict primary(std::string reason) {
  return {true, std::move(reason)};
}

// What a walk over a statement's subtree found.
struct Findings {
  std::string dml;      // a data-modifying statement nested in a query (WITH ... INSERT)
  std::string locking;  // "FOR UPDATE", ...
  bool into = false;    // SELECT ... INTO
  bool temp = false;    // a temp relation, or a name qualified with pg_temp
};

const char* locking_name(std::string_view strength) {
  if (strength == "LCS_FORKEYSHARE") return "FOR KEY SHARE";
  if (strength == "LCS_FORSHARE") return "FOR SHARE";
  if (strength == "LCS_FORNOKEYUPDATE") return "FOR NO KEY UPDATE";
  return "FOR UPDATE";
}

bool is_dml(std::string_view type) {
  return type == "InsertStmt" || type == "UpdateStmt" || type == "DeleteStmt" || type == "MergeStmt";
}

// CURSOR_OPT_HOLD in PostgreSQL's parsenodes.h.
constexpr std::int64_t kCursorOptHold = 0x0020;

class Analyzer {
 public:
  explicit Analyzer(Analysis& out) : out_(out) {}

  void top_level(Value stmt) {
    Verdict v = statement(stmt);
    if (v.primary) require_primary(std::move(v.reason));
  }

  void require_primary(std::string reason) {
    if (out_.base.route == Route::Primary) return;
    out_.base.route = Route::Primary;
    out_.base.reason = std::move(reason);
  }

 private:
  Classification& flags() { return out_.base; }

  Verdict statement(Value node) {
    auto [type, body] = unwrap(node);
    if (!body.present()) return primary("unrecognised parse tree");

    if (type == "SelectStmt") return select(body);
    if (is_dml(type)) {
      walk(body, true);
      return primary(statement_name(type, body));
    }
    if (type == "VariableShowStmt") return replica();
    if (type == "TransactionStmt") return transaction(body);
    if (type == "VariableSetStmt") return variable_set(body);
    if (type == "ExplainStmt") return explain(body);
    if (type == "CopyStmt") return copy(body);
    if (type == "DeclareCursorStmt") return declare_cursor(body);
    if (type == "DiscardStmt" || type == "PrepareStmt" || type == "DeallocateStmt" || type == "ListenStmt" ||
        type == "UnlistenStmt" || type == "LoadStmt") {
      flags().sets_session_state = true;
      return primary(statement_name(type, body));
    }
    // Everything else changes something (DDL, LOCK, CALL, DO, NOTIFY, VACUUM, ...) or works on state that lives
    // where it was made (EXECUTE, FETCH, CLOSE). Of these only CREATE TABLE AS runs a query whose functions can
    // still add flags (set_config).
    Findings f = walk(body, type == "CreateTableAsStmt");
    std::string name = statement_name(type, body);
    if (f.temp && name.starts_with("CREATE ")) name.insert(7, "TEMP ");
    return primary(std::move(name));
  }

  Verdict select(Value body) {
    Findings f = walk(body, true);
    if (!f.dml.empty()) return primary("WITH ... " + f.dml + " (data-modifying CTE)");
    if (f.into) return primary("SELECT INTO");
    if (!f.locking.empty()) return primary("SELECT ... " + f.locking);
    if (f.temp) return primary("temp table");
    return replica();
  }

  Verdict explain(Value body) {
    bool analyze = false;
    for (Value opt : body["options"]) {
      auto [type, def] = unwrap(opt);
      if (type == "DefElem" && def["defname"].str() == "analyze") analyze = def_bool(def);
    }
    Value query = body["query"];
    if (!query.present()) return primary("EXPLAIN");
    Verdict inner = statement(query);
    if (!inner.primary) return replica();
    return primary((analyze ? "EXPLAIN ANALYZE " : "EXPLAIN ") + inner.reason);
  }

  Verdict copy(Value body) {
    if (body["is_from"].boolean()) {
      walk(body, false);
      return primary("COPY FROM");
    }
    if (body["is_program"].boolean()) return primary("COPY TO PROGRAM");
    if (!body["filename"].str().empty()) return primary("COPY TO file");  // writes a file on the server
    if (Value query = body["query"]; query.present()) {
      Verdict inner = statement(query);
      if (inner.primary) return primary("COPY (" + inner.reason + ")");
      return replica();
    }
    Findings f = walk(body, false);
    if (f.temp) return primary("temp table");
    return replica();
  }

  Verdict declare_cursor(Value body) {
    bool hold = (body["options"].integer() & kCursorOptHold) != 0;
    if (hold) flags().sets_session_state = true;
    Value query = body["query"];
    Verdict inner = query.present() ? statement(query) : primary("DECLARE");
    if (inner.primary) return inner;
    if (hold) return primary("DECLARE ... WITH HOLD");  // the cursor outlives the transaction on its server
    return replica();
  }

  // Transaction characteristics in BEGIN / START TRANSACTION / SET TRANSACTION options.
  struct TransactionMode {
    std::optional<bool> read_only;  // unset: not said
    bool serializable = false;
  };

  static TransactionMode transaction_mode(Value options) {
    TransactionMode mode;
    for (Value opt : options) {
      auto [type, def] = unwrap(opt);
      if (type != "DefElem") continue;
      std::string_view name = def["defname"].str();
      if (name == "transaction_read_only") mode.read_only = def_bool(def);
      if (name == "transaction_isolation") mode.serializable = def_string(def) == "serializable";
    }
    return mode;
  }

  // `read_write_reason` when the mode says READ WRITE, or says nothing and `unsaid_is_read_write` (BEGIN).
  Verdict apply_transaction_mode(const TransactionMode& mode, bool unsaid_is_read_write,
                                 std::string_view read_write_reason) {
    bool read_only = mode.read_only.value_or(false);
    if (read_only) flags().read_only_transaction = true;
    if (mode.serializable) return primary("SERIALIZABLE transaction (hot standbys refuse it)");
    bool read_write = mode.read_only.has_value() ? !read_only : unsaid_is_read_write;
    if (read_write) return primary(std::string(read_write_reason));
    return replica();
  }

  Verdict transaction(Value body) {
    std::string_view kind = body["kind"].str();
    if (kind == "TRANS_STMT_BEGIN" || kind == "TRANS_STMT_START") {
      flags().begins_transaction = true;
      return apply_transaction_mode(
          transaction_mode(body["options"]), true,
          kind == "TRANS_STMT_BEGIN" ? "BEGIN (read-write)" : "START TRANSACTION (read-write)");
    }
    if (kind == "TRANS_STMT_COMMIT" || kind == "TRANS_STMT_ROLLBACK") {
      flags().ends_transaction = true;
      if (body["chain"].boolean()) flags().begins_transaction = true;
      return replica();  // goes wherever the transaction is
    }
    if (kind == "TRANS_STMT_SAVEPOINT" || kind == "TRANS_STMT_RELEASE" || kind == "TRANS_STMT_ROLLBACK_TO") {
      return replica();
    }
    if (kind == "TRANS_STMT_PREPARE") {
      flags().ends_transaction = true;
      return primary("PREPARE TRANSACTION");
    }
    if (kind == "TRANS_STMT_COMMIT_PREPARED") return primary("COMMIT PREPARED");
    if (kind == "TRANS_STMT_ROLLBACK_PREPARED") return primary("ROLLBACK PREPARED");
    return primary("transaction control");
  }

  Verdict variable_set(Value body) {
    std::string_view kind = body["kind"].str();
    std::string_view name = body["name"].str();
    if (kind == "VAR_SET_MULTI" && name == "TRANSACTION") {
      return apply_transaction_mode(transaction_mode(body["args"]), false, "SET TRANSACTION READ WRITE");
    }
    if (kind == "VAR_SET_MULTI" && name == "TRANSACTION SNAPSHOT") return primary("SET TRANSACTION SNAPSHOT");
    if (kind == "VAR_SET_MULTI" && name == "SESSION CHARACTERISTICS") {
      flags().sets_session_state = true;
      return primary("SET SESSION CHARACTERISTICS");
    }
    if (body["is_local"].boolean()) return replica();  // SET LOCAL: ends with the transaction, runs where it is
    flags().sets_session_state = true;
    return primary(kind == "VAR_RESET" || kind == "VAR_RESET_ALL" ? "RESET" : "SET");
  }

  void add_function(Value func_call, Findings& f) {
    std::vector<std::string_view> names = name_list(func_call["funcname"]);
    if (names.empty()) return;
    std::string_view name = names.back();
    std::string_view schema = names.size() >= 2 ? names[names.size() - 2] : std::string_view();
    if (is_temp_schema(schema)) f.temp = true;
    std::int64_t location = func_call["location"].integer();
    for (auto& existing : out_.functions) {
      if (existing.name == name && existing.schema == schema) {
        existing.location = std::min(existing.location, location);
        return;
      }
    }
    out_.functions.push_back({std::string(schema), std::string(name), location, builtin_function_kind(schema, name)});
  }

  // Walks a subtree without recursion (parse trees can be deep: a + b + c + ... nests once per operator).
  Findings walk(Value root, bool collect_functions) {
    Findings f;
    std::vector<Value> stack{root};
    while (!stack.empty()) {
      Value n = stack.back();
      stack.pop_back();
      bool object = n.is_object();
      for (Value value : n) {
        if (!value.is_structured()) {
          if (!object) continue;
          // RangeVar bodies (bare or wrapped) carry the relation's persistence and schema.
          std::string_view key = value.key();
          if ((key == "relpersistence" && value.str() == "t") || (key == "schemaname" && is_temp_schema(value.str()))) {
            f.temp = true;
          }
          continue;
        }
        if (object) {
          std::string_view key = value.key();
          if (!key.empty() && key[0] >= 'A' && key[0] <= 'Z') {  // a node type
            if (key == "FuncCall") {
              if (collect_functions) add_function(value, f);
            } else if (key == "LockingClause") {
              if (f.locking.empty()) f.locking = locking_name(value["strength"].str());
            } else if (is_dml(key)) {
              if (f.dml.empty()) f.dml = statement_name(key, value);
            }
          } else if (key == "intoClause") {
            f.into = true;
          }
        }
        stack.push_back(value);
      }
    }
    if (f.temp) flags().uses_temp_objects = true;
    return f;
  }

  Analysis& out_;
};

void analyze_parsed(std::string_view sql, Analysis& out) {
  std::string text(sql);  // libpg_query wants a NUL-terminated string
  PgQueryParseResult result = pg_query_parse(text.c_str());
  struct Free {
    PgQueryParseResult& r;
    ~Free() { pg_query_free_parse_result(r); }
  } free_result{result};

  Analyzer analyzer(out);
  if (result.error != nullptr) {
    std::string message = result.error->message != nullptr ? result.error->message : "unknown error";
    analyzer.require_primary("parse error: " + message);
    return;
  }
  JsonTree tree;
  Value stmts;
  if (result.parse_tree != nullptr && tree.parse(result.parse_tree)) stmts = tree.root()["stmts"];
  if (!stmts.is_array()) {
    analyzer.require_primary("could not classify: unreadable parse tree");
    return;
  }
  for (Value raw : stmts) {
    if (Value stmt = raw["stmt"]; stmt.present()) analyzer.top_level(stmt);
  }
  std::stable_sort(out.functions.begin(), out.functions.end(),
                   [](const FunctionRef& a, const FunctionRef& b) { return a.location < b.location; });
}

// Runs `fn` on a new thread with a stack of `stack_bytes` and waits for it. False if the thread could not start.
template <class Fn>
bool run_with_stack(std::size_t stack_bytes, Fn& fn) {
  pthread_attr_t attr;
  if (pthread_attr_init(&attr) != 0) return false;
  bool ok = pthread_attr_setstacksize(&attr, stack_bytes) == 0;
  pthread_t thread;
  auto trampoline = [](void* arg) -> void* {
    (*static_cast<Fn*>(arg))();
    return nullptr;
  };
  ok = ok && pthread_create(&thread, &attr, trampoline, &fn) == 0;
  pthread_attr_destroy(&attr);
  if (ok) pthread_join(thread, nullptr);
  return ok;
}

Analysis analyze(std::string_view sql) {
  // PostgreSQL reads a query as a C string: nothing from the first NUL on is part of it (a terminating NUL passed
  // along with the text is harmless; anything after an embedded one the server rejects or never sees).
  sql = sql.substr(0, sql.find('\0'));
  Analysis out;
  out.base.hint = parse_hint(sql);
  Analyzer analyzer(out);
  if (sql.size() > kMaxParseBytes) {
    analyzer.require_primary("query too large to classify");
    return out;
  }
  try {
    if (sql.size() <= kInlineParseBytes) {
      analyze_parsed(sql, out);
      return out;
    }
    // libpg_query turns its tree into JSON recursively, about 150 bytes of stack per level of nesting, and a level
    // takes at least two bytes of query text ("+1"). Measured: a 256 KiB "SELECT 1+1+...+1" needs between 64 and 80
    // bytes of stack per byte of query; give the helper thread 128 (virtual memory: pages are touched only if used).
    std::exception_ptr error;
    auto job = [&]() {
      try {
        analyze_parsed(sql, out);
      } catch (...) {
        error = std::current_exception();
      }
    };
    if (!run_with_stack(2 * 1024 * 1024 + 128 * sql.size(), job)) {
      analyzer.require_primary("could not classify: no thread for a large query");
      return out;
    }
    if (error) std::rethrow_exception(error);
  } catch (const std::exception& e) {
    out.functions.clear();
    analyzer.require_primary(std::string("could not classify: ") + e.what());
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Options

std::string qualified(const FunctionRef& f) {
  return f.schema.empty() ? f.name : f.schema + "." + f.name;
}

// An entry "name" matches the function in any schema; "schema.name" matches calls qualified with that schema, and
// unqualified calls (which may resolve to it through search_path).
bool listed(const std::vector<std::string>& list, const FunctionRef& f) {
  for (const auto& entry : list) {
    std::string_view e = entry;
    std::size_t dot = e.rfind('.');
    if (dot == std::string_view::npos) {
      if (e == f.name) return true;
    } else if (e.substr(dot + 1) == f.name && (f.schema.empty() || e.substr(0, dot) == f.schema)) {
      return true;
    }
  }
  return false;
}

Classification resolve(const Analysis& a, const ClassifierOptions& options) {
  Classification c = a.base;
  for (const auto& f : a.functions) {
    if (f.builtin == FunctionKind::SessionState) c.sets_session_state = true;
    if (c.route == Route::Primary) continue;  // the first reason stands; only flags can still change
    std::string reason;
    if (listed(options.writing_functions, f)) {
      reason = "calls writing function " + qualified(f);
    } else {
      switch (f.builtin) {
        case FunctionKind::Writes:
          reason = "calls volatile function " + qualified(f);
          break;
        case FunctionKind::AdvisoryLock:
          reason = "calls advisory-lock function " + qualified(f);
          break;
        case FunctionKind::SessionState:
          reason = "calls " + qualified(f) + " (changes session state)";
          break;
        case FunctionKind::PrimaryOnly:
          reason = "calls " + qualified(f) + " (runs only on the primary)";
          break;
        case FunctionKind::ReadOnly:
          break;
        case FunctionKind::Unknown:
          if (!options.permissive_functions && !listed(options.read_only_functions, f)) {
            reason = "calls function " + qualified(f) + " (not known to be read-only)";
          }
          break;
      }
    }
    if (!reason.empty()) {
      c.route = Route::Primary;
      c.reason = std::move(reason);
    }
  }
  return c;
}

// ---------------------------------------------------------------------------------------------------------------
// Per-thread LRU cache keyed by the exact query text.

class Cache {
 public:
  static constexpr std::size_t kMaxEntries = 4096;
  static constexpr std::size_t kMaxBytes = 8 * 1024 * 1024;  // of query text

  const Analysis* find(std::string_view sql) {
    auto it = index_.find(sql);
    if (it == index_.end()) return nullptr;
    entries_.splice(entries_.begin(), entries_, it->second);
    return &it->second->second;
  }

  void insert(std::string_view sql, Analysis analysis) {
    if (sql.size() > kMaxCachedQueryBytes || index_.contains(sql)) return;
    entries_.emplace_front(std::string(sql), std::move(analysis));
    index_.emplace(entries_.front().first, entries_.begin());
    bytes_ += sql.size();
    while (entries_.size() > kMaxEntries || bytes_ > kMaxBytes) {
      bytes_ -= entries_.back().first.size();
      index_.erase(entries_.back().first);
      entries_.pop_back();
    }
  }

  void clear() {
    index_.clear();
    entries_.clear();
    bytes_ = 0;
  }

 private:
  using Entries = std::list<std::pair<std::string, Analysis>>;
  Entries entries_;  // most recently used first; the index's keys point into these strings
  std::unordered_map<std::string_view, Entries::iterator> index_;
  std::size_t bytes_ = 0;
};

Cache& thread_cache() {
  thread_local Cache cache;
  return cache;
}

}  // namespace

std::optional<Route> parse_hint(std::string_view sql) {
  std::size_t i = 0;
  while (i < sql.size()) {
    char c = sql[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
      ++i;
    } else if (sql.substr(i, 2) == "/*") {
      // Block comments nest in PostgreSQL.
      std::size_t j = i + 2;
      int depth = 1;
      while (j < sql.size() && depth > 0) {
        if (sql.substr(j, 2) == "/*") {
          ++depth;
          j += 2;
        } else if (sql.substr(j, 2) == "*/") {
          --depth;
          j += 2;
        } else {
          ++j;
        }
      }
      std::size_t body_end = depth == 0 ? j - 2 : j;
      if (auto hint = hint_in_comment(sql.substr(i + 2, body_end - (i + 2)))) return hint;
      i = j;
    } else if (sql.substr(i, 2) == "--") {
      std::size_t end = sql.find('\n', i);
      if (end == std::string_view::npos) end = sql.size();
      if (auto hint = hint_in_comment(sql.substr(i + 2, end - (i + 2)))) return hint;
      i = end;
    } else {
      break;
    }
  }
  return std::nullopt;
}

Classification classify_uncached(std::string_view sql, const ClassifierOptions& options) {
  return resolve(analyze(sql), options);
}

namespace {

bool ident_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '$' || static_cast<unsigned char>(c) >= 0x80;
}

bool starts_with_word(std::string_view s, std::string_view word) {
  if (s.size() < word.size()) return false;
  for (std::size_t i = 0; i < word.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(s[i])) != word[i]) return false;
  }
  return s.size() == word.size() || !ident_char(s[word.size()]);
}

}  // namespace

bool literal_free_key(std::string_view sql, std::string& out) {
  out.clear();
  if (sql.size() > kMaxCachedQueryBytes) return false;
  std::size_t i = 0;
  bool first_token = true;
  bool ended = false;  // a ';' was seen: only blanks may follow
  while (i < sql.size()) {
    char c = sql[i];
    if (c == '\0') return false;
    if (std::isspace(static_cast<unsigned char>(c))) {
      out += c;
      ++i;
      continue;
    }
    if (c == '-' && i + 1 < sql.size() && sql[i + 1] == '-') {  // comments stay (hints live there)
      std::size_t end = sql.find('\n', i);
      if (end == std::string_view::npos) end = sql.size();
      out.append(sql.substr(i, end - i));
      i = end;
      continue;
    }
    if (c == '/' && i + 1 < sql.size() && sql[i + 1] == '*') {
      std::size_t j = i + 2;
      int depth = 1;
      while (j < sql.size() && depth > 0) {
        if (sql.substr(j, 2) == "/*") {
          ++depth;
          j += 2;
        } else if (sql.substr(j, 2) == "*/") {
          --depth;
          j += 2;
        } else {
          ++j;
        }
      }
      if (depth > 0) return false;
      out.append(sql.substr(i, j - i));
      i = j;
      continue;
    }
    if (ended) return false;
    if (first_token) {
      std::string_view rest = sql.substr(i);
      if (!starts_with_word(rest, "select") && !starts_with_word(rest, "insert") && !starts_with_word(rest, "update") &&
          !starts_with_word(rest, "delete") && !starts_with_word(rest, "with") && !starts_with_word(rest, "values")) {
        return false;
      }
      first_token = false;
    }
    if (c == ';') {
      ended = true;
      out += c;
      ++i;
      continue;
    }
    if (c == '$') return false;  // a dollar quote or a parameter next to one: keep it exact
    if (c == '"') {  // quoted identifier: kept
      std::size_t j = i + 1;
      while (true) {
        j = sql.find('"', j);
        if (j == std::string_view::npos) return false;
        if (j + 1 < sql.size() && sql[j + 1] == '"') {
          j += 2;
          continue;
        }
        break;
      }
      out.append(sql.substr(i, j + 1 - i));
      i = j + 1;
      continue;
    }
    if (c == '\'') {  // a plain string constant (E'', B'', X'', U&'' prefixes are words: see below)
      std::size_t j = i + 1;
      while (true) {
        std::size_t q = sql.find('\'', j);
        if (q == std::string_view::npos) return false;
        if (sql.substr(j, q - j).find('\\') != std::string_view::npos) return false;
        if (q + 1 < sql.size() && sql[q + 1] == '\'') {
          j = q + 2;
          continue;
        }
        j = q;
        break;
      }
      out += '?';
      i = j + 1;
      continue;
    }
    if (std::isdigit(static_cast<unsigned char>(c)) ||
        (c == '.' && i + 1 < sql.size() && std::isdigit(static_cast<unsigned char>(sql[i + 1])))) {
      std::size_t j = i;
      while (j < sql.size() && (std::isdigit(static_cast<unsigned char>(sql[j])) || sql[j] == '.')) ++j;
      if (j < sql.size() && (sql[j] == 'e' || sql[j] == 'E')) {
        std::size_t k = j + 1;
        if (k < sql.size() && (sql[k] == '+' || sql[k] == '-')) ++k;
        if (k < sql.size() && std::isdigit(static_cast<unsigned char>(sql[k]))) {
          j = k;
          while (j < sql.size() && std::isdigit(static_cast<unsigned char>(sql[j]))) ++j;
        }
      }
      out += '?';
      i = j;
      continue;
    }
    if (ident_char(c)) {  // a word (keyword, identifier, or a string prefix such as E'...': kept exact)
      std::size_t j = i;
      while (j < sql.size() && ident_char(sql[j])) ++j;
      if (j < sql.size() && (sql[j] == '\'' || sql[j] == '&')) return false;
      out.append(sql.substr(i, j - i));
      i = j;
      continue;
    }
    out += c;
    ++i;
  }
  return !first_token;
}

Classification classify(std::string_view sql, const ClassifierOptions& options) {
  Cache& cache = thread_cache();
  thread_local std::string key;
  std::string_view k = literal_free_key(sql, key) ? std::string_view(key) : sql;
  if (const Analysis* hit = cache.find(k)) return resolve(*hit, options);
  Analysis analysis = analyze(sql);
  Classification result = resolve(analysis, options);
  cache.insert(k, std::move(analysis));
  return result;
}

void clear_classify_cache() {
  thread_cache().clear();
}

}  // namespace pgfleet::sql
