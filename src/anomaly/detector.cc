#include "anomaly/detector.h"

#include <charconv>
#include <cmath>
#include <sstream>

#include "anomaly/context_detector.h"
#include "anomaly/ewma_detector.h"
#include "anomaly/knn_cad.h"

namespace edgeloop::anomaly {
namespace {

// Takes `key` out of `params` when present.
std::optional<std::string> Take(std::map<std::string, std::string>* params, const char* key) {
  const auto it = params->find(key);
  if (it == params->end()) return std::nullopt;
  std::string value = std::move(it->second);
  params->erase(it);
  return value;
}

Status ParseDouble(std::map<std::string, std::string>* params, const char* key, double lo,
                   double hi, double* out) {
  const auto text = Take(params, key);
  if (!text) return Status::Ok();
  double value = 0;
  const char* end = text->data() + text->size();
  const auto [ptr, ec] = std::from_chars(text->data(), end, value);
  if (ec != std::errc() || ptr != end || !std::isfinite(value) || value < lo || value > hi) {
    std::ostringstream msg;
    msg << "parameter " << key << " = '" << *text << "': expected a number in [" << lo << ", " << hi
        << "]";
    return InvalidArgumentError(msg.str());
  }
  *out = value;
  return Status::Ok();
}

Status ParseInt(std::map<std::string, std::string>* params, const char* key, int64_t lo, int64_t hi,
                int64_t* out) {
  const auto text = Take(params, key);
  if (!text) return Status::Ok();
  int64_t value = 0;
  const char* end = text->data() + text->size();
  const auto [ptr, ec] = std::from_chars(text->data(), end, value);
  if (ec != std::errc() || ptr != end || value < lo || value > hi) {
    return InvalidArgumentError("parameter " + std::string(key) + " = '" + *text +
                                "': expected an integer in [" + std::to_string(lo) + ", " +
                                std::to_string(hi) + "]");
  }
  *out = value;
  return Status::Ok();
}

}  // namespace

StatusOr<DetectorOptions> DetectorOptions::Parse(std::map<std::string, std::string>* params) {
  DetectorOptions o;
  if (auto d = Take(params, "detector")) {
    if (*d != "ewma" && *d != "knn_cad" && *d != "context") {
      return InvalidArgumentError("parameter detector = '" + *d +
                                  "': expected ewma, knn_cad or context");
    }
    o.detector = *d;
  }
  constexpr double kHuge = 1e300;
  // The verdict threshold's default depends on the detector's score scale.
  RETURN_IF_ERROR(ParseInt(params, "cad_ose", 0, 1, &o.cad_ose));
  o.threshold = o.detector == "knn_cad" ? 0.9965 : o.cad_ose > 0 ? 0.75 : 0.5;
  RETURN_IF_ERROR(ParseDouble(params, "threshold", 0, 1, &o.threshold));
  RETURN_IF_ERROR(ParseInt(params, "probation", 0, 1000000, &o.probation));
  double v = 0;
  if (params->contains("input_min")) {
    RETURN_IF_ERROR(ParseDouble(params, "input_min", -kHuge, kHuge, &v));
    o.input_min = v;
  }
  if (params->contains("input_max")) {
    RETURN_IF_ERROR(ParseDouble(params, "input_max", -kHuge, kHuge, &v));
    o.input_max = v;
  }
  if (o.input_min.has_value() != o.input_max.has_value()) {
    return InvalidArgumentError("parameters input_min and input_max go together");
  }
  if (o.input_min && !(*o.input_max > *o.input_min)) {
    return InvalidArgumentError("parameter input_max must be greater than input_min");
  }
  RETURN_IF_ERROR(ParseInt(params, "suppress", -1, 100000000, &o.suppress));
  o.likelihood = o.detector == "ewma" ? 1 : 0;
  RETURN_IF_ERROR(ParseDouble(params, "range_tolerance", 0, 1e6, &o.range_tolerance));
  RETURN_IF_ERROR(ParseInt(params, "mean_window", 0, 100000, &o.mean_window));
  RETURN_IF_ERROR(ParseInt(params, "time_scales", 1, 4, &o.time_scales));
  RETURN_IF_ERROR(ParseInt(params, "likelihood", 0, 1, &o.likelihood));
  RETURN_IF_ERROR(ParseInt(params, "likelihood_window", 1, 10000, &o.likelihood_window));
  RETURN_IF_ERROR(ParseDouble(params, "likelihood_alpha", 1e-9, 1, &o.likelihood_alpha));
  RETURN_IF_ERROR(ParseDouble(params, "alpha", 1e-9, 1, &o.alpha));
  RETURN_IF_ERROR(ParseDouble(params, "z_threshold", 1e-6, 1e6, &o.z_threshold));
  RETURN_IF_ERROR(ParseDouble(params, "huber", 1e-3, 1e6, &o.huber));
  RETURN_IF_ERROR(ParseDouble(params, "peak_halflife", 0, 1e9, &o.peak_halflife));
  RETURN_IF_ERROR(ParseInt(params, "dim", 1, 256, &o.dim));
  RETURN_IF_ERROR(ParseInt(params, "k", 1, 100000, &o.k));
  RETURN_IF_ERROR(ParseInt(params, "window", -1, 100000, &o.window));
  RETURN_IF_ERROR(ParseInt(params, "bins", 1, 1 << 20, &o.bins));
  RETURN_IF_ERROR(ParseInt(params, "max_order", 1, 64, &o.max_order));
  RETURN_IF_ERROR(ParseInt(params, "resolutions", 1, 8, &o.resolutions));
  RETURN_IF_ERROR(ParseDouble(params, "calm", 0, 1e9, &o.calm));
  RETURN_IF_ERROR(ParseInt(params, "max_contexts", 1, 100000000, &o.max_contexts));
  RETURN_IF_ERROR(ParseInt(params, "value_bits", 1, 20, &o.value_bits));
  RETURN_IF_ERROR(ParseInt(params, "max_left", 1, 1000, &o.max_left));
  RETURN_IF_ERROR(ParseInt(params, "max_active", 0, 1000, &o.max_active));
  // The longest moving average keeps mean_window^(time_scales - 1) values per series.
  double longest = 1;
  for (int64_t k = 1; k < o.time_scales; ++k) longest *= static_cast<double>(o.mean_window);
  if (o.mean_window > 1 && longest > 1e6) {
    return InvalidArgumentError(
        "parameters mean_window and time_scales: the longest moving average, mean_window^"
        "(time_scales - 1) = " +
        std::to_string(static_cast<int64_t>(std::min(longest, 1e18))) +
        " points, must be at most 1000000");
  }
  if (o.detector == "knn_cad") {
    const int64_t window = o.window > 0 ? o.window : o.probation;
    if (window <= o.dim + o.k) {
      return InvalidArgumentError(
          "knn_cad needs window (or probation) > dim + k; window = " + std::to_string(window) +
          ", dim = " + std::to_string(o.dim) + ", k = " + std::to_string(o.k));
    }
  }
  return o;
}

std::string DetectorOptions::Fingerprint() const {
  std::ostringstream out;
  out.precision(17);
  out << "detector=" << detector << ";threshold=" << threshold << ";probation=" << probation
      << ";input_min=" << (input_min ? std::to_string(*input_min) : "-")
      << ";input_max=" << (input_max ? std::to_string(*input_max) : "-")
      << ";suppress=" << suppress;
  if (detector != "knn_cad") {
    out << ";range_tolerance=" << range_tolerance << ";likelihood=" << likelihood;
    if (likelihood > 0) {
      out << ";likelihood_window=" << likelihood_window << ";likelihood_alpha=" << likelihood_alpha;
    }
  }
  if (detector == "ewma") {
    out << ";alpha=" << alpha << ";z_threshold=" << z_threshold << ";huber=" << huber
        << ";peak_halflife=" << peak_halflife;
  } else if (detector == "knn_cad") {
    out << ";dim=" << dim << ";k=" << k << ";window=" << window;
  } else {
    out << ";bins=" << bins << ";max_order=" << max_order << ";resolutions=" << resolutions
        << ";calm=" << calm << ";max_contexts=" << max_contexts;
    if (cad_ose == 0) out << ";mean_window=" << mean_window << ";time_scales=" << time_scales;
    if (cad_ose > 0) {
      out << ";cad_ose=1;value_bits=" << value_bits << ";max_left=" << max_left
          << ";max_active=" << max_active;
    }
  }
  return out.str();
}

StatusOr<std::unique_ptr<Detector>> CreateDetector(const DetectorOptions& options) {
  if (options.detector == "ewma") return std::unique_ptr<Detector>(new EwmaDetector(options));
  if (options.detector == "knn_cad") {
    return std::unique_ptr<Detector>(new KnnCadDetector(options));
  }
  if (options.detector == "context" && options.cad_ose > 0) {
    return std::unique_ptr<Detector>(new CadOseDetector(options));
  }
  if (options.detector == "context") {
    return std::unique_ptr<Detector>(new ContextDetector(options));
  }
  return InvalidArgumentError("unknown detector '" + options.detector + "'");
}

}  // namespace edgeloop::anomaly
