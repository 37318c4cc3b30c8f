#include "pipeline/expr.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cmath>
#include <limits>
#include <utility>

#include "lake/calendar.h"

namespace edgeloop::pipeline {

using lake::Batch;
using lake::CivilDate;
using lake::CivilFromDays;
using lake::Column;
using lake::DaysFromCivil;
using lake::FloorDiv;
using lake::kMicrosPerDay;
using lake::kMicrosPerSecond;
using lake::Schema;
using lake::Type;

namespace {

bool IsNumeric(Type t) { return t == Type::kInt64 || t == Type::kDouble; }
bool IsTemporal(Type t) { return t == Type::kTimestamp || t == Type::kDate; }

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view TrimSpaces(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

// A column of `n` rows of `type`, all NULL, with its value storage sized.
Column NullColumn(Type type, int64_t n) {
  Column c(type);
  c.valid().assign(n, 0);
  if (type == Type::kDouble) {
    c.doubles().assign(n, 0.0);
  } else if (type == Type::kString) {
    c.offsets().assign(n + 1, 0);
  } else {
    c.ints().assign(n, 0);
  }
  return c;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Value conversion

bool AppendParsed(std::string_view text, Type type, Column* out) {
  switch (type) {
    case Type::kString:
      out->AppendString(text);
      return true;
    case Type::kInt64: {
      std::string_view t = TrimSpaces(text);
      if (!t.empty() && t.front() == '+') t.remove_prefix(1);
      int64_t v = 0;
      const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
      if (t.empty() || ec != std::errc() || end != t.data() + t.size()) return false;
      out->AppendInt(v);
      return true;
    }
    case Type::kDouble: {
      std::string_view t = TrimSpaces(text);
      if (!t.empty() && t.front() == '+') t.remove_prefix(1);
      double v = 0;
      const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
      if (t.empty() || ec != std::errc() || end != t.data() + t.size()) return false;
      out->AppendDouble(v);
      return true;
    }
    case Type::kBool: {
      const std::string t = Lower(TrimSpaces(text));
      if (t == "true" || t == "t" || t == "1" || t == "yes" || t == "y") {
        out->AppendBool(true);
        return true;
      }
      if (t == "false" || t == "f" || t == "0" || t == "no" || t == "n") {
        out->AppendBool(false);
        return true;
      }
      return false;
    }
    case Type::kTimestamp: {
      const std::optional<int64_t> v = lake::ParseTimestamp(TrimSpaces(text));
      if (!v) return false;
      out->AppendInt(*v);
      return true;
    }
    case Type::kDate: {
      const std::optional<int32_t> v = lake::ParseDate(TrimSpaces(text));
      if (!v) return false;
      out->AppendInt(*v);
      return true;
    }
  }
  return false;
}

namespace {

bool CanCast(Type from, Type to) {
  if (from == to || from == Type::kString || to == Type::kString) return true;
  if (IsNumeric(from) && IsNumeric(to)) return true;
  if ((from == Type::kBool && to == Type::kInt64) || (from == Type::kInt64 && to == Type::kBool)) {
    return true;
  }
  return IsTemporal(from) && IsTemporal(to);
}

}  // namespace

std::optional<std::string> AppendConverted(const Column& in, int64_t i, Type type, Column* out) {
  if (in.IsNull(i)) {
    out->AppendNull();
    return std::nullopt;
  }
  const Type from = in.type();
  if (from == type) {
    out->AppendFrom(in, i);
    return std::nullopt;
  }
  if (type == Type::kString) {
    out->AppendString(lake::FormatValue(in, i));
    return std::nullopt;
  }
  if (from == Type::kString) {
    const std::string_view text = in.GetString(i);
    if (AppendParsed(text, type, out)) return std::nullopt;
    out->AppendNull();
    std::string shown(text.substr(0, 64));
    return "cannot cast '" + shown + "' to " + std::string(lake::TypeName(type));
  }
  switch (type) {
    case Type::kDouble:
      if (from == Type::kInt64) {
        out->AppendDouble(static_cast<double>(in.GetInt(i)));
        return std::nullopt;
      }
      break;
    case Type::kInt64:
      if (from == Type::kDouble) {
        const double d = std::nearbyint(in.GetDouble(i));
        if (!std::isfinite(d) || d < -9.2233720368547758e18 || d >= 9.2233720368547758e18) {
          out->AppendNull();
          return "cannot cast " + lake::FormatValue(in, i) + " to int64: out of range";
        }
        out->AppendInt(static_cast<int64_t>(d));
        return std::nullopt;
      }
      if (from == Type::kBool) {
        out->AppendInt(in.GetInt(i) != 0 ? 1 : 0);
        return std::nullopt;
      }
      break;
    case Type::kBool:
      if (from == Type::kInt64) {
        out->AppendBool(in.GetInt(i) != 0);
        return std::nullopt;
      }
      break;
    case Type::kTimestamp:
      if (from == Type::kDate) {
        out->AppendInt(in.GetInt(i) * kMicrosPerDay);
        return std::nullopt;
      }
      break;
    case Type::kDate:
      if (from == Type::kTimestamp) {
        out->AppendInt(FloorDiv(in.GetInt(i), kMicrosPerDay));
        return std::nullopt;
      }
      break;
    case Type::kString:
      break;
  }
  out->AppendNull();
  return "cannot cast " + std::string(lake::TypeName(from)) + " to " +
         std::string(lake::TypeName(type));
}

// ---------------------------------------------------------------------------------------------
// Syntax tree

struct ExprNode {
  enum class Kind {
    kLiteral,  // `literal` holds one value (or NULL)
    kColumn,   // `column` indexes the batch
    kNegate,
    kArith,    // op: + - * / %
    kConcat,   // ||
    kCompare,  // op: = != < <= > >=
    kAnd,
    kOr,
    kNot,
    kIsNull,  // negated: IS NOT NULL
    kCase,    // args: cond1, value1, cond2, value2, ..., [else]
    kCast,    // cast_type; try_cast when `lenient`
    kCall,    // op: function name (lowercase)
    kStar,    // count(*)
  };
  Kind kind = Kind::kLiteral;
  int pos = 1;  // 1-based character position in the text
  std::string op;
  std::vector<std::shared_ptr<ExprNode>> args;
  Column literal;
  bool literal_is_string_text = false;  // a quoted string literal (may be coerced)
  int column = -1;
  Type type = Type::kString;
  bool untyped_null = false;  // a NULL whose type is not known yet
  bool negated = false;
  bool lenient = false;
  bool has_else = false;
};

using NodePtr = std::shared_ptr<ExprNode>;

namespace {

// ---------------------------------------------------------------------------------------------
// Lexer

enum class Tok { kEnd, kIdent, kQuotedIdent, kNumber, kString, kOp };

struct Token {
  Tok kind = Tok::kEnd;
  std::string text;
  int pos = 1;
};

Status ErrorAt(int pos, const std::string& message) {
  return InvalidArgumentError(message + " at position " + std::to_string(pos));
}

StatusOr<std::vector<Token>> Lex(std::string_view s) {
  std::vector<Token> out;
  size_t i = 0;
  while (i < s.size()) {
    const char c = s[i];
    const int pos = static_cast<int>(i) + 1;
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
      continue;
    }
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t j = i;
      while (j < s.size() && (std::isalnum(static_cast<unsigned char>(s[j])) || s[j] == '_')) ++j;
      out.push_back({Tok::kIdent, std::string(s.substr(i, j - i)), pos});
      i = j;
      continue;
    }
    if (std::isdigit(static_cast<unsigned char>(c)) ||
        (c == '.' && i + 1 < s.size() && std::isdigit(static_cast<unsigned char>(s[i + 1])))) {
      size_t j = i;
      while (j < s.size() && (std::isdigit(static_cast<unsigned char>(s[j])) || s[j] == '.')) ++j;
      if (j < s.size() && (s[j] == 'e' || s[j] == 'E')) {
        size_t k = j + 1;
        if (k < s.size() && (s[k] == '+' || s[k] == '-')) ++k;
        if (k < s.size() && std::isdigit(static_cast<unsigned char>(s[k]))) {
          j = k;
          while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j]))) ++j;
        }
      }
      if (j < s.size() && (std::isalpha(static_cast<unsigned char>(s[j])) || s[j] == '_')) {
        return ErrorAt(pos, "invalid number '" + std::string(s.substr(i, j + 1 - i)) + "'");
      }
      out.push_back({Tok::kNumber, std::string(s.substr(i, j - i)), pos});
      i = j;
      continue;
    }
    if (c == '\'' || c == '"' || c == '`') {
      std::string text;
      size_t j = i + 1;
      bool closed = false;
      while (j < s.size()) {
        if (s[j] == c) {
          if (j + 1 < s.size() && s[j + 1] == c) {
            text += c;
            j += 2;
            continue;
          }
          closed = true;
          ++j;
          break;
        }
        text += s[j++];
      }
      if (!closed) {
        return ErrorAt(
            pos, c == '\'' ? "unterminated string literal" : "unterminated quoted column name");
      }
      out.push_back({c == '\'' ? Tok::kString : Tok::kQuotedIdent, std::move(text), pos});
      i = j;
      continue;
    }
    static constexpr std::string_view kTwo[] = {"<=", ">=", "!=", "<>", "==", "||"};
    bool matched = false;
    for (std::string_view op : kTwo) {
      if (s.substr(i, 2) == op) {
        out.push_back({Tok::kOp, std::string(op), pos});
        i += 2;
        matched = true;
        break;
      }
    }
    if (matched) continue;
    if (std::string_view("+-*/%()<>=,").find(c) != std::string_view::npos) {
      out.push_back({Tok::kOp, std::string(1, c), pos});
      ++i;
      continue;
    }
    return ErrorAt(pos, "unexpected character '" + std::string(1, c) + "'");
  }
  out.push_back({Tok::kEnd, "", static_cast<int>(s.size()) + 1});
  return out;
}

