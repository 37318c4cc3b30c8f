#include "common/config.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace edgeloop {
namespace {

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = std::filesystem::temp_directory_path() /
            ("edgeloop_config_test_" + std::to_string(::getpid()) + ".yaml");
    AddYamlConfigOption(&app_);
    app_.add_option("--log-format", log_format_);
    serve_ = app_.add_subcommand("serve");
    serve_->add_option("--http-port", port_);
    serve_->add_option("--model-repository", repository_);
    serve_->add_option("--tags", tags_);
  }
  void TearDown() override { std::filesystem::remove(path_); }

  void WriteConfig(const std::string& text) { std::ofstream(path_) << text; }

  void Parse(std::vector<std::string> args) {
    std::vector<const char*> argv = {"edgeloop"};
    for (auto& arg : args) argv.push_back(arg.c_str());
    app_.parse(static_cast<int>(argv.size()), argv.data());
  }

  std::filesystem::path path_;
  CLI::App app_{"test"};
  CLI::App* serve_ = nullptr;
  std::string log_format_ = "text";
  int port_ = 8000;
  std::string repository_;
  std::vector<std::string> tags_;
};

TEST_F(ConfigTest, FileSetsGlobalAndSubcommandOptions) {
  WriteConfig(
      "log-format: json\nserve:\n  http-port: 9100\n  model-repository: /models\n"
      "  tags: [a, b]\n");
  Parse({"--config", path_.string(), "serve"});
  EXPECT_EQ(log_format_, "json");
  EXPECT_EQ(port_, 9100);
  EXPECT_EQ(repository_, "/models");
  EXPECT_EQ(tags_, (std::vector<std::string>{"a", "b"}));
}

TEST_F(ConfigTest, FlagsOverrideTheFile) {
  WriteConfig("serve:\n  http-port: 9100\n");
  Parse({"--config", path_.string(), "serve", "--http-port", "9200"});
  EXPECT_EQ(port_, 9200);
}

TEST_F(ConfigTest, UnknownKeysAreErrors) {
  WriteConfig("serve:\n  http-prot: 9100\n");
  EXPECT_THROW(Parse({"--config", path_.string(), "serve"}), CLI::ParseError);
}

TEST_F(ConfigTest, InvalidYamlIsAnError) {
  WriteConfig("serve: [unclosed\n");
  EXPECT_THROW(Parse({"--config", path_.string(), "serve"}), CLI::ParseError);
}

TEST_F(ConfigTest, MissingFileIsAnError) {
  EXPECT_THROW(Parse({"--config", "/nonexistent/edgeloop.yaml", "serve"}), CLI::ParseError);
}

TEST_F(ConfigTest, WritesYamlBack) {
  Parse({"serve", "--http-port", "9300"});
  const std::string yaml = app_.config_to_str(false, false);
  EXPECT_NE(yaml.find("serve:"), std::string::npos) << yaml;
  EXPECT_NE(yaml.find("http-port: 9300"), std::string::npos) << yaml;
}

}  // namespace
}  // namespace edgeloop
