#include "registry/oci.h"

#include <nlohmann/json.hpp>
#include <regex>

namespace edgeloop::registry {
namespace {

using Json = nlohmann::json;

Json DescriptorToJson(const Descriptor& d) {
  Json json = {{"mediaType", d.media_type}, {"digest", d.digest.str()}, {"size", d.size}};
  if (!d.artifact_type.empty()) json["artifactType"] = d.artifact_type;
  if (!d.annotations.empty()) json["annotations"] = d.annotations;
  return json;
}

std::string Dump(const Json& json) {
  // nlohmann::json keeps object keys sorted (std::map), and dump() adds no whitespace, so this
  // is canonical for the structures we write.
  return json.dump(-1, ' ', false, Json::error_handler_t::strict);
}

StatusOr<std::map<std::string, std::string>> AnnotationsFrom(const Json& json,
                                                             const std::string& where) {
  std::map<std::string, std::string> annotations;
  if (!json.contains("annotations")) return annotations;
  const Json& object = json["annotations"];
  if (!object.is_object()) return InvalidArgumentError(where + ": annotations must be an object");
  for (const auto& [key, value] : object.items()) {
    if (!value.is_string()) {
      return InvalidArgumentError(where + ": annotation '" + key + "' must be a string");
    }
    annotations[key] = value.get<std::string>();
  }
  return annotations;
}

StatusOr<Descriptor> DescriptorFrom(const Json& json, const std::string& where) {
  if (!json.is_object()) return InvalidArgumentError(where + " must be an object");
  Descriptor d;
  if (!json.contains("mediaType") || !json["mediaType"].is_string()) {
    return InvalidArgumentError(where + " has no mediaType");
  }
  d.media_type = json["mediaType"].get<std::string>();
  if (!json.contains("digest") || !json["digest"].is_string()) {
    return InvalidArgumentError(where + " has no digest");
  }
  ASSIGN_OR_RETURN(d.digest, Digest::Parse(json["digest"].get<std::string>()));
  if (!json.contains("size") || !json["size"].is_number_integer() ||
      json["size"].get<int64_t>() < 0) {
    return InvalidArgumentError(where + " needs a non-negative integer size");
  }
  d.size = json["size"].get<int64_t>();
  if (json.contains("artifactType")) {
    if (!json["artifactType"].is_string()) {
      return InvalidArgumentError(where + ": artifactType must be a string");
    }
    d.artifact_type = json["artifactType"].get<std::string>();
  }
  ASSIGN_OR_RETURN(d.annotations, AnnotationsFrom(json, where));
  return d;
}

StatusOr<Json> ParseObject(std::string_view bytes, const char* what, const char* media_type) {
  Json json = Json::parse(bytes, nullptr, false);
  if (json.is_discarded() || !json.is_object()) {
    return InvalidArgumentError(std::string(what) + " is not a JSON object");
  }
  if (!json.contains("schemaVersion") || json["schemaVersion"] != 2) {
    return InvalidArgumentError(std::string(what) + " must have schemaVersion 2");
  }
  if (json.contains("mediaType") &&
      (!json["mediaType"].is_string() || json["mediaType"].get<std::string>() != media_type)) {
    return InvalidArgumentError(std::string(what) + " has mediaType " + json["mediaType"].dump() +
                                ", expected " + media_type);
  }
  return json;
}

}  // namespace

Descriptor DescribeBytes(std::string_view media_type, std::string_view bytes) {
  Descriptor d;
  d.media_type = std::string(media_type);
  d.digest = Digest::Of(bytes);
  d.size = static_cast<int64_t>(bytes.size());
  return d;
}

std::string SerializeManifest(const Manifest& manifest) {
  Json json = {{"schemaVersion", 2}, {"mediaType", media_type::kImageManifest}};
  if (!manifest.artifact_type.empty()) json["artifactType"] = manifest.artifact_type;
  json["config"] = DescriptorToJson(manifest.config);
  json["layers"] = Json::array();
  for (const Descriptor& layer : manifest.layers) json["layers"].push_back(DescriptorToJson(layer));
  if (manifest.subject) json["subject"] = DescriptorToJson(*manifest.subject);
  if (!manifest.annotations.empty()) json["annotations"] = manifest.annotations;
  return Dump(json);
}

std::string SerializeIndex(const Index& index) {
  Json json = {{"schemaVersion", 2}, {"mediaType", media_type::kImageIndex}};
  json["manifests"] = Json::array();
  for (const Descriptor& d : index.manifests) json["manifests"].push_back(DescriptorToJson(d));
  if (!index.annotations.empty()) json["annotations"] = index.annotations;
  return Dump(json);
}

StatusOr<Manifest> ParseManifest(std::string_view bytes) {
  ASSIGN_OR_RETURN(Json json, ParseObject(bytes, "manifest", media_type::kImageManifest));
  Manifest manifest;
  if (json.contains("artifactType")) {
    if (!json["artifactType"].is_string()) {
      return InvalidArgumentError("manifest: artifactType must be a string");
    }
    manifest.artifact_type = json["artifactType"].get<std::string>();
  }
  if (!json.contains("config")) return InvalidArgumentError("manifest has no config");
  ASSIGN_OR_RETURN(manifest.config, DescriptorFrom(json["config"], "manifest config"));
  if (json.contains("layers")) {
    if (!json["layers"].is_array()) return InvalidArgumentError("manifest layers must be a list");
    for (size_t i = 0; i < json["layers"].size(); ++i) {
      ASSIGN_OR_RETURN(Descriptor layer,
                       DescriptorFrom(json["layers"][i], "layer " + std::to_string(i)));
      manifest.layers.push_back(std::move(layer));
    }
  }
  if (json.contains("subject")) {
    ASSIGN_OR_RETURN(Descriptor subject, DescriptorFrom(json["subject"], "manifest subject"));
    manifest.subject = std::move(subject);
  }
  ASSIGN_OR_RETURN(manifest.annotations, AnnotationsFrom(json, "manifest"));
  return manifest;
}

StatusOr<Index> ParseIndex(std::string_view bytes) {
  ASSIGN_OR_RETURN(Json json, ParseObject(bytes, "index", media_type::kImageIndex));
  Index index;
  if (json.contains("manifests")) {
    if (!json["manifests"].is_array()) {
      return InvalidArgumentError("index manifests must be a list");
    }
    for (size_t i = 0; i < json["manifests"].size(); ++i) {
      ASSIGN_OR_RETURN(Descriptor d,
                       DescriptorFrom(json["manifests"][i], "index entry " + std::to_string(i)));
      index.manifests.push_back(std::move(d));
    }
  }
  ASSIGN_OR_RETURN(index.annotations, AnnotationsFrom(json, "index"));
  return index;
}

std::string ManifestMediaType(std::string_view bytes) {
  Json json = Json::parse(bytes, nullptr, false);
  if (json.is_object() && json.contains("mediaType") && json["mediaType"].is_string()) {
    return json["mediaType"].get<std::string>();
  }
  return media_type::kImageManifest;
}

bool IsValidRepositoryName(std::string_view name) {
  static const std::regex kPattern(
      "[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*");
  return !name.empty() && name.size() <= 255 &&
         std::regex_match(name.begin(), name.end(), kPattern);
}

bool IsValidTag(std::string_view tag) {
  static const std::regex kPattern("[A-Za-z0-9_][A-Za-z0-9._-]{0,127}");
  return std::regex_match(tag.begin(), tag.end(), kPattern);
}

std::string ReferrersFallbackTag(const Digest& subject) {
  return "sha256-" + std::string(subject.hex());
}

}  // namespace edgeloop::registry