// ---------------------------------------------------------------------------------------------
// Parser (recursive descent) and binder (types and coercions), in one pass.

bool IsAggregate(const std::string& name) {
  return name == "count" || name == "sum" || name == "min" || name == "max" || name == "avg";
}

class Parser {
 public:
  Parser(std::vector<Token> tokens, const Schema& schema, bool allow_aggregates)
      : tokens_(std::move(tokens)), schema_(schema), allow_aggregates_(allow_aggregates) {}

  StatusOr<NodePtr> ParseAll() {
    ASSIGN_OR_RETURN(NodePtr node, ParseOr());
    if (Peek().kind != Tok::kEnd) {
      return ErrorAt(Peek().pos, "unexpected '" + Peek().text + "'");
    }
    return node;
  }

  std::vector<std::string> columns;

 private:
  const Token& Peek(int ahead = 0) const {
    return tokens_[std::min(pos_ + ahead, tokens_.size() - 1)];
  }
  Token Take() { return tokens_[std::min(pos_++, tokens_.size() - 1)]; }
  bool IsKeyword(const Token& t, std::string_view word) const {
    return t.kind == Tok::kIdent && Lower(t.text) == word;
  }
  bool AcceptKeyword(std::string_view word) {
    if (!IsKeyword(Peek(), word)) return false;
    ++pos_;
    return true;
  }
  bool AcceptOp(std::string_view op) {
    if (Peek().kind != Tok::kOp || Peek().text != op) return false;
    ++pos_;
    return true;
  }
  Status ExpectOp(std::string_view op) {
    if (AcceptOp(op)) return Status::Ok();
    const Token& t = Peek();
    return ErrorAt(t.pos, "expected '" + std::string(op) + "' but found " +
                              (t.kind == Tok::kEnd ? "the end" : "'" + t.text + "'"));
  }

  static NodePtr Make(ExprNode::Kind kind, int pos, std::string op = {}) {
    auto node = std::make_shared<ExprNode>();
    node->kind = kind;
    node->pos = pos;
    node->op = std::move(op);
    return node;
  }

  static std::string Describe(const ExprNode& n) {
    return n.untyped_null ? "NULL" : std::string(lake::TypeName(n.type));
  }

  // Makes `node` of `type`: re-types a NULL literal, parses a string literal as a timestamp or
  // date, widens int64 to double and date to timestamp. Error when none applies.
  StatusOr<NodePtr> Coerce(NodePtr node, Type type, int pos, const std::string& what) {
    if (node->untyped_null) {
      NodePtr out = Make(ExprNode::Kind::kLiteral, node->pos);
      out->type = type;
      out->literal = Column(type);
      out->literal.AppendNull();
      return out;
    }
    if (node->type == type) return node;
    if (node->kind == ExprNode::Kind::kLiteral && node->literal_is_string_text &&
        IsTemporal(type)) {
      NodePtr out = Make(ExprNode::Kind::kLiteral, node->pos);
      out->type = type;
      out->literal = Column(type);
      if (!AppendParsed(node->literal.GetString(0), type, &out->literal)) {
        return ErrorAt(node->pos, "'" + std::string(node->literal.GetString(0)) +
                                      "' is not a valid " + std::string(lake::TypeName(type)));
      }
      return out;
    }
    if ((node->type == Type::kInt64 && type == Type::kDouble) ||
        (node->type == Type::kDate && type == Type::kTimestamp)) {
      NodePtr out = Make(ExprNode::Kind::kCast, node->pos);
      out->type = type;
      out->args = {std::move(node)};
      return out;
    }
    return ErrorAt(pos, "type error: " + what + " needs " + std::string(lake::TypeName(type)) +
                            ", got " + Describe(*node));
  }

  // The common type of two operands, if there is one.
  static std::optional<Type> CommonType(const ExprNode& a, const ExprNode& b) {
    if (a.untyped_null && b.untyped_null) return std::nullopt;
    if (a.untyped_null) return b.type;
    if (b.untyped_null) return a.type;
    if (a.type == b.type) return a.type;
    if (IsNumeric(a.type) && IsNumeric(b.type)) return Type::kDouble;
    if (IsTemporal(a.type) && IsTemporal(b.type)) return Type::kTimestamp;
    if (IsTemporal(a.type) && b.kind == ExprNode::Kind::kLiteral && b.literal_is_string_text) {
      return a.type;
    }
    if (IsTemporal(b.type) && a.kind == ExprNode::Kind::kLiteral && a.literal_is_string_text) {
      return b.type;
    }
    return std::nullopt;
  }

