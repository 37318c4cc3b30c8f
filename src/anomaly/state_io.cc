#include "anomaly/state_io.h"

namespace edgeloop::anomaly {

Status StateReader::Raw(void* p, size_t n) {
  if (failed_ || data_.size() - pos_ < n) {
    failed_ = true;
    return DataLossError("detector state is truncated");
  }
  if (n == 0) return Status::Ok();  // an empty vector's data() may be null: no memcpy
  std::memcpy(p, data_.data() + pos_, n);
  pos_ += n;
  return Status::Ok();
}

Status StateReader::Count(uint64_t* n, uint64_t max) {
  RETURN_IF_ERROR(U64(n));
  if (*n > max) {
    failed_ = true;
    return DataLossError("detector state holds an impossible count " + std::to_string(*n));
  }
  return Status::Ok();
}

Status StateReader::Str(std::string* s) {
  uint64_t n = 0;
  RETURN_IF_ERROR(Count(&n, remaining() - (remaining() >= 8 ? 8 : remaining())));
  s->assign(data_.substr(pos_, n));
  pos_ += n;
  return Status::Ok();
}

Status StateReader::F64s(std::vector<double>* v, uint64_t max_count) {
  uint64_t n = 0;
  RETURN_IF_ERROR(Count(&n, max_count));
  if (n * sizeof(double) > remaining()) {
    failed_ = true;
    return DataLossError("detector state is truncated");
  }
  v->resize(n);
  return Raw(v->data(), n * sizeof(double));
}

uint64_t Fnv1a64(std::string_view data) {
  uint64_t h = 14695981039346656037ull;
  for (char c : data) {
    h ^= static_cast<unsigned char>(c);
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace edgeloop::anomaly
