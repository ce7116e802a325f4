#pragma once
// JSON parsing shared by the safetensors header, the shard index and config.json: untrusted
// text in, a typed FormatError out for anything malformed.
#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace mlxn::io::detail {

// Parses `text`; throws FormatError "[op] <source>: ..." when it is not well-formed JSON,
// when an object repeats a key (JSON allows it, but which value wins differs between
// readers, so a file relying on it is ambiguous), or when values nest deeper than
// `max_depth` (bounds the work of every later walk over the document).
nlohmann::json parse_json(std::string_view text, const char* op, const std::string& source, int max_depth);

// "object", "string", "integer", ... for error messages.
const char* json_kind(const nlohmann::json& j);

}  // namespace mlxn::io::detail
