// `umi logits -m MODEL --ids 1,2,3`: the last position's logits as one JSON
// array. A debugging tool, and what parity checks against other engines use.
#include <cstdio>
#include <sstream>

#include "cli/model_options.h"
#include "core/error.h"
#include "engine/sequence.h"

namespace umi::cli {

namespace {
std::vector<int32_t> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    long long v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (...) {
      used = 0;
    }
    if (used == 0 || used != item.size() || v < 0 || v > INT32_MAX) throw InputError("--ids: \"" + item + "\" is not a token id");
    ids.push_back(static_cast<int32_t>(v));
  }
  if (ids.empty()) throw InputError("--ids: no token ids");
  return ids;
}
}  // namespace

Action add_logits(CLI::App& app, const GlobalOptions& global) {
  auto* cmd = app.add_subcommand("logits", "print the last position's logits for token ids");
  auto a = std::make_shared<ModelArgs>();
  auto ids = std::make_shared<std::string>();
  a->add_to(*cmd);
  cmd->add_option("--ids", *ids, "comma-separated token ids")->required();
  return [a, ids, &global] {
    std::vector<int32_t> tokens = parse_ids(*ids);
    Pool pool(a->pool_options(global));
    Model model(a->path(), pool, a->options());
    Sequence seq(model);
    std::vector<float> logits = seq.feed(tokens);
    std::string out = "[";
    char buf[32];
    for (size_t i = 0; i < logits.size(); ++i) {
      std::snprintf(buf, sizeof buf, "%s%.9g", i ? "," : "", static_cast<double>(logits[i]));
      out += buf;
    }
    std::printf("%s]\n", out.c_str());
  };
}

}  // namespace umi::cli
