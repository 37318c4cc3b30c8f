#include "webapp/auth.h"

#include <gtest/gtest.h>

#include <fstream>

#include "common/test_util.h"

namespace edgeloop::webapp {
namespace {

TEST(PasswordTest, HashVerifiesOnlyTheSamePassword) {
  auto hash = HashPassword("correct horse", HashCost::kMinimal);
  ASSERT_TRUE(hash.ok()) << hash.status();
  EXPECT_EQ(hash->rfind("$argon2id$", 0), 0u);
  EXPECT_TRUE(VerifyPassword("correct horse", *hash));
  EXPECT_FALSE(VerifyPassword("correct horsE", *hash));
  EXPECT_FALSE(VerifyPassword("", *hash));
  EXPECT_FALSE(VerifyPassword("correct horse", ""));
  // A fresh salt every time.
  EXPECT_NE(*hash, *HashPassword("correct horse", HashCost::kMinimal));
}

TEST(PasswordTest, NamesAndPasswordsAreValidated) {
  EXPECT_TRUE(ValidateUserName("ana.maria@plant-1").ok());
  EXPECT_FALSE(ValidateUserName("").ok());
  EXPECT_FALSE(ValidateUserName("a:b").ok());
  EXPECT_FALSE(ValidateUserName(std::string(65, 'a')).ok());
  EXPECT_FALSE(ValidatePassword("short").ok());
  EXPECT_TRUE(ValidatePassword("long enough").ok());
}

TEST(UsersFileTest, PutSaveLoadRemove) {
  edgeloop::testing::TempDir dir;
  const auto path = dir.path() / "users";
  auto file = UsersFile::Load(path);
  ASSERT_TRUE(file.ok());
  EXPECT_TRUE(file->users().empty());
  ASSERT_TRUE(
      file->Put({"ana", Role::kOperator, *HashPassword("password-1", HashCost::kMinimal)}, false)
          .ok());
  ASSERT_TRUE(
      file->Put({"ben", Role::kUser, *HashPassword("password-2", HashCost::kMinimal)}, false).ok());
  EXPECT_EQ(file->Put({"ben", Role::kUser, "x"}, false).code(), StatusCode::kAlreadyExists);
  ASSERT_TRUE(file->Save().ok());
  EXPECT_FALSE(std::filesystem::exists(path.string() + ".tmp"));
  EXPECT_EQ(std::filesystem::status(path).permissions() & std::filesystem::perms::others_read,
            std::filesystem::perms::none);

  auto loaded = UsersFile::Load(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ASSERT_EQ(loaded->users().size(), 2u);
  const User* ana = loaded->Find("ana");
  ASSERT_NE(ana, nullptr);
  EXPECT_EQ(ana->role, Role::kOperator);
  EXPECT_TRUE(VerifyPassword("password-1", ana->password_hash));
  EXPECT_EQ(loaded->Find("ben")->role, Role::kUser);
  EXPECT_TRUE(loaded->Remove("ben").ok());
  EXPECT_EQ(loaded->Remove("ben").code(), StatusCode::kNotFound);
  ASSERT_TRUE(loaded->Save().ok());
  EXPECT_EQ(UsersFile::Load(path)->users().size(), 1u);
}

TEST(UsersFileTest, MalformedLinesAreNamed) {
  edgeloop::testing::TempDir dir;
  const auto path = dir.path() / "users";
  auto load_error = [&](const std::string& text) {
    std::ofstream(path, std::ios::trunc) << text;
    return std::string(UsersFile::Load(path).status().message());
  };
  EXPECT_NE(load_error("# c\nana:operator\n").find("line 2: expected name:role:hash"),
            std::string::npos);
  EXPECT_NE(load_error("ana:admin:$argon2id$x\n").find("role must be user or operator"),
            std::string::npos);
  EXPECT_NE(load_error("ana:user:plaintext\n").find("not an Argon2 string"), std::string::npos);
  EXPECT_NE(load_error("ana:user:$argon2id$x\nana:user:$argon2id$y\n").find("appears twice"),
            std::string::npos);
}

TEST(SessionStoreTest, SessionsExpireWhenIdleAndTheOldestGoesBeyondTheCap) {
  FakeClock clock;
  SessionStore store(&clock, std::chrono::seconds(60), 2);
  const Session a = store.Create("ana", Role::kOperator);
  EXPECT_EQ(a.id.size(), 64u);
  EXPECT_EQ(a.csrf.size(), 64u);
  EXPECT_NE(a.id, a.csrf);
  auto found = store.Find(a.id);
  ASSERT_TRUE(found.has_value());
  EXPECT_EQ(found->user, "ana");
  EXPECT_EQ(found->csrf, a.csrf);
  EXPECT_FALSE(store.Find("").has_value());
  EXPECT_FALSE(store.Find(a.id.substr(1)).has_value());

  clock.Advance(std::chrono::seconds(50));
  EXPECT_TRUE(store.Find(a.id).has_value());  // use restarts the idle time
  clock.Advance(std::chrono::seconds(50));
  EXPECT_TRUE(store.Find(a.id).has_value());
  clock.Advance(std::chrono::seconds(61));
  EXPECT_FALSE(store.Find(a.id).has_value());

  const Session b = store.Create("b", Role::kUser);
  clock.Advance(std::chrono::seconds(1));
  const Session c = store.Create("c", Role::kUser);
  clock.Advance(std::chrono::seconds(1));
  const Session d = store.Create("d", Role::kUser);
  EXPECT_EQ(store.size(), 2u);
  EXPECT_FALSE(store.Find(b.id).has_value());
  EXPECT_TRUE(store.Find(c.id).has_value());
  store.Remove(d.id);
  EXPECT_FALSE(store.Find(d.id).has_value());
}

TEST(CookieTest, FindsTheNamedCookie) {
  EXPECT_EQ(CookieValue("a=1; edgeloop_session=abc; b=2", "edgeloop_session"), "abc");
  EXPECT_EQ(CookieValue("edgeloop_session=x", "edgeloop_session"), "x");
  EXPECT_EQ(CookieValue("xedgeloop_session=x", "edgeloop_session"), "");
  EXPECT_EQ(CookieValue("", "edgeloop_session"), "");
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "ab"));
  EXPECT_FALSE(ConstantTimeEquals("", "a"));
}

}  // namespace
}  // namespace edgeloop::webapp