  // Coerces every node in `nodes` to one common type.
  StatusOr<Type> Unify(std::vector<NodePtr*> nodes, int pos, const std::string& what) {
    const ExprNode* typed = nullptr;
    std::optional<Type> type;
    for (NodePtr* n : nodes) {
      if ((*n)->untyped_null) continue;
      if (!type) {
        type = (*n)->type;
        typed = n->get();
        continue;
      }
      std::optional<Type> common = CommonType(*typed, **n);
      if (!common) {
        return ErrorAt(
            pos, "type error: " + what + " mixes " + Describe(*typed) + " and " + Describe(**n));
      }
      type = common;
      typed = n->get();
    }
    if (!type) return ErrorAt(pos, "cannot tell the type of " + what + " (all NULL); use cast");
    for (NodePtr* n : nodes) {
      ASSIGN_OR_RETURN(*n, Coerce(*n, *type, pos, what));
    }
    return *type;
  }

  // Any value as text (its lake text form), for || and concat().
  StatusOr<NodePtr> ToText(NodePtr node, int pos, const std::string& what) {
    if (node->untyped_null || node->type == Type::kString) {
      return Coerce(std::move(node), Type::kString, pos, what);
    }
    NodePtr out = Make(ExprNode::Kind::kCast, node->pos);
    out->type = Type::kString;
    out->args = {std::move(node)};
    return out;
  }

  StatusOr<NodePtr> RequireBool(NodePtr node, int pos, const std::string& what) {
    return Coerce(std::move(node), Type::kBool, pos, what);
  }

  StatusOr<NodePtr> ParseOr() {
    ASSIGN_OR_RETURN(NodePtr left, ParseAnd());
    while (IsKeyword(Peek(), "or")) {
      const int pos = Take().pos;
      ASSIGN_OR_RETURN(NodePtr right, ParseAnd());
      NodePtr node = Make(ExprNode::Kind::kOr, pos);
      ASSIGN_OR_RETURN(left, RequireBool(std::move(left), pos, "OR"));
      ASSIGN_OR_RETURN(right, RequireBool(std::move(right), pos, "OR"));
      node->type = Type::kBool;
      node->args = {std::move(left), std::move(right)};
      left = std::move(node);
    }
    return left;
  }

  StatusOr<NodePtr> ParseAnd() {
    ASSIGN_OR_RETURN(NodePtr left, ParseNot());
    while (IsKeyword(Peek(), "and")) {
      const int pos = Take().pos;
      ASSIGN_OR_RETURN(NodePtr right, ParseNot());
      NodePtr node = Make(ExprNode::Kind::kAnd, pos);
      ASSIGN_OR_RETURN(left, RequireBool(std::move(left), pos, "AND"));
      ASSIGN_OR_RETURN(right, RequireBool(std::move(right), pos, "AND"));
      node->type = Type::kBool;
      node->args = {std::move(left), std::move(right)};
      left = std::move(node);
    }
    return left;
  }

  StatusOr<NodePtr> ParseNot() {
    if (IsKeyword(Peek(), "not")) {
      const int pos = Take().pos;
      ASSIGN_OR_RETURN(NodePtr inner, ParseNot());
      ASSIGN_OR_RETURN(inner, RequireBool(std::move(inner), pos, "NOT"));
      NodePtr node = Make(ExprNode::Kind::kNot, pos);
      node->type = Type::kBool;
      node->args = {std::move(inner)};
      return node;
    }
    return ParseComparison();
  }

  StatusOr<NodePtr> MakeCompare(std::string op, NodePtr left, NodePtr right, int pos) {
    if (op == "==") op = "=";
    if (op == "<>") op = "!=";
    NodePtr node = Make(ExprNode::Kind::kCompare, pos, op);
    ASSIGN_OR_RETURN(Type type, Unify({&left, &right}, pos, "comparison '" + op + "'"));
    (void)type;
    node->type = Type::kBool;
    node->args = {std::move(left), std::move(right)};
    return node;
  }

  StatusOr<NodePtr> ParseComparison() {
    ASSIGN_OR_RETURN(NodePtr left, ParseAdditive());
    while (true) {
      const Token& t = Peek();
      if (t.kind == Tok::kOp &&
          (t.text == "=" || t.text == "==" || t.text == "!=" || t.text == "<>" || t.text == "<" ||
           t.text == "<=" || t.text == ">" || t.text == ">=")) {
        const Token op = Take();
        ASSIGN_OR_RETURN(NodePtr right, ParseAdditive());
        ASSIGN_OR_RETURN(left, MakeCompare(op.text, std::move(left), std::move(right), op.pos));
        continue;
      }
      if (IsKeyword(t, "is")) {
        const int pos = Take().pos;
        const bool negated = AcceptKeyword("not");
        if (!AcceptKeyword("null")) return ErrorAt(Peek().pos, "expected NULL after IS");
        NodePtr node = Make(ExprNode::Kind::kIsNull, pos);
        node->negated = negated;
        node->type = Type::kBool;
        node->args = {std::move(left)};
        left = std::move(node);
        continue;
      }
      if (IsKeyword(t, "in") || (IsKeyword(t, "not") && IsKeyword(Peek(1), "in"))) {
        const int pos = t.pos;
        const bool negated = AcceptKeyword("not");
        Take();
        RETURN_IF_ERROR(ExpectOp("("));
        NodePtr any;
        while (true) {
          ASSIGN_OR_RETURN(NodePtr item, ParseAdditive());
          ASSIGN_OR_RETURN(NodePtr eq, MakeCompare("=", left, std::move(item), pos));
          if (any) {
            NodePtr node = Make(ExprNode::Kind::kOr, pos);
            node->type = Type::kBool;
            node->args = {std::move(any), std::move(eq)};
            any = std::move(node);
          } else {
            any = std::move(eq);
          }
          if (AcceptOp(",")) continue;
          RETURN_IF_ERROR(ExpectOp(")"));
          break;
        }
        if (negated) {
          NodePtr node = Make(ExprNode::Kind::kNot, pos);
          node->type = Type::kBool;
          node->args = {std::move(any)};
          any = std::move(node);
        }
        left = std::move(any);
        continue;
      }
      return left;
    }
  }

  StatusOr<NodePtr> MakeArith(const std::string& op, NodePtr left, NodePtr right, int pos) {
    if (op == "||") {
      NodePtr node = Make(ExprNode::Kind::kConcat, pos, op);
      ASSIGN_OR_RETURN(left, ToText(std::move(left), pos, "'||'"));
      ASSIGN_OR_RETURN(right, ToText(std::move(right), pos, "'||'"));
      node->type = Type::kString;
      node->args = {std::move(left), std::move(right)};
      return node;
    }
    for (const NodePtr* side : {&left, &right}) {
      if (!(*side)->untyped_null && !IsNumeric((*side)->type)) {
        return ErrorAt(pos, "type error: '" + op + "' needs numbers, got " + Describe(**side));
      }
    }
    NodePtr node = Make(ExprNode::Kind::kArith, pos, op);
    Type type = Type::kInt64;
    if (left->untyped_null && right->untyped_null) {
      type = Type::kInt64;
    } else {
      ASSIGN_OR_RETURN(type, Unify({&left, &right}, pos, "'" + op + "'"));
    }
    if (op == "/" && type == Type::kInt64) {
      ASSIGN_OR_RETURN(left, Coerce(std::move(left), Type::kDouble, pos, "'/'"));
      ASSIGN_OR_RETURN(right, Coerce(std::move(right), Type::kDouble, pos, "'/'"));
      type = Type::kDouble;
    }
    if (left->untyped_null) {
      ASSIGN_OR_RETURN(left, Coerce(std::move(left), type, pos, op));
    }
    if (right->untyped_null) {
      ASSIGN_OR_RETURN(right, Coerce(std::move(right), type, pos, op));
    }
    node->type = type;
    node->args = {std::move(left), std::move(right)};
    return node;
  }

