// Tests of the `umi` binary as a user runs it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "support/bad_files.h"
#include "support/run_command.h"
#include "support/temp_dir.h"

namespace umi {
namespace {

using test::run_command;
using test::shell_quote;

std::string umi(const std::string& args) { return std::string(UMI_BINARY) + " " + args; }

TEST(Cli, InspectShowsAGguf) {
  test::TempDir dir;
  test::write_file(dir.file("tiny.gguf"), test::tiny_llama_gguf());
  auto r = run_command(umi("inspect " + shell_quote(dir.file("tiny.gguf"))));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("supported as llama"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("q8_0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("gguf:gpt2 (256 entries)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("chat template yes"), std::string::npos) << r.out;

  r = run_command(umi("inspect --json " + shell_quote(dir.file("tiny.gguf"))));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["config"]["layers"], 2);
  EXPECT_EQ(j["tensors"]["count"], 20);
  EXPECT_EQ(j["tensors"]["by_dtype"]["q8_0"]["tensors"], 14);
  EXPECT_TRUE(j["layout_problems"].empty());
}

TEST(Cli, InspectShowsAFolderAndItsLayoutProblems) {
  test::TempDir dir;
  std::ofstream(dir.file("config.json")) << R"({"architectures":["Qwen2ForCausalLM"],"vocab_size":100,
    "hidden_size":64,"intermediate_size":128,"num_hidden_layers":1,"num_attention_heads":4})";
  test::write_file(dir.file("model.safetensors"),
                   test::build_safetensors_raw(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                                               test::pattern_bytes(12)));
  auto r = run_command(umi("inspect --json " + shell_quote(dir.path().string())));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["config"]["family"], "qwen2");
  EXPECT_EQ(j["config"]["attention_bias"], true);
  ASSERT_FALSE(j["layout_problems"].empty());
  EXPECT_NE(j["layout_problems"].dump().find("trailing bytes belong to no tensor"), std::string::npos) << r.out;
}

TEST(Cli, EveryBadFileExitsTwoWithOneLine) {
  test::TempDir dir;
  std::vector<test::BadFile> all = test::bad_gguf_files();
  for (auto& f : test::bad_safetensors_files()) all.push_back(std::move(f));
  for (const test::BadFile& f : all) {
    SCOPED_TRACE(f.name);
    std::string path = dir.file(f.name);
    test::write_file(path, f.bytes);
    auto r = run_command(umi("inspect " + shell_quote(path)));
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_EQ(r.out, "");
    ASSERT_FALSE(r.err.empty());
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line: " << r.err;
    EXPECT_NE(r.err.find(path), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(f.expect), std::string::npos) << r.err;
  }
}

TEST(Cli, MissingModelAndBadArgumentsExitTwo) {
  EXPECT_EQ(run_command(umi("inspect /nonexistent/model.gguf")).exit_code, 2);
  EXPECT_EQ(run_command(umi("inspect")).exit_code, 2);
  EXPECT_EQ(run_command(umi("frobnicate")).exit_code, 2);
  test::TempDir dir;
  test::write_file(dir.file("t.gguf"), test::tiny_llama_gguf());
  EXPECT_EQ(run_command(umi("fit " + shell_quote(dir.file("t.gguf")) + " --ctx 0")).exit_code, 2);
  EXPECT_EQ(run_command(umi("fit " + shell_quote(dir.file("t.gguf")) + " --ctx 10 --memory 12XB")).exit_code, 2);
  EXPECT_EQ(run_command(umi("fit " + shell_quote(dir.file("t.gguf")) + " --ctx 10 --kv-dtype q3")).exit_code, 2);
}

