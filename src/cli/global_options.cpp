#include "cli/commands.h"
#include "core/error.h"
#include "core/units.h"
#include "memory/system_memory.h"

namespace umi::cli {

uint64_t GlobalOptions::resolved_limit() const {
  if (memory_limit.empty()) return default_memory_limit();
  auto v = parse_bytes(memory_limit);
  if (!v || *v == 0) throw InputError("--memory-limit: \"" + memory_limit + "\" is not a size such as 12GiB");
  return *v;
}

}  // namespace umi::cli