  StatusOr<NodePtr> ParseAdditive() {
    ASSIGN_OR_RETURN(NodePtr left, ParseMultiplicative());
    while (Peek().kind == Tok::kOp &&
           (Peek().text == "+" || Peek().text == "-" || Peek().text == "||")) {
      const Token op = Take();
      ASSIGN_OR_RETURN(NodePtr right, ParseMultiplicative());
      ASSIGN_OR_RETURN(left, MakeArith(op.text, std::move(left), std::move(right), op.pos));
    }
    return left;
  }

  StatusOr<NodePtr> ParseMultiplicative() {
    ASSIGN_OR_RETURN(NodePtr left, ParseUnary());
    while (Peek().kind == Tok::kOp &&
           (Peek().text == "*" || Peek().text == "/" || Peek().text == "%")) {
      const Token op = Take();
      ASSIGN_OR_RETURN(NodePtr right, ParseUnary());
      ASSIGN_OR_RETURN(left, MakeArith(op.text, std::move(left), std::move(right), op.pos));
    }
    return left;
  }

  StatusOr<NodePtr> ParseUnary() {
    if (Peek().kind == Tok::kOp && (Peek().text == "-" || Peek().text == "+")) {
      const Token op = Take();
      if (op.text == "-" && Peek().kind == Tok::kNumber && Peek().text == "9223372036854775808") {
        Take();
        NodePtr lit = Make(ExprNode::Kind::kLiteral, op.pos);
        lit->type = Type::kInt64;
        lit->literal = Column(Type::kInt64);
        lit->literal.AppendInt(std::numeric_limits<int64_t>::min());
        return lit;
      }
      ASSIGN_OR_RETURN(NodePtr inner, ParseUnary());
      if (!inner->untyped_null && !IsNumeric(inner->type)) {
        return ErrorAt(
            op.pos, "type error: unary '" + op.text + "' needs a number, got " + Describe(*inner));
      }
      if (op.text == "+") return inner;
      // Fold negative number literals into one literal.
      if (inner->kind == ExprNode::Kind::kLiteral && !inner->untyped_null &&
          !inner->literal.IsNull(0)) {
        NodePtr lit = Make(ExprNode::Kind::kLiteral, op.pos);
        lit->type = inner->type;
        lit->literal = Column(inner->type);
        if (inner->type == Type::kDouble) {
          lit->literal.AppendDouble(-inner->literal.GetDouble(0));
          return lit;
        }
        lit->literal.AppendInt(-inner->literal.GetInt(0));
        return lit;
      }
      NodePtr node = Make(ExprNode::Kind::kNegate, op.pos);
      node->type = inner->untyped_null ? Type::kInt64 : inner->type;
      ASSIGN_OR_RETURN(inner, Coerce(std::move(inner), node->type, op.pos, "'-'"));
      node->args = {std::move(inner)};
      return node;
    }
    return ParsePrimary();
  }

  StatusOr<NodePtr> ParseNumber(const Token& t) {
    NodePtr node = Make(ExprNode::Kind::kLiteral, t.pos);
    const bool is_double = t.text.find_first_of(".eE") != std::string::npos;
    const char* begin = t.text.data();
    const char* end = begin + t.text.size();
    if (!is_double) {
      uint64_t v = 0;
      const auto [p, ec] = std::from_chars(begin, end, v);
      if (ec == std::errc() && p == end && v <= 9223372036854775807ULL) {
        node->type = Type::kInt64;
        node->literal = Column(Type::kInt64);
        node->literal.AppendInt(static_cast<int64_t>(v));
        return node;
      }
    }
    double d = 0;
    const auto [p, ec] = std::from_chars(begin, end, d);
    if (ec != std::errc() || p != end) return ErrorAt(t.pos, "invalid number '" + t.text + "'");
    node->type = Type::kDouble;
    node->literal = Column(Type::kDouble);
    node->literal.AppendDouble(d);
    return node;
  }

  StatusOr<NodePtr> ColumnRef(const Token& t) {
    const int index = schema_.IndexOf(t.text);
    if (index < 0) {
      std::string names;
      for (const lake::Field& f : schema_.fields) names += (names.empty() ? "" : ", ") + f.name;
      return InvalidArgumentError("unknown column '" + t.text + "' at position " +
                                  std::to_string(t.pos) + " (columns: " + names + ")");
    }
    NodePtr node = Make(ExprNode::Kind::kColumn, t.pos, t.text);
    node->column = index;
    node->type = schema_.fields[index].type;
    if (std::find(columns.begin(), columns.end(), t.text) == columns.end()) {
      columns.push_back(t.text);
    }
    return node;
  }

  StatusOr<NodePtr> ParsePrimary() {
    const Token t = Take();
    switch (t.kind) {
      case Tok::kEnd:
        return ErrorAt(t.pos, "unexpected end of expression");
      case Tok::kNumber:
        return ParseNumber(t);
      case Tok::kString: {
        NodePtr node = Make(ExprNode::Kind::kLiteral, t.pos);
        node->type = Type::kString;
        node->literal = Column(Type::kString);
        node->literal.AppendString(t.text);
        node->literal_is_string_text = true;
        return node;
      }
      case Tok::kQuotedIdent:
        return ColumnRef(t);
      case Tok::kOp:
        if (t.text == "(") {
          ASSIGN_OR_RETURN(NodePtr inner, ParseOr());
          RETURN_IF_ERROR(ExpectOp(")"));
          return inner;
        }
        return ErrorAt(t.pos, "unexpected '" + t.text + "'");
      case Tok::kIdent:
        break;
    }
    const std::string word = Lower(t.text);
    if (word == "true" || word == "false") {
      NodePtr node = Make(ExprNode::Kind::kLiteral, t.pos);
      node->type = Type::kBool;
      node->literal = Column(Type::kBool);
      node->literal.AppendBool(word == "true");
      return node;
    }
    if (word == "null") {
      NodePtr node = Make(ExprNode::Kind::kLiteral, t.pos);
      node->untyped_null = true;
      node->type = Type::kString;
      node->literal = Column(Type::kString);
      node->literal.AppendNull();
      return node;
    }
    if (word == "case") return ParseCase(t.pos);
    if (Peek().kind == Tok::kOp && Peek().text == "(") {
      Take();
      return ParseCall(word, t);
    }
    return ColumnRef(t);
  }

  StatusOr<NodePtr> ParseCase(int pos) {
    NodePtr node = Make(ExprNode::Kind::kCase, pos);
    std::vector<NodePtr> values;
    while (AcceptKeyword("when")) {
      const int cond_pos = Peek().pos;
      ASSIGN_OR_RETURN(NodePtr cond, ParseOr());
      ASSIGN_OR_RETURN(cond, RequireBool(std::move(cond), cond_pos, "WHEN"));
      if (!AcceptKeyword("then")) return ErrorAt(Peek().pos, "expected THEN");
      ASSIGN_OR_RETURN(NodePtr value, ParseOr());
      node->args.push_back(std::move(cond));
      node->args.push_back(std::move(value));
    }
    if (node->args.empty()) return ErrorAt(Peek().pos, "expected WHEN after CASE");
    if (AcceptKeyword("else")) {
      ASSIGN_OR_RETURN(NodePtr value, ParseOr());
      node->args.push_back(std::move(value));
      node->has_else = true;
    }
    if (!AcceptKeyword("end")) return ErrorAt(Peek().pos, "expected END to close CASE");
    std::vector<NodePtr*> branches;
    for (size_t i = 1; i < node->args.size(); i += 2) branches.push_back(&node->args[i]);
    if (node->has_else) branches.push_back(&node->args.back());
    ASSIGN_OR_RETURN(node->type, Unify(branches, pos, "CASE"));
    return node;
  }

