#include "io/json.h"

#include <set>
#include <vector>

#include "mlxn/error.h"

namespace mlxn::io::detail {

using nlohmann::json;

json parse_json(std::string_view text, const char* op, const std::string& source, int max_depth) {
  // One set of seen keys per open object; arrays push an empty marker so pops pair up.
  std::vector<std::set<std::string>> open;
  int depth = 0;
  auto cb = [&](int, json::parse_event_t ev, json& parsed) -> bool {
    switch (ev) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        if (++depth > max_depth)
          throw_error<FormatError>(op, source, ": JSON nests deeper than ", max_depth, " levels");
        open.emplace_back();
        break;
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        --depth;
        if (!open.empty()) open.pop_back();
        break;
      case json::parse_event_t::key:
        if (!open.empty() && parsed.is_string() && !open.back().insert(parsed.get<std::string>()).second)
          throw_error<FormatError>(op, source, ": JSON object repeats the key '", parsed.get<std::string>(), "'");
        break;
      case json::parse_event_t::value:
        break;
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), cb, /*allow_exceptions=*/true, /*ignore_comments=*/false);
  } catch (const json::exception& e) {
    throw_error<FormatError>(op, source, ": malformed JSON: ", e.what());
  }
}

const char* json_kind(const json& j) {
  switch (j.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::object:
      return "object";
    case json::value_t::array:
      return "array";
    case json::value_t::string:
      return "string";
    case json::value_t::boolean:
      return "boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "integer";
    case json::value_t::number_float:
      return "number";
    case json::value_t::binary:
      return "binary";
    case json::value_t::discarded:
      return "discarded";
  }
  return "unknown";
}

}  // namespace mlxn::io::detail
