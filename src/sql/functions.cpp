#include "sql/functions.hpp"

#include <array>
#include <string_view>
#include <unordered_set>

namespace pgfleet::sql {
namespace {

using namespace std::string_view_literals;

// Functions that neither write nor depend on being on the primary. Volatile ones that only read (random, now,
// clock_timestamp, pg_sleep) are here too: what matters for routing is whether a standby can run them. Names only
// (no argument types): every overload of a name here is read-only. SQL-syntax forms (EXTRACT, SUBSTRING ... FROM,
// POSITION, TRIM, AT TIME ZONE, SIMILAR TO, OVERLAY, COLLATION FOR) arrive as the pg_catalog functions listed here.
// clang-format off
constexpr std::array kReadOnly = {
    // aggregates
    "count"sv, "sum"sv, "avg"sv, "min"sv, "max"sv, "array_agg"sv, "string_agg"sv, "bool_and"sv, "bool_or"sv,
    "every"sv, "bit_and"sv, "bit_or"sv, "bit_xor"sv, "json_agg"sv, "jsonb_agg"sv, "json_object_agg"sv,
    "jsonb_object_agg"sv, "xmlagg"sv, "stddev"sv, "stddev_pop"sv, "stddev_samp"sv, "variance"sv, "var_pop"sv,
    "var_samp"sv, "corr"sv, "covar_pop"sv, "covar_samp"sv, "regr_slope"sv, "regr_intercept"sv, "regr_count"sv,
    "regr_r2"sv, "regr_avgx"sv, "regr_avgy"sv, "percentile_cont"sv, "percentile_disc"sv, "mode"sv,
    "range_agg"sv, "range_intersect_agg"sv,
    // window functions
    "row_number"sv, "rank"sv, "dense_rank"sv, "percent_rank"sv, "cume_dist"sv, "ntile"sv, "lag"sv, "lead"sv,
    "first_value"sv, "last_value"sv, "nth_value"sv,
    // conditionals (most are their own node types; listed for the function-call spellings)
    "coalesce"sv, "nullif"sv, "greatest"sv, "least"sv, "num_nulls"sv, "num_nonnulls"sv,
    // strings
    "lower"sv, "upper"sv, "initcap"sv, "length"sv, "char_length"sv, "character_length"sv, "octet_length"sv,
    "bit_length"sv, "substr"sv, "substring"sv, "position"sv, "strpos"sv, "overlay"sv, "concat"sv, "concat_ws"sv,
    "replace"sv, "translate"sv, "trim"sv, "btrim"sv, "ltrim"sv, "rtrim"sv, "lpad"sv, "rpad"sv, "left"sv,
    "right"sv, "repeat"sv, "reverse"sv, "split_part"sv, "starts_with"sv, "format"sv, "quote_ident"sv,
    "quote_literal"sv, "quote_nullable"sv, "ascii"sv, "chr"sv, "to_hex"sv, "md5"sv, "sha224"sv, "sha256"sv,
    "sha384"sv, "sha512"sv, "encode"sv, "decode"sv, "convert_from"sv, "convert_to"sv, "normalize"sv,
    "is_normalized"sv, "unistr"sv, "regexp_replace"sv, "regexp_match"sv, "regexp_matches"sv,
    "regexp_split_to_array"sv, "regexp_split_to_table"sv, "regexp_like"sv, "regexp_count"sv, "regexp_instr"sv,
    "regexp_substr"sv, "like_escape"sv, "similar_escape"sv, "similar_to_escape"sv, "string_to_array"sv,
    "string_to_table"sv, "array_to_string"sv, "pg_collation_for"sv, "xmlexists"sv, "xpath"sv, "xpath_exists"sv,
    // numbers
    "abs"sv, "round"sv, "ceil"sv, "ceiling"sv, "floor"sv, "trunc"sv, "mod"sv, "div"sv, "power"sv, "pow"sv,
    "sqrt"sv, "cbrt"sv, "exp"sv, "ln"sv, "log"sv, "log10"sv, "sign"sv, "pi"sv, "degrees"sv, "radians"sv, "sin"sv,
    "cos"sv, "tan"sv, "asin"sv, "acos"sv, "atan"sv, "atan2"sv, "gcd"sv, "lcm"sv, "factorial"sv, "width_bucket"sv,
    "scale"sv, "random"sv, "gen_random_uuid"sv, "uuid_generate_v4"sv, "uuid_generate_v1"sv,
    // type-named conversions
    "date"sv, "time"sv, "timestamp"sv, "timestamptz"sv, "interval"sv, "numeric"sv, "int2"sv, "int4"sv, "int8"sv,
    "float4"sv, "float8"sv, "text"sv, "varchar"sv, "bool"sv, "to_number"sv, "int4range"sv, "int8range"sv,
    "numrange"sv, "daterange"sv, "tsrange"sv, "tstzrange"sv,
    // date and time
    "now"sv, "clock_timestamp"sv, "statement_timestamp"sv, "transaction_timestamp"sv, "timeofday"sv,
    "date_trunc"sv, "date_part"sv, "extract"sv, "date_bin"sv, "age"sv, "make_date"sv, "make_time"sv,
    "make_timestamp"sv, "make_timestamptz"sv, "make_interval"sv, "to_char"sv, "to_date"sv, "to_timestamp"sv,
    "justify_days"sv, "justify_hours"sv, "justify_interval"sv, "isfinite"sv, "timezone"sv, "overlaps"sv,
    // json and jsonb
    "to_json"sv, "to_jsonb"sv, "row_to_json"sv, "array_to_json"sv, "json_build_object"sv, "jsonb_build_object"sv,
    "json_build_array"sv, "jsonb_build_array"sv, "json_object"sv, "jsonb_object"sv, "json_array_length"sv,
    "jsonb_array_length"sv, "json_each"sv, "jsonb_each"sv, "json_each_text"sv, "jsonb_each_text"sv,
    "json_extract_path"sv, "jsonb_extract_path"sv, "json_extract_path_text"sv, "jsonb_extract_path_text"sv,
    "json_object_keys"sv, "jsonb_object_keys"sv, "json_array_elements"sv, "jsonb_array_elements"sv,
    "json_array_elements_text"sv, "jsonb_array_elements_text"sv, "json_typeof"sv, "jsonb_typeof"sv,
    "json_strip_nulls"sv, "jsonb_strip_nulls"sv, "jsonb_set"sv, "jsonb_set_lax"sv, "jsonb_insert"sv,
    "jsonb_pretty"sv, "json_populate_record"sv, "jsonb_populate_record"sv, "json_populate_recordset"sv,
    "jsonb_populate_recordset"sv, "json_to_record"sv, "jsonb_to_record"sv, "json_to_recordset"sv,
    "jsonb_to_recordset"sv, "jsonb_path_query"sv, "jsonb_path_query_array"sv, "jsonb_path_query_first"sv,
    "jsonb_path_exists"sv, "jsonb_path_match"sv,
    // arrays and set-returning functions
    "array_length"sv, "array_upper"sv, "array_lower"sv, "array_dims"sv, "array_ndims"sv, "cardinality"sv,
    "array_append"sv, "array_prepend"sv, "array_cat"sv, "array_remove"sv, "array_replace"sv, "array_position"sv,
    "array_positions"sv, "array_fill"sv, "unnest"sv, "generate_series"sv, "generate_subscripts"sv,
    // full-text search
    "to_tsvector"sv, "to_tsquery"sv, "plainto_tsquery"sv, "phraseto_tsquery"sv, "websearch_to_tsquery"sv,
    "ts_rank"sv, "ts_rank_cd"sv, "ts_headline"sv, "setweight"sv,
    // session and server information (read)
    "version"sv, "current_setting"sv, "current_database"sv, "current_catalog"sv, "current_schema"sv,
    "current_schemas"sv, "current_query"sv, "current_user"sv, "session_user"sv, "pg_backend_pid"sv,
    "inet_client_addr"sv, "inet_client_port"sv, "inet_server_addr"sv, "inet_server_port"sv,
    "pg_postmaster_start_time"sv, "pg_conf_load_time"sv, "pg_is_in_recovery"sv, "pg_last_wal_receive_lsn"sv,
    "pg_last_wal_replay_lsn"sv, "pg_last_xact_replay_timestamp"sv, "pg_is_wal_replay_paused"sv,
    "pg_get_wal_replay_pause_state"sv, "pg_wal_lsn_diff"sv, "pg_listening_channels"sv,
    "pg_notification_queue_usage"sv, "pg_blocking_pids"sv, "pg_jit_available"sv, "pg_client_encoding"sv,
    "pg_encoding_to_char"sv, "pg_char_to_encoding"sv, "txid_current_snapshot"sv, "pg_current_snapshot"sv,
    "pg_snapshot_xmin"sv, "pg_snapshot_xmax"sv, "pg_visible_in_snapshot"sv, "pg_xact_commit_timestamp"sv,
    "pg_sleep"sv, "pg_sleep_for"sv, "pg_sleep_until"sv,
    // catalog helpers
    "pg_typeof"sv, "format_type"sv, "pg_get_viewdef"sv, "pg_get_indexdef"sv, "pg_get_constraintdef"sv,
    "pg_get_functiondef"sv, "pg_get_triggerdef"sv, "pg_get_ruledef"sv, "pg_get_expr"sv, "pg_get_userbyid"sv,
    "pg_get_serial_sequence"sv, "pg_get_function_arguments"sv, "pg_get_function_result"sv,
    "pg_get_function_identity_arguments"sv, "pg_get_keywords"sv, "pg_table_is_visible"sv, "pg_type_is_visible"sv,
    "pg_function_is_visible"sv, "obj_description"sv, "col_description"sv, "shobj_description"sv,
    "has_table_privilege"sv, "has_column_privilege"sv, "has_schema_privilege"sv, "has_database_privilege"sv,
    "has_function_privilege"sv, "has_sequence_privilege"sv, "pg_has_role"sv, "to_regclass"sv, "to_regtype"sv,
    "to_regproc"sv, "to_regprocedure"sv, "to_regnamespace"sv, "to_regrole"sv, "pg_size_pretty"sv,
    "pg_size_bytes"sv, "pg_database_size"sv, "pg_relation_size"sv, "pg_table_size"sv, "pg_indexes_size"sv,
    "pg_total_relation_size"sv, "pg_column_size"sv, "pg_relation_filenode"sv, "pg_relation_filepath"sv,
    "pg_tablespace_location"sv, "pg_options_to_table"sv, "pg_sequence_last_value"sv,
};

constexpr std::array kWrites = {
    "nextval"sv, "setval"sv, "currval"sv, "lastval"sv,  // sequences (currval/lastval: session state of nextval)
    "pg_notify"sv, "dblink_exec"sv, "lowrite"sv, "loread"sv, "pg_import_system_collations"sv,
    "brin_summarize_new_values"sv, "brin_summarize_range"sv, "brin_desummarize_range"sv,
    "gin_clean_pending_list"sv, "pg_stat_statements_reset"sv,
};
// Name prefixes of writers: large objects, replication slots and origins, adminpack's file functions, stats resets.
constexpr std::array kWritesPrefixes = {
    "lo_"sv, "pg_create_"sv, "pg_drop_"sv, "pg_copy_"sv, "pg_replication_"sv, "pg_logical_"sv, "pg_file_"sv,
    "pg_stat_reset"sv,
};
// clang-format on

constexpr std::array kAdvisoryLockPrefixes = {"pg_advisory_"sv, "pg_try_advisory_"sv};

constexpr std::array kSessionState = {"set_config"sv, "setseed"sv};

// clang-format off
constexpr std::array kPrimaryOnly = {
    "txid_current"sv, "txid_current_if_assigned"sv, "pg_current_xact_id"sv, "pg_current_xact_id_if_assigned"sv,
    "pg_current_wal_lsn"sv, "pg_current_wal_insert_lsn"sv, "pg_current_wal_flush_lsn"sv, "pg_walfile_name"sv,
    "pg_walfile_name_offset"sv, "pg_switch_wal"sv, "pg_create_restore_point"sv, "pg_backup_start"sv,
    "pg_backup_stop"sv, "pg_start_backup"sv, "pg_stop_backup"sv, "pg_export_snapshot"sv, "pg_reload_conf"sv,
    "pg_rotate_logfile"sv, "pg_terminate_backend"sv, "pg_cancel_backend"sv, "pg_promote"sv,
    "pg_wal_replay_pause"sv, "pg_wal_replay_resume"sv,
};
// clang-format on

template <std::size_t N>
std::unordered_set<std::string_view> make_set(const std::array<std::string_view, N>& names) {
  return {names.begin(), names.end()};
}

template <std::size_t N>
bool has_prefix(std::string_view name, const std::array<std::string_view, N>& prefixes) {
  for (auto p : prefixes) {
    if (name.starts_with(p)) return true;
  }
  return false;
}

}  // namespace

FunctionKind builtin_function_kind(std::string_view schema, std::string_view name) {
  static const auto read_only = make_set(kReadOnly);
  static const auto writes = make_set(kWrites);
  static const auto session_state = make_set(kSessionState);
  static const auto primary_only = make_set(kPrimaryOnly);

  // Order matters where lists overlap: pg_create_restore_point is primary-only, not a slot writer.
  if (primary_only.contains(name)) return FunctionKind::PrimaryOnly;
  if (session_state.contains(name)) return FunctionKind::SessionState;
  if (has_prefix(name, kAdvisoryLockPrefixes)) return FunctionKind::AdvisoryLock;
  if (writes.contains(name) || has_prefix(name, kWritesPrefixes)) return FunctionKind::Writes;
  if ((schema.empty() || schema == "pg_catalog") && read_only.contains(name)) return FunctionKind::ReadOnly;
  return FunctionKind::Unknown;
}

}  // namespace pgfleet::sql