  StatusOr<std::string> ParseUnitLiteral(const NodePtr& node, const std::string& fn) {
    if (node->kind != ExprNode::Kind::kLiteral || !node->literal_is_string_text) {
      return ErrorAt(node->pos, fn + " needs a unit literal such as 'day'");
    }
    std::string unit = Lower(node->literal.GetString(0));
    static constexpr std::string_view kUnits[] = {"year", "month",  "day",
                                                  "hour", "minute", "second"};
    if (std::find(std::begin(kUnits), std::end(kUnits), unit) == std::end(kUnits)) {
      return ErrorAt(node->pos,
                     "unknown unit '" + unit + "' (year, month, day, hour, minute or second)");
    }
    return unit;
  }

  StatusOr<NodePtr> ParseCall(const std::string& name, const Token& at) {
    const int pos = at.pos;
    if (name == "cast" || name == "try_cast") {
      ASSIGN_OR_RETURN(NodePtr inner, ParseOr());
      if (!AcceptKeyword("as")) return ErrorAt(Peek().pos, "expected AS in " + name);
      const Token type_token = Take();
      if (type_token.kind != Tok::kIdent) return ErrorAt(type_token.pos, "expected a type name");
      StatusOr<Type> type = lake::ParseType(Lower(type_token.text));
      if (!type.ok()) return ErrorAt(type_token.pos, "unknown type '" + type_token.text + "'");
      RETURN_IF_ERROR(ExpectOp(")"));
      if (inner->untyped_null) return Coerce(std::move(inner), *type, pos, name);
      if (!CanCast(inner->type, *type)) {
        return ErrorAt(pos, "type error: cannot cast " + std::string(lake::TypeName(inner->type)) +
                                " to " + std::string(lake::TypeName(*type)));
      }
      NodePtr node = Make(ExprNode::Kind::kCast, pos);
      node->type = *type;
      node->lenient = name == "try_cast";
      node->args = {std::move(inner)};
      return node;
    }
    NodePtr node = Make(ExprNode::Kind::kCall, pos, name);
    if (!AcceptOp(")")) {
      while (true) {
        if (name == "count" && Peek().kind == Tok::kOp && Peek().text == "*") {
          node->args.push_back(Make(ExprNode::Kind::kStar, Take().pos));
        } else {
          const bool outer = in_aggregate_;
          in_aggregate_ = outer || IsAggregate(name);
          StatusOr<NodePtr> arg = ParseOr();
          in_aggregate_ = outer;
          if (!arg.ok()) return arg.status();
          node->args.push_back(*std::move(arg));
        }
        if (AcceptOp(",")) continue;
        RETURN_IF_ERROR(ExpectOp(")"));
        break;
      }
    }
    if (IsAggregate(name)) {
      if (!allow_aggregates_) {
        return ErrorAt(pos, "aggregate function " + name + "() is only allowed in aggregate");
      }
      if (in_aggregate_) return ErrorAt(pos, "aggregate functions cannot be nested");
    }
    RETURN_IF_ERROR(BindCall(*node));
    return node;
  }

  Status Arity(const ExprNode& node, size_t min, size_t max) {
    if (node.args.size() < min || node.args.size() > max) {
      std::string want =
          min == max ? std::to_string(min) : std::to_string(min) + " to " + std::to_string(max);
      return ErrorAt(node.pos, node.op + "() takes " + want + " argument" + (max == 1 ? "" : "s") +
                                   ", got " + std::to_string(node.args.size()));
    }
    return Status::Ok();
  }

  Status ArgType(ExprNode& node, size_t i, Type type) {
    ASSIGN_OR_RETURN(node.args[i], Coerce(node.args[i], type, node.args[i]->pos,
                                          node.op + "() argument " + std::to_string(i + 1)));
    return Status::Ok();
  }

  Status BindCall(ExprNode& node) {
    const std::string& fn = node.op;
    auto need_numeric = [&](size_t i) -> Status {
      if (node.args[i]->untyped_null) return ArgType(node, i, Type::kDouble);
      if (!IsNumeric(node.args[i]->type)) {
        return ErrorAt(node.args[i]->pos,
                       "type error: " + fn + "() needs a number, got " + Describe(*node.args[i]));
      }
      return Status::Ok();
    };
    auto need_temporal = [&](size_t i) -> Status {
      const ExprNode& a = *node.args[i];
      if (a.untyped_null) return ArgType(node, i, Type::kTimestamp);
      if (!IsTemporal(a.type)) {
        return ErrorAt(a.pos,
                       "type error: " + fn + "() needs a timestamp or date, got " + Describe(a));
      }
      return Status::Ok();
    };
    if (fn == "coalesce") {
      if (node.args.empty()) return Arity(node, 1, 64);
      std::vector<NodePtr*> all;
      for (NodePtr& a : node.args) all.push_back(&a);
      ASSIGN_OR_RETURN(node.type, Unify(all, node.pos, "coalesce()"));
      return Status::Ok();
    }
    if (fn == "if") {
      RETURN_IF_ERROR(Arity(node, 3, 3));
      RETURN_IF_ERROR(ArgType(node, 0, Type::kBool));
      ASSIGN_OR_RETURN(node.type, Unify({&node.args[1], &node.args[2]}, node.pos, "if()"));
      return Status::Ok();
    }
    if (fn == "is_null") {
      RETURN_IF_ERROR(Arity(node, 1, 1));
      node.type = Type::kBool;
      return Status::Ok();
    }
    if (fn == "lower" || fn == "upper" || fn == "trim" || fn == "length") {
      RETURN_IF_ERROR(Arity(node, 1, 1));
      RETURN_IF_ERROR(ArgType(node, 0, Type::kString));
      node.type = fn == "length" ? Type::kInt64 : Type::kString;
      return Status::Ok();
    }
    if (fn == "substr" || fn == "substring") {
      node.op = "substr";
      RETURN_IF_ERROR(Arity(node, 2, 3));
      RETURN_IF_ERROR(ArgType(node, 0, Type::kString));
      for (size_t i = 1; i < node.args.size(); ++i) RETURN_IF_ERROR(ArgType(node, i, Type::kInt64));
      node.type = Type::kString;
      return Status::Ok();
    }
    if (fn == "concat") {
      if (node.args.empty()) return Arity(node, 1, 64);
      for (NodePtr& arg : node.args) {
        ASSIGN_OR_RETURN(arg, ToText(std::move(arg), node.pos, "concat()"));
      }
      node.type = Type::kString;
      return Status::Ok();
    }
    if (fn == "abs" || fn == "floor" || fn == "ceil") {
      RETURN_IF_ERROR(Arity(node, 1, 1));
      RETURN_IF_ERROR(need_numeric(0));
      node.type = node.args[0]->type;
      return Status::Ok();
    }
    if (fn == "round") {
      RETURN_IF_ERROR(Arity(node, 1, 2));
      RETURN_IF_ERROR(need_numeric(0));
      if (node.args.size() == 2) RETURN_IF_ERROR(ArgType(node, 1, Type::kInt64));
      node.type = node.args[0]->type;
      return Status::Ok();
    }
    if (fn == "date_trunc") {
      RETURN_IF_ERROR(Arity(node, 2, 2));
      ASSIGN_OR_RETURN(std::string unit, ParseUnitLiteral(node.args[0], fn));
      node.args[0]->literal = Column(Type::kString);
      node.args[0]->literal.AppendString(unit);
      RETURN_IF_ERROR(need_temporal(1));
      node.type = node.args[1]->type;
      if (node.type == Type::kDate && unit != "year" && unit != "month" && unit != "day") {
        return ErrorAt(node.args[0]->pos, "a date cannot be truncated to '" + unit + "'");
      }
      return Status::Ok();
    }
    if (fn == "year" || fn == "month" || fn == "day" || fn == "hour" || fn == "minute" ||
        fn == "second") {
      RETURN_IF_ERROR(Arity(node, 1, 1));
      RETURN_IF_ERROR(need_temporal(0));
      node.type = Type::kInt64;
      return Status::Ok();
    }
    if (fn == "to_date") {
      RETURN_IF_ERROR(Arity(node, 1, 1));
      RETURN_IF_ERROR(need_temporal(0));
      node.type = Type::kDate;
      return Status::Ok();
    }
    if (fn == "now") {
      RETURN_IF_ERROR(Arity(node, 0, 0));
      node.type = Type::kTimestamp;
      return Status::Ok();
    }
    if (IsAggregate(fn)) {
      RETURN_IF_ERROR(Arity(node, fn == "count" ? 0 : 1, 1));
      if (node.args.empty() || node.args[0]->kind == ExprNode::Kind::kStar) {
        if (fn != "count") return ErrorAt(node.pos, fn + "(*) is not allowed");
        node.type = Type::kInt64;
        return Status::Ok();
      }
      const ExprNode& a = *node.args[0];
      if (fn == "count") {
        node.type = Type::kInt64;
      } else if (fn == "sum" || fn == "avg") {
        RETURN_IF_ERROR(need_numeric(0));
        node.type = fn == "avg" ? Type::kDouble : node.args[0]->type;
      } else {
        if (a.untyped_null) return ErrorAt(a.pos, fn + "(NULL) has no type");
        node.type = a.type;
      }
      return Status::Ok();
    }
    return ErrorAt(node.pos, "unknown function '" + fn + "'");
  }

