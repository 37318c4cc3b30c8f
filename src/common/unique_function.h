// UniqueFunction<R(Args...)>: a move-only std::function, for callbacks that own move-only state
// (a Responder) without wrapping it in a shared_ptr. One allocation per callback. Like
// std::move_only_function (C++23), which this project's C++20 lacks.
#ifndef EDGELOOP_COMMON_UNIQUE_FUNCTION_H_
#define EDGELOOP_COMMON_UNIQUE_FUNCTION_H_

#include <memory>
#include <type_traits>
#include <utility>

namespace edgeloop {

template <typename Signature>
class UniqueFunction;

template <typename R, typename... Args>
class UniqueFunction<R(Args...)> {
 public:
  UniqueFunction() = default;
  template <typename F>
  requires(!std::is_same_v<std::decay_t<F>, UniqueFunction> &&
           std::is_invocable_r_v<R, std::decay_t<F>&, Args...>)
      UniqueFunction(F&& f)  // NOLINT(google-explicit-constructor)
      : impl_(std::make_unique<Impl<std::decay_t<F>>>(std::forward<F>(f))) {}

  UniqueFunction(UniqueFunction&&) noexcept = default;
  UniqueFunction& operator=(UniqueFunction&&) noexcept = default;

  explicit operator bool() const { return impl_ != nullptr; }
  R operator()(Args... args) { return impl_->Call(std::forward<Args>(args)...); }

 private:
  struct Base {
    virtual ~Base() = default;
    virtual R Call(Args... args) = 0;
  };
  template <typename F>
  struct Impl final : Base {
    explicit Impl(F f) : function(std::move(f)) {}
    R Call(Args... args) override { return function(std::forward<Args>(args)...); }
    F function;
  };
  std::unique_ptr<Base> impl_;
};

}  // namespace edgeloop

#endif  // EDGELOOP_COMMON_UNIQUE_FUNCTION_H_
