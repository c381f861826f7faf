// Rendered text identical to transformers' apply_chat_template (fixtures made
// by tools/make_tokenizer_fixtures.py with transformers 5.17), and the sandbox.
#include "template/chat_template.h"

#include <gtest/gtest.h>

#include "support/fixtures.h"

#include <fstream>
#include <map>
#include <sstream>

#include "template/error.h"

namespace umi {
namespace {

using nlohmann::ordered_json;

using test::read_text;

TEST(ChatTemplate, MatchesTransformersOnEveryFixture) {
  ordered_json fx = ordered_json::parse(read_text(std::string(UMI_SOURCE_DIR) + "/tests/fixtures/tokenizer/chat_templates.json"));
  std::map<std::string, std::unique_ptr<ChatTemplate>> templates;
  size_t rendered = 0, raised = 0;
  for (const auto& c : fx["cases"]) {
    std::string name = c["template"].get<std::string>();
    SCOPED_TRACE(name + " / " + c["conversation"].get<std::string>() +
                 (c["add_generation_prompt"].get<bool>() ? " +gen" : "") + (c["tools"].is_null() ? "" : " +tools"));
    const auto& ctx = c["context"];
    ChatTemplate t(fx["templates"][name].get<std::string>(), ctx["bos_token"].get<std::string>(),
                   ctx["eos_token"].get<std::string>());
    ChatRequest r;
    r.messages = c["messages"];
    r.tools = c["tools"];
    r.add_generation_prompt = c["add_generation_prompt"].get<bool>();
    if (c.contains("error")) {
      EXPECT_THROW(t.render(r), tmpl::TemplateError) << "transformers raised: " << c["error"];
      ++raised;
      continue;
    }
    std::string got;
    try {
      got = t.render(r);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "threw: " << e.what();
      continue;
    }
    EXPECT_EQ(got, c["rendered"].get<std::string>());
    ++rendered;
  }
  EXPECT_GT(rendered, 100u);
  EXPECT_GT(raised, 10u);
}

TEST(ChatTemplate, ErrorsNameTheLine) {
  try {
    ChatTemplate("hello\n{% if x %}\n{{ y", "", "");
    FAIL();
  } catch (const tmpl::TemplateError& e) {
    EXPECT_NE(std::string(e.what()).find("line 3"), std::string::npos) << e.what();
  }
  EXPECT_THROW(ChatTemplate("{% for x in y %}", "", ""), tmpl::TemplateError);
  EXPECT_THROW(ChatTemplate("{% frobnicate %}", "", ""), tmpl::TemplateError);
  EXPECT_THROW(ChatTemplate("{{ 'unterminated }}", "", ""), tmpl::TemplateError);
  EXPECT_THROW(ChatTemplate("{{ (((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((x }}", "", ""), tmpl::TemplateError);
}

TEST(ChatTemplate, SandboxBoundsLoopsOutputAndRecursion) {
  ChatRequest r;
  EXPECT_THROW(ChatTemplate("{% for i in range(1000000) %}{% for j in range(1000000) %}{% endfor %}{% endfor %}", "", "").render(r),
               tmpl::TemplateError);
  EXPECT_THROW(ChatTemplate("{% set s = 'x' * 1000 %}{% for i in range(100000) %}{{ s }}{% endfor %}", "", "").render(r),
               tmpl::TemplateError);
  EXPECT_THROW(ChatTemplate("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}", "", "").render(r), tmpl::TemplateError);
  EXPECT_THROW(ChatTemplate("{{ range(100000000) }}", "", "").render(r), tmpl::TemplateError);
  EXPECT_THROW(ChatTemplate("{{ raise_exception('no system role') }}", "", "").render(r), tmpl::TemplateError);
  EXPECT_THROW(ChatTemplate("{{ undefined_thing.attr }}", "", "").render(r), tmpl::TemplateError);
  EXPECT_THROW(ChatTemplate("{{ 1 / 0 }}", "", "").render(r), tmpl::TemplateError);
  // Found by fuzzing: 64-bit overflow (Python's ints are unbounded: ours refuse).
  EXPECT_THROW(ChatTemplate("{{ 7 * 7777777777777777 * 7770 }}", "", "").render(r), tmpl::TemplateError);
  EXPECT_THROW(ChatTemplate("{{ 2 ** 64 }}", "", "").render(r), tmpl::TemplateError);
  EXPECT_EQ(ChatTemplate("{{ (-1) ** 1000000000000 }}", "", "").render(r), "1");
  EXPECT_EQ(ChatTemplate("{{ [1].99999999999999999999999 }}|", "", "").render(r), "|");
  EXPECT_THROW(ChatTemplate("{{ 'abc'.split(4) }}", "", "").render(r), tmpl::TemplateError);
}

// Each of these once took unbounded memory or time; found by fuzzing or by
// reading the code after fuzzing found the first (tojson with a huge indent).
TEST(ChatTemplate, SandboxBoundsTheSizeOfValues) {
  ChatRequest r;
  auto fails = [&](const std::string& src) {
    EXPECT_THROW(ChatTemplate(src, "", "").render(r), tmpl::TemplateError) << src;
  };
  fails("{{ [1] | tojson(indent=11111111111111110) }}");
  fails("{{ [[1]] | tojson(indent=65) }}");
  EXPECT_EQ(ChatTemplate("{{ [1] | tojson(indent=-3) }}", "", "").render(r), "[\n1\n]");
  EXPECT_EQ(ChatTemplate("{{ {'a': [1]} | tojson(indent=2) }}", "", "").render(r), "{\n  \"a\": [\n    1\n  ]\n}");
  // A list that doubles per statement: 2^40 elements reachable in 40 steps.
  // (a namespace, because a for loop scopes plain `set`)
  const std::string ns_doubling =
      "{% set ns = namespace(a=[1]) %}{% for i in range(40) %}{% set ns.a = [ns.a, ns.a] %}{% endfor %}";
  fails(ns_doubling + "{{ ns.a }}");
  fails(ns_doubling + "{{ ns.a | tojson }}");
  fails(ns_doubling + "{{ ns.a ~ '' }}");
  fails(ns_doubling + "{{ [ns.a] | join(',') }}");
  // Identity short-cuts equality of shared parts, as in Python.
  EXPECT_EQ(ChatTemplate(ns_doubling + "{{ ns.a == ns.a }}", "", "").render(r), "True");
  // A namespace holding itself: printing and comparing are errors, not a stack overflow.
  const std::string self = "{% set ns = namespace(x=1) %}{% set ns.x = ns %}";
  fails(self + "{{ ns }}");
  fails(self + "{{ ns | tojson }}");
  fails(self + "{% set o = namespace(x=1) %}{% set o.x = o %}{{ ns == o }}");
  // Strings that double: concatenation, join, replace and list + list are bounded.
  fails("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}");
  fails("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = [ns.s, ns.s] | join('') %}{% endfor %}");
  fails("{% set ns = namespace(s='xxxx') %}{% for i in range(40) %}{% set ns.s = ns.s.replace('x', ns.s) %}{% endfor %}");
  fails("{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}");
}

TEST(ChatTemplate, JinjaSemantics) {
  ChatRequest r;
  r.messages = ordered_json::parse(R"([{"role":"user","content":"  Hi  "},{"role":"assistant","content":"yo"}])");
  auto render = [&](const std::string& src) { return ChatTemplate(src, "<s>", "</s>").render(r); };
  EXPECT_EQ(render("{{ messages[::-1][0].content }}"), "yo");
  EXPECT_EQ(render("{{ messages[0]['content'] | trim }}|"), "Hi|");
  EXPECT_EQ(render("{% for m in messages %}{{ loop.index }}{{ loop.first }}{{ loop.last }}{% endfor %}"), "1TrueFalse2FalseTrue");
  EXPECT_EQ(render("{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}"), "2");
  EXPECT_EQ(render("{% set n = 0 %}{% for m in messages %}{% set n = n + 1 %}{% endfor %}{{ n }}"), "0");  // loop scope
  EXPECT_EQ(render("{% for m in messages if m.role == 'assistant' %}{{ loop.length }}{{ m.content }}{% endfor %}"), "1yo");
  EXPECT_EQ(render("{% for i in range(5) %}{% if i == 3 %}{% break %}{% endif %}{% if i == 1 %}{% continue %}{% endif %}{{ i }}{% endfor %}"), "02");
  EXPECT_EQ(render("{% macro greet(name, p='Hello') %}{{ p }}, {{ name }}!{% endmacro %}{{ greet('Bob') }} {{ greet('Al', p='Hi') }}"),
            "Hello, Bob! Hi, Al!");
  EXPECT_EQ(render("{{ {'a': 1, 'b': [1, 2.5, none, true, 'x\"y']} | tojson }}"), R"({"a": 1, "b": [1, 2.5, null, true, "x\"y"]})");
  EXPECT_EQ(render("{{ {'a': [1]} | tojson(indent=2) }}"), "{\n  \"a\": [\n    1\n  ]\n}");
  EXPECT_EQ(render("{{ 'a,b,,c'.split(',') }}"), "['a', 'b', '', 'c']");
  EXPECT_EQ(render("{{ '  x y  '.split() | length }}{{ 'héllo'|length }}{{ 'héllo'[1] }}"), "25é");
  EXPECT_EQ(render("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 1 ~ 2 }}"), "3 -4 1 3.5 1024 12");
  EXPECT_EQ(render("{{ x is defined }}{{ none is none }}{{ 'a' is string }}{{ messages is iterable }}{{ 3 is divisibleby 3 }}"),
            "FalseTrueTrueTrueTrue");
  EXPECT_EQ(render("{{ messages | selectattr('role', 'equalto', 'user') | map(attribute='content') | join('+') }}"), "  Hi  ");
  EXPECT_EQ(render("{{ 'yes' if messages | length > 1 else 'no' }}"), "yes");
  EXPECT_EQ(render("{{ bos_token }}{{ eos_token }}"), "<s></s>");
  EXPECT_EQ(render("a\n  {% if true %}\n  b\n  {% endif %}\nc"), "a\n  b\nc");  // trim_blocks + lstrip_blocks
  EXPECT_EQ(render("a  {{- ' b ' -}}  c"), "a b c");
  EXPECT_EQ(render("{# comment #}x{{ 0.1 + 0.2 }}"), "x0.30000000000000004");
  EXPECT_EQ(render("{{ [1, 2, 3][1:] }}{{ 'abc'[::-1] }}{{ 'A'.lower() }}{{ 'b'|upper }}"), "[2, 3]cbaaB");
  EXPECT_EQ(render("{{ {'k': 'v'}.items() | list }}{{ {'k': 'v'}.get('z', 'd') }}"), "[['k', 'v']]d");
  EXPECT_EQ(render("{{ '//a b//'.strip('/ ') }}{{ 'xxhixx'.lstrip('x') }}"), "a bhixx");  // fuzz: dangling views
}

TEST(ChatTemplate, FindsTheTemplateAModelShips) {
  auto t = find_chat_template(std::string(UMI_SOURCE_DIR) + "/models/tiny-shakespeare");
  ASSERT_TRUE(t.has_value());
  ChatTemplate ct(*t, "", "<|endoftext|>");
  ChatRequest r;
  r.messages = ordered_json::parse(R"([{"role":"user","content":"Good morrow."}])");
  EXPECT_EQ(ct.render(r), "ROMEO:\nGood morrow.\n\nJULIET:\n");
  auto g = find_chat_template(std::string(UMI_SOURCE_DIR) + "/tests/data/tiny-llama.gguf");
  ASSERT_TRUE(g.has_value());
  EXPECT_NE(g->find("messages"), std::string::npos);
}

}  // namespace
}  // namespace umi