  std::vector<Token> tokens_;
  size_t pos_ = 0;
  const Schema& schema_;
  bool allow_aggregates_;
  bool in_aggregate_ = false;
};

// ---------------------------------------------------------------------------------------------
// Evaluation: every node produces a whole column.

class Evaluator {
 public:
  Evaluator(const Batch& batch, const EvalContext& context)
      : batch_(batch), context_(context), n_(batch.num_rows()) {}

  Column Eval(const ExprNode& node) {
    switch (node.kind) {
      case ExprNode::Kind::kLiteral:
        return Repeat(node.literal);
      case ExprNode::Kind::kColumn:
        return batch_.column(node.column);
      case ExprNode::Kind::kNegate:
        return Negate(node);
      case ExprNode::Kind::kArith:
        return Arith(node);
      case ExprNode::Kind::kConcat:
        return Concat(node);
      case ExprNode::Kind::kCompare:
        return Compare(node);
      case ExprNode::Kind::kAnd:
      case ExprNode::Kind::kOr:
        return Logic(node);
      case ExprNode::Kind::kNot: {
        Column c = Eval(*node.args[0]);
        for (int64_t i = 0; i < n_; ++i) c.ints()[i] = c.valid()[i] ? !c.ints()[i] : 0;
        return c;
      }
      case ExprNode::Kind::kIsNull: {
        const Column c = Eval(*node.args[0]);
        Column out = NullColumn(Type::kBool, n_);
        for (int64_t i = 0; i < n_; ++i) {
          out.valid()[i] = 1;
          out.ints()[i] = (c.valid()[i] == 0) != node.negated;
        }
        return out;
      }
      case ExprNode::Kind::kCase:
        return Case(node);
      case ExprNode::Kind::kCast:
        return Cast(node);
      case ExprNode::Kind::kCall:
        return Call(node);
      case ExprNode::Kind::kStar:
        break;
    }
    return NullColumn(node.type, n_);
  }

 private:
  void RowFailed(int64_t row, std::string reason) {
    if (context_.errors != nullptr) context_.errors->push_back({row, std::move(reason)});
  }

  Column Repeat(const Column& one) {
    Column out(one.type());
    if (one.IsNull(0)) return NullColumn(one.type(), n_);
    if (one.type() == Type::kString) {
      out.Reserve(n_, static_cast<int64_t>(one.GetString(0).size()) * n_);
      for (int64_t i = 0; i < n_; ++i) out.AppendString(one.GetString(0));
      return out;
    }
    out.valid().assign(n_, 1);
    if (one.type() == Type::kDouble) {
      out.doubles().assign(n_, one.GetDouble(0));
    } else {
      out.ints().assign(n_, one.GetInt(0));
    }
    return out;
  }

  Column Negate(const ExprNode& node) {
    Column c = Eval(*node.args[0]);
    if (c.type() == Type::kDouble) {
      for (int64_t i = 0; i < n_; ++i) c.doubles()[i] = -c.doubles()[i];
      return c;
    }
    for (int64_t i = 0; i < n_; ++i) {
      if (!c.valid()[i]) continue;
      if (c.ints()[i] == std::numeric_limits<int64_t>::min()) {
        c.valid()[i] = 0;
        RowFailed(i, "integer overflow in unary '-'");
        continue;
      }
      c.ints()[i] = -c.ints()[i];
    }
    return c;
  }

  Column Arith(const ExprNode& node) {
    const Column a = Eval(*node.args[0]);
    const Column b = Eval(*node.args[1]);
    Column out = NullColumn(node.type, n_);
    const char op = node.op[0];
    if (node.type == Type::kDouble) {
      const double* x = a.doubles().data();
      const double* y = b.doubles().data();
      double* r = out.doubles().data();
      for (int64_t i = 0; i < n_; ++i) {
        const uint8_t v = a.valid()[i] & b.valid()[i];
        out.valid()[i] = v;
        if (!v) continue;
        switch (op) {
          case '+':
            r[i] = x[i] + y[i];
            break;
          case '-':
            r[i] = x[i] - y[i];
            break;
          case '*':
            r[i] = x[i] * y[i];
            break;
          case '/':
          case '%':
            if (y[i] == 0) {
              out.valid()[i] = 0;
              RowFailed(i, op == '/' ? "division by zero" : "modulo by zero");
            } else {
              r[i] = op == '/' ? x[i] / y[i] : std::fmod(x[i], y[i]);
            }
            break;
        }
      }
      return out;
    }
    const int64_t* x = a.ints().data();
    const int64_t* y = b.ints().data();
    int64_t* r = out.ints().data();
    for (int64_t i = 0; i < n_; ++i) {
      const uint8_t v = a.valid()[i] & b.valid()[i];
      out.valid()[i] = v;
      if (!v) continue;
      bool overflow = false;
      switch (op) {
        case '+':
          overflow = __builtin_add_overflow(x[i], y[i], &r[i]);
          break;
        case '-':
          overflow = __builtin_sub_overflow(x[i], y[i], &r[i]);
          break;
        case '*':
          overflow = __builtin_mul_overflow(x[i], y[i], &r[i]);
          break;
        case '%':
          if (y[i] == 0) {
            out.valid()[i] = 0;
            RowFailed(i, "modulo by zero");
            continue;
          }
          r[i] = y[i] == -1 ? 0 : x[i] % y[i];
          break;
      }
      if (overflow) {
        out.valid()[i] = 0;
        r[i] = 0;
        RowFailed(i, "integer overflow in '" + node.op + "'");
      }
    }
    return out;
  }

