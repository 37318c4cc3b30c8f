// Models as OCI artifacts.
//
// A model version directory (model.yaml, the model file, optional card.json and any other files)
// becomes an OCI image manifest with artifactType application/vnd.edgeloop.model.v1, a config
// blob that is the model card (application/vnd.edgeloop.model.card.v1+json: name, version,
// framework, inputs/outputs from model.yaml, plus everything card.json holds: metrics, reference
// statistics, lineage, parameters, code version), and one raw layer per file
// (application/vnd.edgeloop.model.file.v1) titled with its relative path. Packaging is
// byte-reproducible: files are sorted, timestamps come from the card (default 1970-01-01), and
// JSON is canonical, so the same directory always gives the same digest.
#ifndef EDGELOOP_REGISTRY_PACKAGE_H_
#define EDGELOOP_REGISTRY_PACKAGE_H_

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "registry/oci.h"
#include "registry/store.h"

namespace edgeloop::registry {

struct PackageOptions {
  // Defaults, in order: card.json's value, this option, the folder names (a version folder
  // DIR/<model>/<n> gives name <model> and version <n>).
  std::string name;
  std::string version;
  // RFC 3339 creation time; default card.json's "created", else 1970-01-01T00:00:00Z.
  std::string created;
};

struct PackagedFile {
  Descriptor descriptor;  // media type, digest, size, title annotation
  std::filesystem::path source;
};

struct ModelPackage {
  std::string name;
  std::string version;
  std::string card;  // the config blob's bytes
  Descriptor config;
  std::vector<PackagedFile> files;
  std::string manifest_bytes;
  Descriptor manifest;  // of manifest_bytes, with artifactType
};

// Packages a model version directory. Validates model.yaml (the model must be servable), refuses
// symlinks, special files and unsafe names. kInvalidArgument names the problem.
StatusOr<ModelPackage> BuildPackage(const std::filesystem::path& dir,
                                    const PackageOptions& options);

// Pushes the package's blobs (skipping those present) and then its manifest, under `tag` (or only
// by digest when `tag` is empty).
Status PushPackage(Store& store, const ModelPackage& package, std::string_view tag,
                   const ProgressFn& progress);

// Copies the manifest `from_ref` and every blob it references from one store to another, then
// tags it `to_tag` (by digest only when empty). With `with_referrers`, also copies the
// artifacts that refer to it (signatures, promotion records). Returns the manifest descriptor.
StatusOr<Descriptor> CopyArtifact(Store& from, std::string_view from_ref, Store& to,
                                  std::string_view to_tag, bool with_referrers,
                                  const ProgressFn& progress);

struct PulledModel {
  Descriptor manifest;
  std::string card;  // the model card JSON
  std::string name;
  std::string version;
};

// Downloads the model `tag_or_digest` into `dest_dir`, which must not exist: the files appear
// under their titles, plus card.json, in a staging folder renamed into place at the end. Layer
// titles must be safe relative paths (no absolute paths, '..', empty or hidden control names,
// duplicates). With `blob_cache` non-empty, blobs go through that content-addressed folder
// (sha256/<hex>, resumable partial downloads) and are hard-linked into place; blobs already in
// the cache are not downloaded again.
StatusOr<PulledModel> PullPackage(Store& store, std::string_view tag_or_digest,
                                  const std::filesystem::path& dest_dir,
                                  const std::filesystem::path& blob_cache,
                                  const ProgressFn& progress);

// kInvalidArgument unless `path` is a safe relative path for a file inside a model directory.
Status CheckSafeRelativePath(std::string_view path);

}  // namespace edgeloop::registry

#endif  // EDGELOOP_REGISTRY_PACKAGE_H_