TEST(Cli, FitPlansAConfigOnlyModel) {
  test::TempDir dir;
  std::ofstream(dir.file("config.json")) << R"({"architectures":["LlamaForCausalLM"],"vocab_size":128256,
    "hidden_size":4096,"intermediate_size":14336,"num_hidden_layers":32,"num_attention_heads":32,
    "num_key_value_heads":8,"max_position_embeddings":8192,"torch_dtype":"bfloat16"})";
  auto r = run_command(umi("fit " + shell_quote(dir.path().string()) + " --ctx 8192 --memory 24GiB --json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["weights_bytes"], 16060522496ull);
  EXPECT_EQ(j["kv_bytes_per_token"], 131072);
  EXPECT_EQ(j["kv_bytes"], 1ull << 30);
  EXPECT_EQ(j["fits"], true);
  r = run_command(umi("fit " + shell_quote(dir.path().string()) + " --ctx 8192 --memory 12GiB --json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["fits"], false);
  EXPECT_EQ(nlohmann::json::parse(r.out)["max_context"], 0);
}

TEST(Cli, FitMeasuresAGguf) {
  test::TempDir dir;
  test::write_file(dir.file("t.gguf"), test::tiny_llama_gguf());
  auto r = run_command(umi("fit " + shell_quote(dir.file("t.gguf")) + " --ctx 100 --batch 2 --memory 1GiB --json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["kv_bytes_per_token"], 2 * 2 * 32 * 2);  // K,V x layers x kv_dim x f16
  EXPECT_EQ(j["weights_source"], "measured from the files");
  EXPECT_TRUE(j["fits"].get<bool>());
}

}  // namespace
}  // namespace umi

namespace umi {
namespace {

// The README's demo file is generated; it must not drift from its generator.
TEST(Cli, CommittedDemoFileMatchesItsGenerator) {
  std::ifstream in(std::string(UMI_SOURCE_DIR) + "/tests/data/tiny-llama.gguf", std::ios::binary);
  std::string committed((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  test::Bytes generated = test::tiny_llama_gguf();
  ASSERT_EQ(committed.size(), generated.size()) << "regenerate with: umi_write_corpus DIR";
  EXPECT_EQ(std::memcmp(committed.data(), generated.data(), generated.size()), 0);
}

TEST(Cli, GlobalOptionsMayFollowTheSubcommand) {
  auto r = run_command(umi("fit " + shell_quote(std::string(UMI_SOURCE_DIR) + "/tests/data/tiny-llama.gguf") +
                           " --ctx 64 --memory-limit 100KiB --json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["limit_bytes"], 100 * 1024);  // less than the 110 KiB of weights
  EXPECT_FALSE(j["fits"].get<bool>());
}

}  // namespace
}  // namespace umi

namespace umi {
namespace {

TEST(Cli, TokenizePrintsIdsAsJson) {
  std::string qwen = std::string(UMI_SOURCE_DIR) + "/../shared/data/tokenizers/qwen3";
  auto r = run_command(umi("tokenize -m " + shell_quote(qwen) + " --text " + shell_quote("<|im_start|>user\n你好<|im_end|>") + " --json"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "[151644,872,198,108386,151645]\n");
  EXPECT_EQ(run_command(umi("tokenize -m " + shell_quote(qwen))).exit_code, 2);  // no text
  EXPECT_EQ(run_command(umi("tokenize -m /nonexistent --text x")).exit_code, 2);
}

TEST(Cli, ChatTemplateRendersMessagesFromAFile) {
  test::TempDir dir;
  std::ofstream(dir.file("m.json")) << R"({"messages":[{"role":"user","content":"Hi"}],"enable_thinking":false})";
  std::string qwen = std::string(UMI_SOURCE_DIR) + "/../shared/data/tokenizers/qwen3";
  auto r = run_command(umi("chat-template -m " + shell_quote(qwen) + " --messages " + shell_quote(dir.file("m.json"))));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
  r = run_command(umi("chat-template -m " + shell_quote(qwen) + " --messages " + shell_quote(dir.file("m.json")) +
                      " --no-generation-prompt"));
  EXPECT_EQ(r.out, "<|im_start|>user\nHi<|im_end|>\n");
  std::ofstream(dir.file("bad.json")) << R"({"messages": 5})";
  r = run_command(umi("chat-template -m " + shell_quote(qwen) + " --messages " + shell_quote(dir.file("bad.json"))));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1);
}

}  // namespace
}  // namespace umi

namespace umi {
namespace {

TEST(Cli, RunUsesTheBundledModelAndEndsWithATimingLine) {
  auto r = run_command(umi("run 'ROMEO:' -n 12 --seed 3"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.rfind("ROMEO:", 0), 0u) << r.out;
  EXPECT_GT(r.out.size(), 10u);
  EXPECT_NE(r.err.find("decode 12 tokens"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("first token"), std::string::npos);
  EXPECT_NE(r.err.find("peak memory"), std::string::npos);
  // Same seed, same text.
  EXPECT_EQ(run_command(umi("run 'ROMEO:' -n 12 --seed 3")).out, r.out);
}

TEST(Cli, RunAndLogitsRefuseBadInput) {
  EXPECT_EQ(run_command(umi("run x -n -5")).exit_code, 2);
  EXPECT_EQ(run_command(umi("run x --temp nan")).exit_code, 2);
  EXPECT_EQ(run_command(umi("run x -m /nonexistent")).exit_code, 2);
  EXPECT_EQ(run_command(umi("logits --ids 1,2,999999")).exit_code, 2);  // outside the vocabulary
  EXPECT_EQ(run_command(umi("logits --ids 1,,2")).exit_code, 2);
  auto r = run_command(umi("run x --memory-limit 1MiB"));  // the 7 MiB of weights do not fit
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("do not fit"), std::string::npos) << r.err;
  // Room for the weights and scratch but not for this prompt's KV: refused, saying what fits.
  std::string many;
  for (int i = 0; i < 200; ++i) many += " ROMEO:";  // 800 tokens: 1.56 MiB of KV
  r = run_command(umi("run '" + many + "' --memory-limit 14MiB -n 4"));
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("leaves room for 464 tokens"), std::string::npos) << r.err;
}

TEST(Cli, LogitsPrintsOneJsonArray) {
  auto r = run_command(umi("logits --ids 858,26,198"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_TRUE(j.is_array());
  EXPECT_EQ(j.size(), 2048u);
}

}  // namespace
}  // namespace umi

namespace umi {
namespace {

TEST(Cli, ChatTakesTurnsFromStandardInput) {
  test::TempDir dir;
  std::ofstream(dir.file("in.txt")) << "Good morrow.\nWhat news?\n";
  // run_command gives the command /dev/null as input: feed the turns through sh -c.
  auto r = run_command("sh -c " + shell_quote(umi("chat -n 30 --seed 2 --stop '\n\n'") + " < " + shell_quote(dir.file("in.txt"))));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_GT(r.out.size(), 4u);
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n') >= 2, true) << r.out;  // one line per reply at least
}

}  // namespace
}  // namespace umi