  Column Concat(const ExprNode& node) {
    const Column a = Eval(*node.args[0]);
    const Column b = Eval(*node.args[1]);
    Column out(Type::kString);
    out.Reserve(n_, static_cast<int64_t>(a.chars().size() + b.chars().size()));
    std::string tmp;
    for (int64_t i = 0; i < n_; ++i) {
      if (a.IsNull(i) || b.IsNull(i)) {
        out.AppendNull();
        continue;
      }
      tmp.assign(a.GetString(i));
      tmp.append(b.GetString(i));
      out.AppendString(tmp);
    }
    return out;
  }

  template <typename T>
  static bool CompareValues(const std::string& op, const T& x, const T& y) {
    switch (op.size() == 1 ? op[0] : op[0] + 128) {
      case '=':
        return x == y;
      case '<':
        return x < y;
      case '>':
        return x > y;
      case '!' + 128:
        return x != y;
      case '<' + 128:
        return x <= y;
      case '>' + 128:
        return x >= y;
    }
    return false;
  }

  Column Compare(const ExprNode& node) {
    const Column a = Eval(*node.args[0]);
    const Column b = Eval(*node.args[1]);
    Column out = NullColumn(Type::kBool, n_);
    const Type t = a.type();
    for (int64_t i = 0; i < n_; ++i) {
      const uint8_t v = a.valid()[i] & b.valid()[i];
      out.valid()[i] = v;
      if (!v) continue;
      bool r = false;
      if (t == Type::kDouble) {
        r = CompareValues(node.op, a.doubles()[i], b.doubles()[i]);
      } else if (t == Type::kString) {
        r = CompareValues(node.op, a.GetString(i), b.GetString(i));
      } else {
        r = CompareValues(node.op, a.ints()[i], b.ints()[i]);
      }
      out.ints()[i] = r;
    }
    return out;
  }

  Column Logic(const ExprNode& node) {
    const Column a = Eval(*node.args[0]);
    const Column b = Eval(*node.args[1]);
    Column out = NullColumn(Type::kBool, n_);
    const bool is_and = node.kind == ExprNode::Kind::kAnd;
    for (int64_t i = 0; i < n_; ++i) {
      const bool av = a.valid()[i], bv = b.valid()[i];
      const bool ax = av && a.ints()[i], bx = bv && b.ints()[i];
      if (is_and) {
        if ((av && !ax) || (bv && !bx)) {
          out.valid()[i] = 1;
          out.ints()[i] = 0;
        } else if (av && bv) {
          out.valid()[i] = 1;
          out.ints()[i] = 1;
        }
      } else {
        if (ax || bx) {
          out.valid()[i] = 1;
          out.ints()[i] = 1;
        } else if (av && bv) {
          out.valid()[i] = 1;
          out.ints()[i] = 0;
        }
      }
    }
    return out;
  }

  Column Case(const ExprNode& node) {
    std::vector<Column> parts;
    parts.reserve(node.args.size());
    for (const NodePtr& arg : node.args) parts.push_back(Eval(*arg));
    Column out(node.type);
    const size_t pairs = node.args.size() / 2;
    for (int64_t i = 0; i < n_; ++i) {
      bool done = false;
      for (size_t k = 0; k < pairs; ++k) {
        const Column& cond = parts[2 * k];
        if (cond.valid()[i] && cond.ints()[i]) {
          out.AppendFrom(parts[2 * k + 1], i);
          done = true;
          break;
        }
      }
      if (!done) {
        if (node.has_else) {
          out.AppendFrom(parts.back(), i);
        } else {
          out.AppendNull();
        }
      }
    }
    return out;
  }

  Column Cast(const ExprNode& node) {
    const Column in = Eval(*node.args[0]);
    if (in.type() == node.type) return in;
    Column out(node.type);
    for (int64_t i = 0; i < n_; ++i) {
      std::optional<std::string> error = AppendConverted(in, i, node.type, &out);
      if (error && !node.lenient) RowFailed(i, *error);
    }
    return out;
  }

  static int64_t TruncMicros(int64_t micros, const std::string& unit) {
    if (unit == "second") return FloorDiv(micros, kMicrosPerSecond) * kMicrosPerSecond;
    if (unit == "minute") return FloorDiv(micros, 60 * kMicrosPerSecond) * 60 * kMicrosPerSecond;
    if (unit == "hour") return FloorDiv(micros, 3600 * kMicrosPerSecond) * 3600 * kMicrosPerSecond;
    const int64_t days = FloorDiv(micros, kMicrosPerDay);
    if (unit == "day") return days * kMicrosPerDay;
    const CivilDate c = CivilFromDays(days);
    return DaysFromCivil(c.year, unit == "year" ? 1 : c.month, 1) * kMicrosPerDay;
  }

  static int64_t Part(int64_t micros, const std::string& fn) {
    const int64_t days = FloorDiv(micros, kMicrosPerDay);
    const int64_t in_day = micros - days * kMicrosPerDay;
    if (fn == "hour") return in_day / (3600 * kMicrosPerSecond);
    if (fn == "minute") return in_day / (60 * kMicrosPerSecond) % 60;
    if (fn == "second") return in_day / kMicrosPerSecond % 60;
    const CivilDate c = CivilFromDays(days);
    if (fn == "year") return c.year;
    if (fn == "month") return c.month;
    return c.day;
  }

  static size_t Utf8Length(std::string_view s) {
    size_t n = 0;
    for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
    return n;
  }

  // Byte offset of code point `k` (0-based) in `s`, or s.size().
  static size_t Utf8Offset(std::string_view s, int64_t k) {
    size_t i = 0;
    for (; i < s.size() && k > 0; ++i) {
      if (i + 1 >= s.size() || (static_cast<unsigned char>(s[i + 1]) & 0xC0) != 0x80) --k;
    }
    return i;
  }

