// `umi convert SRC DST.gguf --type f16|q8_0|q4_k|...`: a Hugging Face folder or a GGUF file
// (requantized) to a GGUF file, with a progress bar.
#include <chrono>
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "core/error.h"
#include "core/units.h"
#include "model/convert.h"

namespace umi::cli {

Action add_convert(CLI::App& app, const GlobalOptions&) {
  auto* cmd = app.add_subcommand("convert", "write a GGUF file from a Hugging Face folder");
  auto src = std::make_shared<std::string>(), dst = std::make_shared<std::string>(), type = std::make_shared<std::string>("f16");
  cmd->add_option("SRC", *src, "a Hugging Face model folder")->required();
  cmd->add_option("DST", *dst, "the GGUF file to write")->required();
  cmd->add_option("--type", *type, "weight type")->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "iq4_nl", "iq4_xs"}));
  auto threads = std::make_shared<int>(0);
  cmd->add_option("-t,--threads", *threads, "threads that quantize (default: all cores)");
  return [src, dst, type, threads] {
    ConvertOptions o;
    o.type = *dtype_from_name(*type);
    o.threads = *threads;
    auto t0 = std::chrono::steady_clock::now();
    auto last = std::make_shared<double>(-1.0);
    o.progress = [t0, last](uint64_t done, uint64_t total) {
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (done < total && s - *last < 0.1) return;  // redraw at most ten times a second
      *last = s;
      int width = 30, filled = total ? static_cast<int>(width * done / total) : width;
      std::fprintf(stderr, "\r[%.*s%*s] %3d%% %s / %s, %.0f MB/s", filled, "##############################", width - filled, "",
                   total ? static_cast<int>(100 * done / total) : 100, format_bytes(done).c_str(), format_bytes(total).c_str(),
                   s > 0 ? static_cast<double>(done) / s / 1e6 : 0.0);
    };
    convert_model(*src, *dst, o);
    std::fprintf(stderr, "\nwrote %s\n", dst->c_str());
  };
}

}  // namespace umi::cli