  Column Call(const ExprNode& node) {
    const std::string& fn = node.op;
    std::vector<Column> args;
    args.reserve(node.args.size());
    if (fn == "now") {
      const int64_t micros = std::chrono::duration_cast<std::chrono::microseconds>(
                                 context_.clock->WallNow().time_since_epoch())
                                 .count();
      Column out = NullColumn(Type::kTimestamp, n_);
      out.valid().assign(n_, 1);
      out.ints().assign(n_, micros);
      return out;
    }
    for (const NodePtr& arg : node.args) args.push_back(Eval(*arg));
    if (fn == "coalesce") {
      Column out(node.type);
      for (int64_t i = 0; i < n_; ++i) {
        bool done = false;
        for (const Column& a : args) {
          if (!a.IsNull(i)) {
            out.AppendFrom(a, i);
            done = true;
            break;
          }
        }
        if (!done) out.AppendNull();
      }
      return out;
    }
    if (fn == "if") {
      Column out(node.type);
      for (int64_t i = 0; i < n_; ++i) {
        const bool cond = args[0].valid()[i] && args[0].ints()[i];
        out.AppendFrom(cond ? args[1] : args[2], i);
      }
      return out;
    }
    if (fn == "is_null") {
      Column out = NullColumn(Type::kBool, n_);
      for (int64_t i = 0; i < n_; ++i) {
        out.valid()[i] = 1;
        out.ints()[i] = args[0].IsNull(i);
      }
      return out;
    }
    if (fn == "concat") {
      Column out(Type::kString);
      std::string tmp;
      for (int64_t i = 0; i < n_; ++i) {
        tmp.clear();
        for (const Column& a : args) {
          if (!a.IsNull(i)) tmp.append(a.GetString(i));
        }
        out.AppendString(tmp);
      }
      return out;
    }
    Column out(node.type);
    std::string tmp;
    for (int64_t i = 0; i < n_; ++i) {
      bool any_null = false;
      for (const Column& a : args) any_null |= a.IsNull(i);
      if (any_null) {
        out.AppendNull();
        continue;
      }
      const Column& a = args[0];
      if (fn == "lower" || fn == "upper") {
        tmp.assign(a.GetString(i));
        for (char& c : tmp) {
          c = static_cast<char>(fn == "lower" ? std::tolower(static_cast<unsigned char>(c))
                                              : std::toupper(static_cast<unsigned char>(c)));
        }
        out.AppendString(tmp);
      } else if (fn == "trim") {
        std::string_view s = a.GetString(i);
        while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) {
          s.remove_prefix(1);
        }
        while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) {
          s.remove_suffix(1);
        }
        out.AppendString(s);
      } else if (fn == "length") {
        out.AppendInt(static_cast<int64_t>(Utf8Length(a.GetString(i))));
      } else if (fn == "substr") {
        // SQL semantics: characters [start, start + length) counted from 1, clipped at 1.
        const std::string_view s = a.GetString(i);
        const int64_t start = args[1].GetInt(i);
        int64_t end = std::numeric_limits<int64_t>::max();
        if (args.size() == 3) {
          const int64_t length = args[2].GetInt(i);
          if (length < 0) {
            out.AppendNull();
            RowFailed(i, "substr() length is negative");
            continue;
          }
          end = length > end - start ? end : start + length;
        }
        const int64_t from = std::max<int64_t>(start, 1) - 1;
        const int64_t to = end - 1;
        if (to <= from) {
          out.AppendString("");
          continue;
        }
        const size_t b = Utf8Offset(s, from);
        const size_t e = Utf8Offset(s, to);
        out.AppendString(s.substr(b, e - b));
      } else if (fn == "abs" || fn == "floor" || fn == "ceil" || fn == "round") {
        if (a.type() == Type::kDouble) {
          const double x = a.GetDouble(i);
          double r = x;
          if (fn == "abs") {
            r = std::fabs(x);
          } else if (fn == "floor") {
            r = std::floor(x);
          } else if (fn == "ceil") {
            r = std::ceil(x);
          } else {
            const int64_t digits = args.size() == 2 ? args[1].GetInt(i) : 0;
            const double scale =
                std::pow(10.0, static_cast<double>(std::clamp<int64_t>(digits, -300, 300)));
            r = std::round(x * scale) / scale;
            if (!std::isfinite(r)) r = x;
          }
          out.AppendDouble(r);
        } else {
          int64_t x = a.GetInt(i);
          if (fn == "abs" && x < 0) {
            if (x == std::numeric_limits<int64_t>::min()) {
              out.AppendNull();
              RowFailed(i, "integer overflow in abs()");
              continue;
            }
            x = -x;
          }
          if (fn == "round" && args.size() == 2 && args[1].GetInt(i) < 0) {
            const int64_t digits = -args[1].GetInt(i);
            if (digits >= 19) {
              x = 0;
            } else {
              int64_t scale = 1;
              for (int64_t k = 0; k < digits; ++k) scale *= 10;
              const int64_t q = x / scale, rem = x % scale;
              x = q * scale;
              if (2 * (rem < 0 ? -rem : rem) >= scale) x += rem < 0 ? -scale : scale;
            }
          }
          out.AppendInt(x);
        }
      } else if (fn == "date_trunc") {
        const std::string unit(args[0].GetString(i));
        const Column& t = args[1];
        if (t.type() == Type::kDate) {
          out.AppendInt(TruncMicros(t.GetInt(i) * kMicrosPerDay, unit) / kMicrosPerDay);
        } else {
          out.AppendInt(TruncMicros(t.GetInt(i), unit));
        }
      } else if (fn == "to_date") {
        out.AppendInt(a.type() == Type::kDate ? a.GetInt(i) : FloorDiv(a.GetInt(i), kMicrosPerDay));
      } else if (fn == "year" || fn == "month" || fn == "day" || fn == "hour" || fn == "minute" ||
                 fn == "second") {
        const int64_t micros = a.type() == Type::kDate ? a.GetInt(i) * kMicrosPerDay : a.GetInt(i);
        out.AppendInt(Part(micros, fn));
      } else {
        // Aggregates are evaluated by the aggregate step, never here.
        out.AppendNull();
      }
    }
    return out;
  }

  const Batch& batch_;
  const EvalContext& context_;
  int64_t n_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Expression

Expression::~Expression() = default;

StatusOr<std::unique_ptr<Expression>> Expression::Compile(std::string_view text,
                                                          const Schema& schema,
                                                          bool allow_aggregates) {
  ASSIGN_OR_RETURN(std::vector<Token> tokens, Lex(text));
  if (tokens.size() == 1) return InvalidArgumentError("empty expression");
  Parser parser(std::move(tokens), schema, allow_aggregates);
  ASSIGN_OR_RETURN(NodePtr root, parser.ParseAll());
  std::unique_ptr<Expression> expr(new Expression());
  expr->text_ = std::string(text);
  expr->columns_ = std::move(parser.columns);
  expr->root_ = std::move(root);
  return expr;
}

Type Expression::type() const { return root_->type; }

bool Expression::is_untyped_null() const { return root_->untyped_null; }

Status Expression::Evaluate(const Batch& batch, const EvalContext& context, Column* out) const {
  if (batch.num_rows() == 0) {
    *out = Column(root_->type);
    return Status::Ok();
  }
  Evaluator evaluator(batch, context);
  *out = evaluator.Eval(*root_);
  if (out->type() != root_->type || out->size() != batch.num_rows()) {
    return InternalError("expression '" + text_ + "' produced a column of the wrong shape");
  }
  return Status::Ok();
}

StatusOr<Expression::AggregateCall> Expression::SplitAggregate() const {
  if (root_->kind != ExprNode::Kind::kCall || !IsAggregate(root_->op)) {
    return InvalidArgumentError("'" + text_ +
                                "' is not an aggregate call (count, sum, min, max or avg)");
  }
  AggregateCall call;
  call.function = root_->op;
  if (!root_->args.empty() && root_->args[0]->kind != ExprNode::Kind::kStar) {
    std::unique_ptr<Expression> arg(new Expression());
    arg->text_ = text_;
    arg->root_ = root_->args[0];
    call.argument = std::move(arg);
  }
  return call;
}

}  // namespace edgeloop::pipeline
